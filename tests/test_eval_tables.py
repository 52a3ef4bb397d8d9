"""``eval`` and ``stress`` tables: sanity gates run on every trained agent (a failure is
labelled everywhere and never ranked), first-day hedge beside BS delta, the P&L's slope on
the underlying's return, and paired-bootstrap differences to BS delta, each against an
independent reference (the env's own t = 0 observation, scipy's BS delta, numpy's
least squares, a numpy bootstrap written from the definitions on the same resamples)."""
from __future__ import annotations

import csv
import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import struct

from jaxhedge import comparison
from jaxhedge.codec import register_class
from jaxhedge.report import versus
from tests.serving.scaled_agent import ScaledVolAgent

FAILED = "GATE FAILED: hedge_ratio"


@struct.dataclass
class FlippedHedger:
    """Sells the hedge instead of buying it: the sign error the ``hedge_ratio`` gate is for."""

    inner: object

    def __call__(self, obs):
        return -self.inner(obs)


@register_class  # a run directory may name only registered classes
@dataclasses.dataclass(frozen=True)
class SignFlippedAgent(ScaledVolAgent):
    name: str = "flipped"

    def hedger(self, state, hp):
        return FlippedHedger(super().hedger(state, hp))


def bs_call_delta(s, k, tau, r, vol, q):
    """Black-Scholes call delta e^{-q tau} N(d1) (scipy's normal CDF, float64)."""
    from scipy.stats import norm

    s, k, tau, r, vol, q = (float(x) for x in (s, k, tau, r, vol, q))
    d1 = (np.log(s / k) + (r - q + 0.5 * vol**2) * tau) / (vol * np.sqrt(tau))
    return np.exp(-q * tau) * norm.cdf(d1)


def loaded(agent):
    hp = agent.default_hparams()
    return agent, hp, agent.init(None, hp)


def numpy_stats(pnl, cost):
    """RMSE, mean cost, P(shortfall), ES 5% of the shortfall of an explicit sample, written
    from the definitions (ES: the top 5% of the mass, a fractional last path included)."""
    pnl, cost = np.asarray(pnl, np.float64), np.asarray(cost, np.float64)
    sf = np.sort(np.maximum(-pnl, 0.0))[::-1]
    m = 0.05 * sf.size
    w = np.clip(m - np.arange(sf.size), 0.0, 1.0) / m
    return np.array([np.sqrt(np.mean(pnl**2)), cost.mean(), np.mean(pnl < 0), w @ sf])


def numpy_paired(pnls, costs, ref, key, n_boot, level=0.95):
    """{hedger: {metric: (diff, lo, hi)}} from explicitly resampled paths (the same indices
    ``resample_indices`` draws) and numpy's percentile."""
    n = pnls.shape[1]
    reps = []
    for b in range(n_boot):
        idx = np.asarray(comparison.resample_indices(key, n, b))
        reps.append([numpy_stats(p[idx], c[idx]) for p, c in zip(pnls, costs)])
    reps = np.asarray(reps)  # (n_boot, H, 4)
    full = np.asarray([numpy_stats(p, c) for p, c in zip(pnls, costs)])
    q = [(1 - level) / 2, (1 + level) / 2]
    return [{m: (full[h, i] - full[ref, i],
                 *np.quantile(reps[:, h, i] - reps[:, ref, i], q))
             for i, m in enumerate(comparison.PAIRED_METRICS)} for h in range(len(pnls))]


@pytest.mark.parametrize("n", [300, 5000], ids=["every-path", "tail-only"])
def test_paired_path_bootstrap_equals_numpy_on_the_same_resamples(n, x64):
    """Both ES routes (all paths; the largest 15% only, above 4,096 paths) are exact."""
    rng = np.random.default_rng(n)
    base = rng.normal(-0.2, 1.0, n)
    pnls = np.stack([base, base + 0.3 * rng.normal(size=n) - 0.1, base * 1.4])
    costs = np.stack([rng.uniform(0.1, 0.2, n), rng.uniform(0.0, 0.3, n), np.full(n, 0.15)])
    key = jax.random.key(5)
    got = comparison.paired_path_bootstrap(pnls, costs, 0, key, n_boot=24, batch=16)
    want = numpy_paired(pnls, costs, 0, key, 24)
    for g, w in zip(got, want):
        for m in comparison.PAIRED_METRICS:
            np.testing.assert_allclose([g[m]["diff"], g[m]["lo"], g[m]["hi"]], w[m],
                                       rtol=1e-9, atol=1e-12)
    assert all(v == {"diff": 0.0, "lo": 0.0, "hi": 0.0} for v in got[0].values())


def test_winner_never_ranks_a_gate_failure():
    rows = [{"agent": "flipped", "es_5": 0.1, "gate": FAILED},
            {"agent": "delta", "es_5": 0.5, "gate": "classical"},
            {"agent": "ww", "es_5": 0.4, "gate": "classical"}]
    line = versus.winner(rows, {"flipped": "hedge_ratio: worst 1"})
    assert line.startswith("best es_5: ww (0.4")  # the failed agent had the lowest ES
    assert line.endswith(f"not ranked: flipped [{FAILED}] (hedge_ratio: worst 1)")
    assert versus.winner(rows[:1], {"flipped": "x"}).startswith("best es_5: none")


def test_stress_columns_against_independent_references(tmp_path):
    from jaxhedge.stress.run import (bootstrap_key, classical_hedger, hedge_paths,
                                     run_stress, scenario_paths, trained_agent, write_outputs)
    from jaxhedge.markets.scenarios import Calm

    agents = [trained_agent("flipped", *loaded(SignFlippedAgent())), "ww"]
    n, seed, n_boot = 400, 3, 30
    res = run_stress(agents, "calm", n_paths=n, seed=seed, n_boot=n_boot, keep_pnl=True,
                     log=lambda *_: None)
    assert res.reference == "delta" and res.reference_added  # BS delta joins automatically
    rows = {r["agent"]: r for r in res.rows}
    assert [rows[a]["gate"] for a in ("flipped", "ww", "delta")] == \
        [FAILED, "classical", "classical"]
    assert "flipped" in res.excluded and "hedge_ratio" in res.excluded["flipped"]

    c = res.contract
    env, params = c.env()
    paths = scenario_paths(Calm(), c, n, seed)
    hedgers = {"flipped": agents[0].hedger,
               "ww": classical_hedger("ww", c), "delta": classical_hedger("delta", c)}
    ret = np.asarray(paths.spot[:, -1] / paths.spot[:, 0] - 1.0, np.float64)
    pnls, costs = [], []
    for name, h in hedgers.items():
        # the hedger at the env's own t = 0 observation of each path
        first = jax.vmap(lambda p, h=h: h(env.reset_to_path(p, params)[0]))(paths)
        assert rows[name]["hedge_0"] == pytest.approx(float(np.mean(first)), rel=1e-6)
        pnl, cost, _ = hedge_paths(c, h, paths)
        np.testing.assert_array_equal(pnl, res.pnl[(name, "calm")])
        assert rows[name]["pnl_slope"] == pytest.approx(np.polyfit(ret, pnl, 1)[0], rel=1e-6)
        pnls.append(pnl)
        costs.append(cost)
    bs = bs_call_delta(c.s0, c.strike, c.maturity, c.rate, c.sigma, c.div_yield)
    assert rows["delta"]["bs_delta_0"] == pytest.approx(bs, rel=1e-5)
    assert rows["flipped"]["hedge_0"] == pytest.approx(-bs, rel=1e-5)
    want = numpy_paired(np.stack(pnls), np.stack(costs), 2, bootstrap_key(seed, "calm"), n_boot)
    for name, w in zip(hedgers, want):
        for m in comparison.PAIRED_METRICS:
            got = [rows[name][f"{m}_vs_bs{s}"] for s in ("", "_lo", "_hi")]
            np.testing.assert_allclose(got, w[m], rtol=1e-4, atol=2e-6)

    files = write_outputs(res, tmp_path, n, seed)
    md = files[1].read_text()
    assert f"| flipped [{FAILED}] | calm |" in md  # table row and verdict both marked
    assert f"- flipped [{FAILED}]: only the calm scenario was run" in md
    winner = res.winners["calm"]
    best = min((r for r in res.rows if r["agent"] != "flipped"), key=lambda r: r["es_5"])
    assert winner.startswith(f"best es_5: {best['agent']} (") and f"flipped [{FAILED}] (" in winner
    with open(files[0]) as f:
        gate_col = {r["agent"]: r["gate"] for r in csv.DictReader(f)}
    assert gate_col["flipped"] == FAILED and gate_col["ww"] == "classical"
    saved = json.loads(files[3].read_text())
    assert [g["name"] for g in saved["gates"]["flipped"] if g["status"] == "FAIL"] == \
        ["hedge_ratio"]
    assert saved["reference_added"] and saved["winners"]["calm"] == winner


def test_eval_cli_gates_the_run_and_leaves_a_failure_unranked(tmp_path, capsys, monkeypatch):
    from jaxhedge import evaluate
    from jaxhedge.cli import main
    from jaxhedge.train import run_training

    agent = SignFlippedAgent()
    run = tmp_path / "run"
    run_training(agent, agent.default_hparams(), n_steps=1, chunk=1, run_dir=run,
                 progress=False, tensorboard=False)
    legends = {}
    monkeypatch.setattr(evaluate, "pnl_distribution",
                        lambda pnls, path, title: legends.update(pnls))
    out = tmp_path / "eval"
    assert main(["eval", str(run), "--paths", "500", "--boot", "20", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    marked = f"flipped [{FAILED}]"
    assert set(legends) == {marked, "delta", "ww"}
    assert f"| {marked} |" in (out / "results.md").read_text()
    res = json.loads((out / "results.json").read_text())
    assert res["agents"]["flipped"]["gate"] == FAILED and res["n_boot"] == 20
    best = min(("delta", "ww"), key=lambda a: res["agents"][a]["es_5"])
    assert res["best"].startswith(f"best es_5: {best} (") and f"not ranked: {marked}" in res["best"]
    assert res["best"] in printed and "hedge of a short call outside" in printed
    with open(out / "results.csv") as f:
        rows = {r["agent"]: r for r in csv.DictReader(f)}
    assert rows["flipped"]["gate"] == FAILED and rows["ww"]["gate"] == "classical"
    # the reference's own differences are exactly 0; the flipped hedge is -1 x BS delta
    assert float(rows["delta"]["es_5_vs_bs_hi"]) == 0.0
    assert float(rows["flipped"]["hedge_0"]) == pytest.approx(-float(rows["delta"]["hedge_0"]))


@pytest.mark.slow  # three compiled rollouts: ~8 s on 2 idle cores (docs/stress.md)
def test_eval_hedges_the_paths_of_run_hedge():
    """The eval loop (kept spot paths and positions) hedges exactly run_hedge's paths, and its
    slope and first-day hedge come from those paths."""
    from jaxhedge import hedge
    from jaxhedge.evaluate import hedge_on_paths
    from jaxhedge.rollout import rollout

    env, params = hedge.build("merton", 6, cost=0.001)
    ww = hedge.make_hedger("ww", "call", 1.0)
    got = hedge_on_paths(env, params, ww, 700, seed=9)
    ref = hedge.run_hedge(env, params, ww, 700, seed=9)
    # same paths; the two compiled programs may round the last float32 bit differently
    np.testing.assert_allclose(got["pnl"], ref.pnl, rtol=0, atol=1e-6)
    full = rollout(jax.random.fold_in(jax.random.PRNGKey(9), 0), env, params, ww, 700)
    spot = np.asarray(full.spot, np.float64)
    # float32 in the compiled chunk, float64 here
    np.testing.assert_allclose(got["spot_return"], spot[:, -1] / spot[:, 0] - 1, rtol=1e-6,
                               atol=1e-7)
    np.testing.assert_allclose(got["hedge_0"], np.asarray(full.positions[:, 0]), atol=1e-6)
    d = versus.directional(got["pnl"], got["spot_return"], got["hedge_0"])
    assert d["pnl_slope"] == pytest.approx(np.polyfit(got["spot_return"], got["pnl"], 1)[0],
                                           rel=1e-6)
    assert jnp.isfinite(d["pnl_slope_r2"])
