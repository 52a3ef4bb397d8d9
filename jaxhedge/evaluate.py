"""``jaxhedge eval``: a trained agent beside BS delta and Whalley–Wilmott on the same paths."""
from __future__ import annotations

from pathlib import Path

from jaxhedge import hedge
from jaxhedge.env import EnvConfig, HedgingEnv, reference_premium
from jaxhedge.report.plots import pnl_distribution
from jaxhedge.report.tables import markdown_table, print_metrics_table
from jaxhedge.runinfo import atomic_write_json, atomic_write_text, run_metadata


def evaluation_setup(agent, hparams, market: str | None):
    """(env, params) of the agent's training contract, optionally on another market kind.

    Another market keeps s0, the drift and the diffusive vol of the training market and
    takes the rest from :func:`jaxhedge.hedge.default_market`; the premium is that market's
    reference price.
    """
    if hasattr(agent, "evaluation_contract"):
        config, params = agent.evaluation_contract(hparams)
    elif hasattr(hparams, "env"):
        config, params = agent.env, hparams.env
    else:
        raise ValueError(f"run_dir: {type(agent).__name__} has no evaluation contract")
    if market is not None and market != config.market:
        m = params.market
        sigma = getattr(m, "sigma", None)
        if sigma is None:
            sigma = float(getattr(m, "v0", 0.04)) ** 0.5
        config = EnvConfig(market=market, n_steps=config.n_steps, option=config.option)
        params = params.replace(market=hedge.default_market(market, s0=float(m.s0),
                                                            mu=float(m.mu), sigma=float(sigma)))
        params = params.replace(premium=reference_premium(config, params))
    return HedgingEnv(config), params


def evaluate_run(run_dir, out, market=None, n_paths=100_000, seed=1, member=0,
                 risk_aversion=1.0) -> dict:
    from jaxhedge.train import load_trained

    agent, hparams, state = load_trained(run_dir, member)
    env, params = evaluation_setup(agent, hparams, market)
    option = env.config.option
    hedgers = {getattr(agent, "name", "agent"): agent.hedger(state, hparams),
               "delta": hedge.make_hedger("delta", option),
               "ww": hedge.make_hedger("ww", option, risk_aversion)}
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
