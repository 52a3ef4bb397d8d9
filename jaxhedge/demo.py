"""``make demo``: train the learning hedgers briefly, then compare every hedger, calm vs stressed.

1. Train small versions (the ``smoke`` presets, retargeted to the demo contract) of deep
   hedging (no-transaction-band network), RLOP and Adaptive-QLBS, each in
   ``OUT/<agent>/`` with checkpoints and ``run.json``. A finished run is reused, so a second
   ``make demo`` only evaluates.
2. Hedge one short ATM call (S0 = K = 1, 28 days, weekly rebalancing: the papers' training
   world, 0.2% proportional cost) on two markets: ``calm`` (GBM, sigma 0.2) and ``stressed``
   (the regime chain: sigma 0.2 / 0.6, costs x3 and jumps in stress). Every hedger sees the
   same paths in a market. Naked, BS delta and Whalley–Wilmott are the baselines.
3. Print the table; write ``OUT/demo.md``, ``OUT/demo.csv``, ``OUT/results.json`` and one
   P&L distribution plot per market.

Every trained agent goes through the sanity gates (:mod:`jaxhedge.gates`) first: one that
fails is shown as ``name [GATE FAILED: <checks>]`` in the table and the plots, with the
reason printed (smoke-length training rarely passes ``bs_price``: the demo shows how a
short run looks, marked, not a finished hedger).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from jaxhedge import hedge
from jaxhedge.env import EnvConfig, HedgingEnv
from jaxhedge.ledger import CostModel
from jaxhedge.markets import GBMParams, two_state
from jaxhedge.report.plots import pnl_distribution
from jaxhedge.report.tables import csv_table, markdown_table, print_metrics_table
from jaxhedge.runinfo import atomic_write_json, atomic_write_text, run_metadata

N_STEPS, MATURITY, COST, SIGMA = 4, 28 / 252, 2e-3, 0.2
DT = MATURITY / N_STEPS

# How each learning agent's smoke preset is pointed at the demo contract.
TRAINING = {
    "deep-hedging": [f"agent.env.n_steps={N_STEPS}", "contract.s0=1.0", f"contract.maturity={MATURITY}",
                     f"contract.cost={COST}", f"contract.sigma={SIGMA}",
                     "agent.risk_aversion=100.0"],
    "rlop": [f"agent.n_steps={N_STEPS}", f"hparams.contracts.dt={DT}",
             f"hparams.contracts.cost_lo={COST}", f"hparams.contracts.cost_hi={COST}"],
    "adaptive-qlbs": [f"agent.n_steps={N_STEPS}", f"hparams.contracts.dt={DT}",
                      "hparams.contracts.mu_std=0.0", "hparams.contracts.sigma_lo=0.15",
                      "hparams.contracts.sigma_hi=0.25", "hparams.contracts.s0_lo=0.9",
                      "hparams.contracts.s0_hi=1.1", "hparams.contracts.strike_lo=1.0",
                      "hparams.contracts.strike_hi=1.0", f"hparams.contracts.cost_lo={COST}",
                      f"hparams.contracts.cost_hi={COST}"],
}


def demo_markets():
    """(name, EnvConfig, market params) of the two demo markets."""
    return [
        ("calm", "gbm", GBMParams(s0=1.0, mu=0.0, sigma=SIGMA)),
        ("stressed", "regime", two_state(calm_sigma=SIGMA, stress_sigma=3 * SIGMA,
                                         p_calm_to_stress=0.25, p_stress_to_calm=0.25,
                                         stress_cost_multiplier=3.0,
                                         stress_jump_intensity=4.0, s0=1.0)),
    ]


def train_agents(out: Path, agents=None, gate_log: dict | None = None) -> dict:
    """Train (or reuse) each demo agent; returns {label: hedger}, the label carrying
    ``[GATE FAILED: ...]`` for an agent that fails a sanity gate (results in ``gate_log``)."""
    from jaxhedge.gates import as_dict, gate_label
    from jaxhedge.runs import check_agent, load_trained
    from jaxhedge.train import run_training
    from jaxhedge.train.jobs import JOBS, load_job

    hedgers = {}
    for name in agents or TRAINING:
        if name not in JOBS:
            continue
        job = load_job(name, "smoke", overrides=TRAINING[name])
        agent, hparams = job.build()
        run_dir = out / name
        run_training(agent, hparams, run_dir=run_dir, resume=True, config=None,
                     **dataclasses.asdict(job.train))
        agent, hparams, state = load_trained(run_dir)
        results = check_agent(agent, hparams, state)
        mark = gate_label(results)
        if gate_log is not None:
            gate_log[name] = {"label": mark or "pass", "checks": [as_dict(r) for r in results]}
        if mark:
            print(f"{name}: {mark} (smoke-length training; `jaxhedge check {run_dir}` "
                  f"shows every check)")
        hedgers[f"{name} [{mark}]" if mark else name] = agent.hedger(state, hparams)
    return hedgers


def run_demo(out: Path, n_paths: int = 20_000, train: bool = True) -> list:
    out = Path(out)
    gate_log: dict = {}
    hedgers = train_agents(out, gate_log=gate_log) if train else {}
    hedgers = {**hedgers, "naked": hedge.make_hedger("naked"),
               "delta": hedge.make_hedger("delta"),
               "ww": hedge.make_hedger("ww", risk_aversion=100.0)}
    rows = []
    for market_name, kind, market in demo_markets():
        env = HedgingEnv(EnvConfig(market=kind, n_steps=N_STEPS))
        params = env.default_params(market, strike=1.0, maturity=MATURITY,
                                    costs=CostModel(proportional=COST))
        pnls = {}
        for name, hedger in hedgers.items():
            report = hedge.run_hedge(env, params, hedger, n_paths, seed=7)
            rows.append({"market": market_name, "agent": name, **report.metrics,
                         "wall_s": report.wall_s, "path_steps_per_s": report.path_steps_per_s})
            pnls[name] = report.pnl
        pnl_distribution(pnls, out / f"pnl_{market_name}.png",
                         f"{market_name}: short ATM call, {N_STEPS} weekly hedges, cost {COST:g}")
    print_metrics_table(rows, title=f"Short ATM call (S0 = K = 1, 28 days, {N_STEPS} weekly "
                                    f"hedges, cost {COST:g}), {n_paths:,} paths per market")
    atomic_write_text(out / "demo.md", markdown_table(rows))
    atomic_write_text(out / "demo.csv", csv_table(rows))
    atomic_write_json(out / "results.json", {"rows": rows, "gates": gate_log, **run_metadata()})
    print(f"wrote {out}/demo.md, demo.csv, results.json, pnl_calm.png, pnl_stressed.png")
    return rows
