"""The user API (``jaxhedge.fit`` / ``price`` / ``hedge`` / ``save`` / ``load``), line by line,
against oracles: the ``jaxhedge hedge`` engine on the same key, closed-form prices, a direct
rollout of the same network, and the run directory's own ``params_sha256``."""
import json
import math

import jax
import numpy as np
import pytest
from scipy.stats import norm

import jaxhedge
from jaxhedge import hedge, pricing
from jaxhedge.cli import main
from jaxhedge.env import EnvConfig, HedgingEnv
from jaxhedge.ledger import CostModel
from jaxhedge.rollout import rollout, simulate_paths

S0, K, T, N = 100.0, 100.0, 30 / 252, 8


def bs_numpy(s, k, t, sigma, is_call=True):
    d1 = (math.log(s / k) + 0.5 * sigma**2 * t) / (sigma * math.sqrt(t))
    d2 = d1 - sigma * math.sqrt(t)
    call = s * norm.cdf(d1) - k * norm.cdf(d2)
    return call if is_call else call - s + k


def first_chunk_key(seed):  # run_hedge's chunk 0 key (hedge.py module docstring)
    return jax.random.fold_in(jax.random.PRNGKey(seed), 0)


# --------------------------------------------------------------------------- classical
def test_top_level_names_are_the_api():
    for name in ("fit", "load", "GBM", "Heston", "Merton", "Regime", "Call", "Put"):
        assert getattr(jaxhedge, name) is getattr(jaxhedge.api, name)
    with pytest.raises(AttributeError):
        jaxhedge.no_such_name  # noqa: B018


@pytest.mark.parametrize("option", ["call", "put"])
def test_delta_price_is_black_scholes(option):
    make = jaxhedge.Call if option == "call" else jaxhedge.Put
    h = jaxhedge.fit("delta", market=jaxhedge.GBM(s0=S0, sigma=0.25), contract=make(90.0, T, N))
    assert h.price() == pytest.approx(bs_numpy(S0, 90.0, T, 0.25, option == "call"), rel=1e-5)
    assert h.params_sha256 is None and not h.is_learning


def test_classical_price_on_heston_and_merton_is_the_models_price():
    c = jaxhedge.Call(K, T, N)
    h = jaxhedge.fit("ww", market=jaxhedge.Heston(s0=S0), contract=c, risk_aversion=2.0)
    ref = pricing.heston_price(S0, K, T, 0.0, 2.0, 0.04, 0.5, -0.7, 0.04, 0.0, True)
    assert h.price() == pytest.approx(float(ref), rel=1e-6)
    m = jaxhedge.fit("naked", market=jaxhedge.Merton(s0=S0), contract=c)
    ref = pricing.merton_price(S0, K, T, 0.0, 0.2, 1.0, -0.1, 0.15, 0.0, True)
    assert m.price() == pytest.approx(float(ref), rel=1e-6)


def test_delta_hedge_equals_the_hedge_engine_on_the_same_key():
    h = jaxhedge.fit("delta", market=jaxhedge.GBM(s0=S0, sigma=0.2),
                     contract=jaxhedge.Call(K, T, N), cost=2e-3)
    got = h.hedge(n_paths=3000, seed=7)
    env, params = hedge.build("gbm", N, s0=S0, strike=K, maturity=T, sigma=0.2, cost=2e-3)
    ref = hedge.run_hedge(env, params, hedge.make_hedger("delta"), 3000, seed=7)
    np.testing.assert_array_equal(got.pnl, ref.pnl)
    np.testing.assert_array_equal(got.cost, ref.cost)
    for k, v in ref.metrics.items():
        assert got.metrics[k] == v, k
    assert got.metrics["premium"] == pytest.approx(bs_numpy(S0, K, T, 0.2), rel=1e-5)
    assert {"wall_s", "compile_s", "path_steps_per_s"} <= set(got.metrics)


def test_hedge_on_another_market_uses_that_market_and_its_price():
    h = jaxhedge.fit("delta", market=jaxhedge.GBM(s0=S0), contract=jaxhedge.Call(K, T, N))
    got = h.hedge(jaxhedge.Heston(s0=S0), n_paths=2000, seed=3)
    env, params = hedge.build("heston", N, s0=S0, strike=K, maturity=T, sigma=0.2)
    ref = hedge.run_hedge(env, params, hedge.make_hedger("delta"), 2000, seed=3)
    np.testing.assert_array_equal(got.pnl, ref.pnl)
    assert got.metrics["premium"] == pytest.approx(float(params.premium), rel=1e-7)


def test_hedge_on_given_paths_equals_rollout_on_those_paths():
    h = jaxhedge.fit("delta", market=jaxhedge.GBM(s0=S0), contract=jaxhedge.Call(K, T, N),
                     cost=1e-3)
    env, params = h.setup()
    key = jax.random.key(11)
    paths = simulate_paths(key, env, params, 512)
    got = h.hedge(paths)
    ref = rollout(key, env, params, h.policy, 512, keep_paths=False)
    np.testing.assert_allclose(got.pnl, np.asarray(ref.pnl), rtol=1e-5, atol=1e-5)
    assert got.metrics["mean_pnl"] == pytest.approx(float(np.mean(ref.pnl)), abs=1e-5)
    with pytest.raises(ValueError, match="market_or_paths"):
        h.hedge(jax.tree.map(lambda a: a[:, :3], paths))


def test_classical_save_load_round_trip(tmp_path):
    h = jaxhedge.fit("ww", market=jaxhedge.Regime(s0=S0), contract=jaxhedge.Put(95.0, T, N),
                     cost=3e-3, risk_aversion=0.5)
    h.save(tmp_path / "ww")
    g = jaxhedge.load(tmp_path / "ww")
    assert (g.name, g.contract, g.cost, g.options) == (h.name, h.contract, h.cost, h.options)
    assert g.price() == h.price()
    np.testing.assert_array_equal(g.hedge(n_paths=500, seed=2).pnl,
                                  h.hedge(n_paths=500, seed=2).pnl)


@pytest.mark.parametrize("call, field", [
    (lambda: jaxhedge.fit("bogus"), "hedger"),
    (lambda: jaxhedge.fit("delta", cost=1.5), "cost"),
    (lambda: jaxhedge.fit("delta", market="gbm"), "market"),
    (lambda: jaxhedge.fit("delta", contract=(100, 1)), "contract"),
    (lambda: jaxhedge.fit("delta", widths=(8,)), "widths"),
    (lambda: jaxhedge.fit("deep-hedging", steps=0), "steps"),
    (lambda: jaxhedge.fit("deep-hedging", seed=-1), "seed"),
    (lambda: jaxhedge.fit("deep-hedging", no_such_field=1), "no_such_field"),
    (lambda: jaxhedge.Call(-1.0, T), "contract.strike"),
    (lambda: jaxhedge.Call(K, 0.0), "contract.maturity"),
    (lambda: jaxhedge.Put(K, T, n_steps=0), "contract.n_steps"),
    (lambda: jaxhedge.GBM(sigma=-0.2), "sigma"),
    (lambda: jaxhedge.fit("delta").hedge(n_paths=0), "n_paths"),
    (lambda: jaxhedge.load("/nonexistent/run"), "directory"),
])
def test_bad_arguments_are_one_line_value_errors(call, field):
    with pytest.raises(ValueError) as err:
        call()
    msg = str(err.value)
    assert field in msg and len(msg.splitlines()) == 1, msg


# --------------------------------------------------------------------------- deep hedging
@pytest.fixture(scope="module")
def deep(tmp_path_factory):
    run = tmp_path_factory.mktemp("api") / "dh"
    h = jaxhedge.fit("deep-hedging", market=jaxhedge.GBM(s0=S0, sigma=0.2),
                     contract=jaxhedge.Call(K, T, N), cost=1e-3, steps=6, seed=0, chunk=3,
                     run_dir=run, n_paths=256, widths=(8,), band=True, learning_rate=3e-3)
    return h, run


def test_deep_hedger_price_is_within_a_band_of_black_scholes(deep):
    h, _ = deep
    bs = bs_numpy(S0, K, T, 0.2)
    # the indifference price = premium + entropic risk of the hedged P&L: above the BS price
    # (a near-delta band hedge with costs loses on average) and far below the naked risk
    naked = jaxhedge.fit("naked", market=h.market, contract=h.contract, cost=h.cost)
    naked_risk = naked.hedge(n_paths=4000, seed=5).metrics["entropic_1"]
    assert bs < h.price() < bs + naked_risk, (h.price(), bs, naked_risk)


def test_deep_hedger_pnl_is_a_rollout_of_the_same_network(deep):
    h, _ = deep
    got = h.hedge(n_paths=1000, seed=4)
    env = HedgingEnv(EnvConfig(market="gbm", n_steps=N))
    params = env.default_params(jaxhedge.GBM(s0=S0, sigma=0.2), strike=K, maturity=T,
                                costs=CostModel(proportional=1e-3))
    ref = rollout(first_chunk_key(4), env, params, h.agent.hedger(h.state, h.hparams), 1000,
                  keep_paths=False)
    np.testing.assert_array_equal(got.pnl, np.asarray(ref.pnl))


def test_deep_hedger_save_load_round_trip_is_bitwise(deep, tmp_path):
    h, run = deep
    info = json.loads((run / "run.json").read_text())
    assert info["step"] == 6 and info["config"]["api"]["hedger"] == "deep-hedging"
    # run.json hashes the (hparam sets, seeds) block; this run's block is the one member
    block = jax.tree.map(lambda a: np.asarray(a)[None, None], h.state)
    assert jaxhedge.api._params_sha256(block) == info["params_sha256"]
    h.save(tmp_path / "saved")
    g = jaxhedge.load(tmp_path / "saved")
    assert g.params_sha256 == h.params_sha256
    assert g.price() == h.price()
    np.testing.assert_array_equal(g.hedge(n_paths=700, seed=9).pnl,
                                  h.hedge(n_paths=700, seed=9).pnl)
    with pytest.raises(ValueError, match="directory"):
        h.save(tmp_path / "saved")  # not empty


def test_saved_deep_hedger_works_with_jaxhedge_eval(deep, tmp_path):
    _, run = deep
    assert main(["eval", str(run), "--paths", "300", "--out", str(tmp_path / "eval")]) == 0
    res = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert set(res["agents"]) == {"deep_hedging", "delta", "ww"}


def test_price_of_another_contract_differs_in_the_right_direction(deep):
    h, _ = deep
    itm, otm = h.price(jaxhedge.Call(90.0, T, N)), h.price(jaxhedge.Call(110.0, T, N))
    assert otm < h.price() < itm


# --------------------------------------------------------------------------- RL agents
@pytest.mark.parametrize("name, options", [
    ("rlop", dict(n_envs=32, width=8, n_blocks=1, layers_per_block=1, price_width=8,
                  baseline_widths=(8,), estimator="pathwise")),
    ("adaptive-qlbs", dict(n_envs=16, n_continuations=4, width=8, n_blocks=1,
                           layers_per_block=1, baseline_width=8)),
])
def test_rl_hedger_trains_on_a_distribution_centred_on_the_contract(name, options, tmp_path):
    h = jaxhedge.fit(name, market=jaxhedge.GBM(s0=S0, sigma=0.2),
                     contract=jaxhedge.Call(K, 28 / 252, 4), cost=1e-3, steps=2, chunk=1,
                     run_dir=tmp_path / name, **options)
    from jaxhedge.contracts import ContractDistribution

    hp = h.hparams
    dists = [getattr(hp, f) for f in hp.__dataclass_fields__
             if isinstance(getattr(hp, f), ContractDistribution)]
    if dists:  # after the protocol refactor the distribution is one field
        centre = dists[0].centre(n_steps=4)
        got = (float(centre.s0), float(centre.strike), float(centre.sigma), float(centre.cost))
    else:
        cost = (hp.eps_lo, hp.eps_hi) if hasattr(hp, "eps_lo") else (hp.cost_lo, hp.cost_hi)
        got = (0.5 * (hp.s0_lo + hp.s0_hi), 0.5 * (hp.strike_lo + hp.strike_hi),
               0.5 * (hp.sigma_lo + hp.sigma_hi), 0.5 * (cost[0] + cost[1]))
    np.testing.assert_allclose(np.asarray(got, float), [S0 / K, 1.0, 0.2, 1e-3], rtol=1e-5)
    # the price head starts at a vol in (0.01, 3): the price lies between the BS prices there
    price = h.price()
    assert bs_numpy(S0, K, 28 / 252, 0.01) < price < bs_numpy(S0, K, 28 / 252, 3.0)
    assert h.price(jaxhedge.Call(50.0, 28 / 252, 4)) == pytest.approx(S0 - 50.0, rel=0.05)
    g = jaxhedge.load(tmp_path / name)
    assert g.params_sha256 == h.params_sha256 and g.price() == price
    np.testing.assert_array_equal(g.hedge(n_paths=300, seed=1).pnl,
                                  h.hedge(n_paths=300, seed=1).pnl)


def test_load_reads_a_run_of_jaxhedge_train(tmp_path):
    run = tmp_path / "cli-run"
    assert main(["train", "--agent", "deep-hedging", "--preset", "smoke", "--set",
                 "agent.n_paths=64", "--set", "agent.widths=[8]", "--set", "train.chunk=2",
                 "--set", "agent.env.n_steps=4", "--steps", "2", "--out", str(run)]) == 0
    info = json.loads((run / "run.json").read_text())
    h = jaxhedge.load(run)
    # the contract is the run's own (smoke preset: s0 = 100 ATM, 1% cost, 4 dates)
    assert (h.name, h.contract.n_steps, h.contract.strike) == ("deep-hedging", 4, 100.0)
    assert h.cost == pytest.approx(0.01, rel=1e-6)  # read back from float32 params
    # the API's price of that contract is the price the trainer wrote to run.json
    assert h.price() == pytest.approx(info["price"][0][0], rel=1e-5)
    block = jax.tree.map(lambda a: np.asarray(a)[None, None], h.state)
    assert jaxhedge.api._params_sha256(block) == info["params_sha256"]
