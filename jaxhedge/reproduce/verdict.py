"""Who beats Black-Scholes after costs, where, by how much -- and is it hedging or a bet?

Read off the hedging table's paired-bootstrap columns (:mod:`.versus_bs`), per slice,
model and mode, for RMSE, mean cost, shortfall probability and ES 5% (all lower-is-better):

* a metric is **better** than BS when the whole 95% CI of (model - BS) lies below 0,
  **worse** when it lies above 0; a CI containing 0 is no difference, never a win;
* the row is ``beats BS`` (better on at least one metric, worse on none), ``worse than
  BS`` (the reverse), ``mixed`` (both) or ``no significant difference``;
* the row is **directional** when its first-day hedge ratio is more than
  :data:`DIRECTIONAL_SHARES` shares from the BS delta on the same episodes, or its P&L
  beta on the underlying's return (in shares) is more than that from BS's: a short call
  over-hedged by that much in a rally "wins" by the bet, not by hedging. A directional
  ``beats BS`` is reported as such and not counted as a hedging win.

Rows of agents that failed a sanity gate are not judged (:mod:`.summary` lists them).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from jaxhedge.report.tables import frame_markdown

__all__ = ["VERDICT_METRICS", "DIRECTIONAL_SHARES", "judge", "verdict_markdown",
           "hedging_markdown", "ci_text"]

#: hedging-table metric -> label (the paired-bootstrap columns d_<metric>[_lo|_hi])
VERDICT_METRICS = {"rmse": "RMSE", "avg_cost": "cost", "shortfall_prob": "P(Pi<0)",
                   "es_5": "ES 5%"}
#: first-day hedge or P&L beta this many shares from BS's flags a row as directional
DIRECTIONAL_SHARES = 0.15
SLICE = ["period", "asset", "bucket_days", "target_moneyness"]


def ci_text(d, lo, hi, fmt="{:+.3g}") -> str:
    """``"+0.12 [+0.05, +0.2]"``; empty when the difference is NaN (BS itself)."""
    if not np.isfinite(d):
        return ""
    return f"{fmt.format(d)} [{fmt.format(lo)}, {fmt.format(hi)}]"


def _sign(lo, hi) -> int:
    """-1 better (CI below 0), +1 worse (CI above 0), 0 no significant difference."""
    if np.isfinite(hi) and hi < 0:
        return -1
    if np.isfinite(lo) and lo > 0:
        return 1
    return 0


def judge(hedging: pd.DataFrame) -> pd.DataFrame:
    """One row per (slice, model, mode) with paired CIs: ``better`` / ``worse`` (metric
    labels, "+"-joined), ``verdict`` and ``directional`` (bool), plus the slice keys."""
    rows = []
    have = hedging[np.isfinite(hedging["d_rmse"].astype(float))]
    for _, r in have.iterrows():
        signs = {lab: _sign(r[f"d_{m}_lo"], r[f"d_{m}_hi"]) for m, lab in VERDICT_METRICS.items()}
        better = [k for k, v in signs.items() if v < 0]
        worse = [k for k, v in signs.items() if v > 0]
        verdict = ("mixed" if better and worse else "beats BS" if better
                   else "worse than BS" if worse else "no significant difference")
        directional = bool(abs(r["hedge0"] - r["bs_hedge0"]) > DIRECTIONAL_SHARES
                           or abs(r["pnl_beta"] - r["bs_pnl_beta"]) > DIRECTIONAL_SHARES)
        rows.append({**{k: r[k] for k in SLICE[:3]},
                     "target_moneyness": f"{float(r['target_moneyness']):.2f}",
                     "model": r["model"], "mode": r["mode"],
                     "better": "+".join(better), "worse": "+".join(worse), "verdict": verdict,
                     "directional": directional,
                     **{f"{m}_ci": ci_text(r[f"d_{m}"], r[f"d_{m}_lo"], r[f"d_{m}_hi"])
                        for m in VERDICT_METRICS},
                     "hedge0": r["hedge0"], "bs_hedge0": r["bs_hedge0"],
                     "pnl_beta": r["pnl_beta"], "bs_pnl_beta": r["bs_pnl_beta"]})
    return pd.DataFrame(rows)


def _where(r) -> str:
    return f"{r['period']} {r['asset']} {int(r['bucket_days'])}d K/F={r['target_moneyness']}"


def _bet(r) -> str:
    return (f"first-day hedge {r['hedge0']:.2f} vs BS {r['bs_hedge0']:.2f}, P&L beta "
            f"{r['pnl_beta']:+.2f} vs BS {r['bs_pnl_beta']:+.2f} shares")


def verdict_markdown(hedging: pd.DataFrame) -> list[str]:
    """The verdict section of ``summary.md`` (lines)."""
    j = judge(hedging) if len(hedging) and "d_rmse" in hedging else pd.DataFrame()
    lines = ["## Verdict: who beats BS after costs", "",
             "Paired block-bootstrap 95% CIs of (model - BS) on the same episodes; a CI "
             "containing 0 is no difference. `directional`: first-day hedge or P&L beta more "
             f"than {DIRECTIONAL_SHARES} shares from BS's (a bet on the market's direction, "
             "not better hedging).", ""]
    if not len(j):
        return lines + ["No model was compared with BS (none run beside it, or every other "
                        "model was excluded above).", ""]
    for (model, mode), g in j.groupby(["model", "mode"], sort=False):
        hedge_wins = g[(g["verdict"] == "beats BS") & ~g["directional"]]
        bets = g[g["verdict"].isin(["beats BS", "mixed"]) & g["directional"]]
        worse = g[g["verdict"] == "worse than BS"]
        lines.append(f"- **{model} ({mode})**: beats BS after costs in {len(hedge_wins)} of "
                     f"{len(g)} slices, worse in {len(worse)}, directional wins in {len(bets)}.")
        for _, r in hedge_wins.iterrows():
            lines.append(f"  - beats BS in {_where(r)} on {r['better']}: "
                         + "; ".join(f"{VERDICT_METRICS[m]} {r[f'{m}_ci']}"
                                     for m, lab in VERDICT_METRICS.items()
                                     if lab in r["better"].split("+")))
        for _, r in bets.iterrows():
            lines.append(f"  - DIRECTIONAL in {_where(r)} (better on {r['better']}"
                         + (f", worse on {r['worse']}" if r["worse"] else "")
                         + f"): {_bet(r)}")
    cols = [*SLICE, "model", "mode", *[f"{m}_ci" for m in VERDICT_METRICS], "hedge0",
            "bs_hedge0", "pnl_beta", "bs_pnl_beta", "verdict", "directional"]
    table = j[cols].rename(columns={f"{m}_ci": f"d {lab} [95% CI]"
                                    for m, lab in VERDICT_METRICS.items()})
    return lines + ["", frame_markdown(table, "{:.3g}"), ""]


def hedging_markdown(hedging: pd.DataFrame, cost: float) -> str:
    """``hedging.md``: metrics, the directional columns and (model - BS) with its CI; a
    failed agent's model cell carries its ``GATE FAILED`` mark."""
    from jaxhedge.reproduce.gating import display_name

    h = hedging.copy()
    h["model"] = [display_name(m, g if str(g).startswith("GATE FAILED") else "")
                  for m, g in zip(h["model"], h["gate"])]
    for m, lab in VERDICT_METRICS.items():
        h[f"d {lab} vs BS [95% CI]"] = [ci_text(*v) for v in
                                        zip(h[f"d_{m}"], h[f"d_{m}_lo"], h[f"d_{m}_hi"])]
    keep = [*SLICE, "model", "mode", "rmse", "avg_cost", "shortfall_prob", "es_5", "es_10",
            "n_hedges", "mean_pnl", "hedge0", "bs_hedge0", "pnl_beta", "bs_pnl_beta",
            *[f"d {lab} vs BS [95% CI]" for lab in VERDICT_METRICS.values()],
            "fits_on_bound", "gate"]
    return (f"# After-cost hedging (eps = {cost:g})\n\n"
            "hedge0: mean first-day hedge ratio (bs_hedge0: the BS delta on the same "
            "episodes); pnl_beta: slope of P&L/S0 on the underlying's return (shares of "
            "directional exposure); d ... vs BS: model - BS with a paired block-bootstrap "
            "95% CI over start days; fits_on_bound: episodes whose (sigma, mu) surface fit "
            "sits on a bound.\n\n" + frame_markdown(h[keep], "{:.4g}") + "\n")
