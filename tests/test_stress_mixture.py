"""Robust training: the scenario-mixture sampler, the robust preset, training and loading it."""
import json

import jax
import numpy as np
import pytest

from jaxhedge.cli import main
from jaxhedge.contracts import Contract
from jaxhedge.markets.scenarios import SYNTHETIC, _simulate_jit
from jaxhedge.markets.mixture import ScenarioMixture, mixture_paths, mixture_weights

SMALL = Contract(n_steps=8, cost=0.002)


def test_mixture_kinds_severities_and_per_path_scenarios():
    # the Poisson-jump kinds (crash, regime_switch) add ~10 s of compile; the slow training
    # test runs the full default mixture
    names = ("calm", "vol_spike", "liquidity_drought", "vol_of_vol", "gap_at_expiry")
    key = jax.random.PRNGKey(3)
    n = 2000
    paths, kind, sev = jax.jit(lambda k: mixture_paths(k, SMALL, n, names, 0.3, 1.5))(key)
    kind, sev = np.asarray(kind), np.asarray(sev)
    w = np.asarray(mixture_weights(names, 0.3))
    freq = np.bincount(kind, minlength=len(names)) / n
    assert np.all(np.abs(freq - w) < 4 * np.sqrt(w * (1 - w) / n))
    assert sev.min() >= 0 and sev.max() < 1.5 and abs(sev.mean() - 0.75) < 0.05
    assert np.isfinite(np.asarray(paths.spot)).all()
    # each path IS its kind's scenario at its severity (one path per call, key fold_in(k_i, j))
    _, _, k_sim = jax.random.split(key, 3)
    keys = jax.random.split(k_sim, n)
    for i in [int(np.flatnonzero(kind == j)[0]) for j in range(len(names))]:  # one per kind
        sc = SYNTHETIC[names[kind[i]]]()
        one = _simulate_jit(type(sc).simulate, jax.random.fold_in(keys[i], int(kind[i])),
                            sc.params(SMALL, sev[i]), 1, SMALL.n_steps, SMALL.dt)
        np.testing.assert_allclose(np.asarray(paths.spot[i]), np.asarray(one.spot[0]),
                                   rtol=2e-5)
        np.testing.assert_allclose(np.asarray(paths.cost_multiplier[i]),
                                   np.asarray(one.cost_multiplier[0]), rtol=2e-5)
    calm = kind == names.index("calm")
    np.testing.assert_array_equal(np.asarray(paths.cost_multiplier)[calm], 1.0)
    liq = kind == names.index("liquidity_drought")
    assert np.all(np.asarray(paths.cost_multiplier)[liq] >= 1.0 - 1e-6)


def test_robust_preset_builds_the_mixture_agent_on_the_smoke_contract():
    from jaxhedge.agents.deep_hedging import DeepHedging
    from jaxhedge.train.jobs import load_job

    robust, hp_r = load_job("deep-hedging", "robust").build()
    calm, hp_c = load_job("deep-hedging", "smoke").build()
    assert type(robust) is DeepHedging and type(calm) is DeepHedging
    assert robust.path_sampler == ScenarioMixture(tuple(SYNTHETIC), 0.25, 1.5)
    assert calm.path_sampler is None
    assert robust.name == "deep_hedging_robust"
    hash(robust)  # a static (jit) argument: must stay hashable with its sampler
    assert (robust.env, robust.widths, robust.band, robust.n_paths) == \
        (calm.env, calm.widths, calm.band, calm.n_paths)
    # same hparams tree (load_trained rebuilds it from default_hparams) and same contract
    assert jax.tree.structure(hp_r) == jax.tree.structure(robust.default_hparams())
    for a, b in zip(jax.tree.leaves(hp_r), jax.tree.leaves(hp_c)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b))


def test_bad_mixture_config_names_the_field():
    from jaxhedge.train.jobs import load_job

    with pytest.raises(ValueError, match=r"mixture\.scenarios: 'spy_2020q1' is not a synthetic"):
        load_job("deep-hedging", "robust", overrides=['mixture.scenarios=["spy_2020q1"]'])
    with pytest.raises(ValueError, match=r"mixture\.calm_weight: must be in \[0, 1\]"):
        load_job("deep-hedging", "robust", overrides=["mixture.calm_weight=2.0"])


@pytest.fixture(scope="module")
def robust_run(tmp_path_factory):
    """A tiny mixture-trained deep hedger, trained through the CLI's preset route."""
    out = tmp_path_factory.mktemp("robust") / "dh-robust"
    rc = main(["train", "--agent", "deep-hedging", "--preset", "robust", "--steps", "4",
               "--set", "agent.n_paths=256", "--set", "train.chunk=2", "--out", str(out)])
    assert rc == 0
    return out


@pytest.mark.slow  # trains through the CLI (compiles the mixture inside the update): ~1 min
def test_robust_preset_trains_a_mixture_agent_and_stress_loads_it(robust_run, tmp_path, capsys):
    from jaxhedge.runs import load_trained

    agent, hparams, _ = load_trained(robust_run)
    assert agent.path_sampler == ScenarioMixture(tuple(SYNTHETIC), 0.25, 1.5)
    rc = main(["stress", "--agents", "delta", str(robust_run), "--scenarios", "crash",
               "--paths", "600", "--out", str(tmp_path)])
    assert rc == 0
    res = json.loads((tmp_path / "stress.json").read_text())
    # the trained agent's contract (robust preset: 10 dates, 1% cost, s0 100) is used
    assert res["contract"]["n_steps"] == 10 and res["contract"]["cost"] == pytest.approx(0.01)
    assert {r["agent"] for r in res["rows"]} == {"delta", "dh-robust"}
    assert "dh-robust: worst under crash" in capsys.readouterr().out





@pytest.mark.slow  # trains both presets (300 updates each): ~1-2 min on 2 CPU cores
def test_mixture_training_cuts_the_liquidity_tail(tmp_path):
    """Same network, contract and budget: the mixture-trained hedger's ES 5% of the shortfall
    under the liquidity drought is well below the calm-trained one's (measured 14.1 vs 27.0
    at 20,000 paths), and it trades less."""
    import dataclasses

    from jaxhedge.config import to_dict
    from jaxhedge.stress.run import run_stress
    from jaxhedge.train import run_training
    from jaxhedge.train.jobs import load_job

    dirs = []
    for preset in ("smoke", "robust"):
        job = load_job("deep-hedging", preset)
        agent, hparams = job.build()
        run_training(agent, hparams, run_dir=tmp_path / preset, config=to_dict(job),
                     progress=False, **dataclasses.asdict(job.train))
        dirs.append(str(tmp_path / preset))
    res = run_stress(dirs, "liquidity_drought", n_paths=10_000, seed=1)
    row = {(r["agent"], r["scenario"]): r for r in res.rows}
    calm_trained, robust = row[("smoke", "liquidity_drought")], row[("robust", "liquidity_drought")]
    assert robust["es_5"] < 0.75 * calm_trained["es_5"]
    assert robust["turnover"] < calm_trained["turnover"]


def test_deep_hedging_with_a_mixture_sampler_trains_and_prices_on_mixture_paths():
    """DeepHedging(path_sampler=ScenarioMixture(...)): its episodes are exactly the mixture's
    paths around hparams.env's contract hedged by the one ledger (independent route:
    ScenarioMixture called directly, then run_on_paths), and pricing the evaluation contract
    gives the price of the trained contract."""
    from jaxhedge.agents.deep_hedging import DeepHedging
    from jaxhedge.env import EnvConfig
    from jaxhedge.ledger import CostModel
    from jaxhedge.markets import GBMParams
    from jaxhedge.rollout import run_on_paths

    mix = ScenarioMixture(("calm", "vol_spike", "gap_at_expiry"), 0.3, 1.2)
    agent = DeepHedging(EnvConfig(market="gbm", n_steps=6), n_paths=300, widths=(8,),
                        band=True, path_sampler=mix)
    hp = agent.default_hparams(GBMParams(s0=100.0, sigma=0.25), costs=CostModel(0.003))
    state = agent.init(jax.random.key(0), hp)
    hedger = agent.hedger(state, hp)
    key = jax.random.key(9)
    contract = agent.evaluation_contract(hp)
    paths = mix(key, contract, 300)
    expected = run_on_paths(agent.hedging_env, hp.env, hedger, paths).pnl
    got = agent.simulate(key, hedger, hp).pnl
    np.testing.assert_allclose(np.asarray(got), np.asarray(expected), rtol=1e-6, atol=1e-6)
    calm = DeepHedging(EnvConfig(market="gbm", n_steps=6), n_paths=300, widths=(8,), band=True)
    assert not np.allclose(np.asarray(calm.simulate(key, hedger, hp).pnl), np.asarray(got))
    np.testing.assert_allclose(float(agent.price(state, hp, contract, n_paths=600)),
                               float(agent.price(state, hp, n_paths=600)), rtol=1e-6)


def test_scenario_mixture_is_validated_hashable_and_gbm_only():
    from jaxhedge.agents.deep_hedging import DeepHedging
    from jaxhedge.env import EnvConfig

    assert hash(ScenarioMixture(["calm", "crash"])) == hash(ScenarioMixture(("calm", "crash")))
    with pytest.raises(ValueError, match=r"mixture\.max_severity: must be in \(0, 3\]"):
        ScenarioMixture(max_severity=0.0)
    with pytest.raises(ValueError, match=r"mixture\.scenarios: names must be distinct"):
        ScenarioMixture(("calm", "calm"))
    with pytest.raises(ValueError, match=r"deep_hedging\.env\.market: robust training"):
        DeepHedging(EnvConfig(market="heston"), path_sampler=ScenarioMixture())
