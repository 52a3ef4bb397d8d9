"""``jaxhedge eval``: a trained agent beside BS delta and Whalley–Wilmott on the same paths.

The agent is run through the sanity gates first (:func:`jaxhedge.runs.check_agent`); a
failure marks it ``GATE FAILED: <checks>`` in every table and the plot legend and leaves it
out of the "best" line, with the reason printed. Every row carries the columns of
:mod:`jaxhedge.report.versus`: first-day hedge beside BS delta, the P&L's slope on the
underlying's return, paired-bootstrap differences to BS delta (docs/stress.md).
"""
from __future__ import annotations

import functools
import math
import time
import zlib
from pathlib import Path

import jax
import numpy as np

from jaxhedge import gates, hedge, risk
from jaxhedge.env import validate_env_params
from jaxhedge.report import versus
from jaxhedge.report.plots import pnl_distribution
from jaxhedge.report.tables import METRIC_COLUMNS, csv_table, print_metrics_table
from jaxhedge.rollout import PATH_BLOCK, rollout
from jaxhedge.runs import check_agent, evaluation_setup, load_trained
from jaxhedge.runinfo import atomic_write_json, atomic_write_text, run_metadata
from jaxhedge.validate import check_seed, prng_key

#: The registered classical hedgers every trained agent is compared with; the first is the
#: reference of the paired differences.
BASELINES = (versus.REFERENCE, "ww")
#: Bootstrap replicates of the paired differences to BS delta (``--boot``).
N_BOOT = 1000
#: Bound on the per-chunk spot paths and positions kept to read the first-day hedge and the
#: underlying's return: chunks shrink below 65,536 paths only past ~1,000 dates.
KEEP_BYTES = 2**29
OUTPUT_FILES = ("results.json", "results.md", "results.csv", "pnl_distribution.png")
_TABLE_COLUMNS = [("rmse", "RMSE", "{:.4f}"), *METRIC_COLUMNS]


@functools.partial(jax.jit, static_argnames=("env", "n_paths"))
def _chunk(key, env, params, hedger, n_paths):
    out = rollout(key, env, params, hedger, n_paths, keep_paths=True)
    # per path: P&L, cost, turnover, the position taken on the first date (t = 0) and the
    # underlying's simple return over the episode; the full paths stay on the device
    return (out.pnl, out.cost, out.turnover, out.positions[:, 0],
            out.spot[:, -1] / out.spot[:, 0] - 1.0)


def hedge_on_paths(env, params, hedger, n_paths: int, seed: int) -> dict:
    """Per-path arrays (``pnl``, ``cost``, ``turnover``, ``hedge_0``, ``spot_return``) and
    timings of ``hedger`` on the paths of ``seed``: chunk ``i`` from ``fold_in(PRNGKey(seed),
    i)``, as :func:`jaxhedge.hedge.run_hedge` (same paths for every hedger)."""
    validate_env_params(env.config, params)
    check_seed("seed", seed)
    chunk = min(hedge.DEFAULT_CHUNK_PATHS, n_paths,
                max(PATH_BLOCK, KEEP_BYTES // (8 * (env.n_steps + 1))))
    hedge.check_rollout_size(env.config.market, n_paths, env.n_steps,
                             jax.numpy.zeros((), float).dtype.itemsize, chunk)
    n_chunks = math.ceil(n_paths / chunk)
    base = jax.random.PRNGKey(seed) if seed < 2**32 else prng_key(seed)
    t0 = time.perf_counter()
    compiled = _chunk.lower(jax.random.fold_in(base, 0), env, params, hedger, chunk).compile()
    compile_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    parts = [[np.asarray(x) for x in compiled(jax.random.fold_in(base, i), params, hedger)]
             for i in range(n_chunks)]
    run_s = time.perf_counter() - t1
    names = ("pnl", "cost", "turnover", "hedge_0", "spot_return")
    out = {k: np.concatenate(p)[:n_paths] for k, p in zip(names, zip(*parts))}
    return {**out, "wall_s": compile_s + run_s,
            "path_steps_per_s": n_chunks * chunk * env.n_steps / run_s}


def evaluate_run(run_dir, out, market=None, n_paths=100_000, seed=1, member=0,
                 risk_aversion=1.0, n_boot: int = N_BOOT) -> dict:
    agent, hparams, state = load_trained(run_dir, member)
    return evaluate_agent(agent, hparams, state, out, market=market, n_paths=n_paths,
                          seed=seed, risk_aversion=risk_aversion, n_boot=n_boot,
                          run_dir=run_dir)


def evaluate_agent(agent, hparams, state, out, market=None, n_paths=100_000, seed=1,
                   risk_aversion=1.0, n_boot: int = N_BOOT, run_dir=None) -> dict:
    """``eval`` of a loaded agent (protocol of :mod:`jaxhedge.agents.base`): gates, every
    hedger on the same paths, tables, plot; returns ``{"rows", "gates", "best"}``."""
    if not isinstance(n_boot, int) or n_boot < 1:
        raise ValueError(f"boot: must be an integer >= 1 (got {n_boot!r})")
    name = getattr(agent, "name", "agent")
    if name in BASELINES:  # a trained agent must not replace a baseline's row
        name = f"{name} (trained)"
    t = time.perf_counter()
    gate_results = check_agent(agent, hparams, state)
    gates_s = time.perf_counter() - t
    status = versus.gate_status(gate_results)
    env, params = evaluation_setup(agent, hparams, market)
    option = env.config.option
    hedgers = {name: agent.hedger(state, hparams),
               **{b: hedge.make_hedger(b, option, risk_aversion) for b in BASELINES}}
    ref = list(hedgers).index(versus.REFERENCE)
    rows, runs = [], []
    for label, hedger in hedgers.items():
        r = hedge_on_paths(env, params, hedger, n_paths, seed)
        m = risk.hedge_metrics(r["pnl"], r["cost"], r["turnover"])
        rows.append({"agent": label, "market": env.config.market,
                     **{k: float(v) for k, v in m.items()}, "wall_s": r["wall_s"],
                     "path_steps_per_s": r["path_steps_per_s"],
                     "gate": status if label == name else "classical",
                     **versus.directional(r["pnl"], r["spot_return"], r["hedge_0"])})
        runs.append(r)
    t = time.perf_counter()
    base = jax.random.PRNGKey(seed) if seed < 2**32 else prng_key(seed)
    key = jax.random.fold_in(base, zlib.crc32(b"paired_bootstrap") & 0x7FFFFFFF)
    paired = versus.paired_columns([r["pnl"] for r in runs], [r["cost"] for r in runs], ref,
                                   key, n_boot)
    boot_s = time.perf_counter() - t
    for row, p in zip(rows, paired):
        row.update(bs_delta_0=rows[ref]["hedge_0"], **p)
    excluded = {name: versus.gate_reason(gate_results)} if status.startswith("GATE") else {}
    best = versus.winner(rows, excluded)
    shown = [{**r, "agent": versus.marked(r["agent"], r["gate"])} for r in rows]

    where = Path(run_dir).name if run_dir is not None else name
    title = f"{where} on {env.config.market}: {n_paths:,} paths"
    print_metrics_table(shown, title=title)
    versus.print_block(shown, ("agent",), title="Directional bets and paired differences to "
                       f"BS delta (same paths; {n_boot} bootstrap replicates, 95% CI)")
    if excluded:
        gates.print_gates(gate_results, title=f"sanity gates: {name}: {status}")
    print(best)
    print(f"gates {gates_s:.1f}s, paired bootstrap {boot_s:.1f}s")
    out = Path(out)
    timing = {"gates_s": gates_s, "bootstrap_s": boot_s}
    # strict JSON: a NaN (a slope on one path) or inf becomes null, as in stress.json
    finite = [{k: (None if isinstance(v, float) and not math.isfinite(v) else v)
               for k, v in r.items()} for r in rows]
    atomic_write_json(out / "results.json", {
        **{k: v for k, v in finite[0].items() if k not in ("agent", "market")},
        "agents": {r["agent"]: r for r in finite}, "run_dir": str(run_dir),
        "market": env.config.market, "premium": float(params.premium), "seed": seed,
        "gates": [gates.as_dict(g) for g in gate_results], "best": best,
        "excluded": excluded, "reference": versus.REFERENCE, "n_boot": n_boot,
        "timing": timing, **run_metadata()})
    md = versus.markdown_block(shown, ("agent", "market"), _TABLE_COLUMNS)
    md += f"\n{best}\n\nsanity gates of {name}: {status}" + \
        (f" ({excluded[name]})" if excluded else "") + "\n"
    atomic_write_text(out / "results.md", md)
    atomic_write_text(out / "results.csv", csv_table(rows))
    pnl_distribution({s["agent"]: r["pnl"] for s, r in zip(shown, runs)},
                     out / "pnl_distribution.png", title)
    print(f"wrote {out}/" + ", ".join(OUTPUT_FILES))
    return {"rows": rows, "gates": gate_results, "best": best, "timing": timing}
