"""``jaxhedge eval``: a trained agent beside BS delta and Whalley–Wilmott on the same paths."""
from __future__ import annotations

from pathlib import Path

from jaxhedge import hedge
from jaxhedge.report.plots import pnl_distribution
from jaxhedge.report.tables import markdown_table, print_metrics_table
from jaxhedge.runs import evaluation_setup, load_trained
from jaxhedge.runinfo import atomic_write_json, atomic_write_text, run_metadata


#: The registered classical hedgers every trained agent is compared with.
BASELINES = ("delta", "ww")


def evaluate_run(run_dir, out, market=None, n_paths=100_000, seed=1, member=0,
                 risk_aversion=1.0) -> dict:
    agent, hparams, state = load_trained(run_dir, member)
    env, params = evaluation_setup(agent, hparams, market)
    option = env.config.option
    hedgers = {getattr(agent, "name", "agent"): agent.hedger(state, hparams),
               **{name: hedge.make_hedger(name, option, risk_aversion) for name in BASELINES}}
    rows, pnls = [], {}
    for name, hedger in hedgers.items():
        report = hedge.run_hedge(env, params, hedger, n_paths, seed=seed)
        rows.append({"agent": name, "market": env.config.market, **report.metrics,
                     "wall_s": report.wall_s, "path_steps_per_s": report.path_steps_per_s})
        pnls[name] = report.pnl
    title = f"{Path(run_dir).name} on {env.config.market}: {n_paths:,} paths"
    print_metrics_table(rows, title=title)
    out = Path(out)
    trained = rows[0]
    atomic_write_json(out / "results.json", {
        **{k: v for k, v in trained.items() if k not in ("agent", "market")},
        "agents": {r["agent"]: r for r in rows}, "run_dir": str(run_dir),
        "market": env.config.market, "premium": float(params.premium), "seed": seed,
        **run_metadata()})
    atomic_write_text(out / "results.md", markdown_table(rows))
    pnl_distribution(pnls, out / "pnl_distribution.png", title)
    print(f"wrote {out}/results.json, results.md, pnl_distribution.png")
    return {"rows": rows}
