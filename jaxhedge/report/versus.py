"""The columns every hedging table of ``eval`` and ``stress`` carries beside the risk metrics,
the sanity-gate mark, and the winner line that leaves gate failures out.

Per row (one hedger on one set of paths):

* ``gate``: ``pass``, ``GATE FAILED: <checks>`` (:func:`jaxhedge.gates.gate_label`) or
  ``classical`` (closed-form hedgers are the references, not gated).
* ``hedge_0``: mean first-day (t = 0) position, beside ``bs_delta_0``, the BS delta
  hedger's on the same paths (the BS delta of the same contract).
* ``pnl_slope``, ``pnl_slope_r2``: OLS slope of the P&L on the underlying's simple return
  ``S_T / S_0 - 1`` over the episode (P&L per unit of return) and its R²
  (:func:`jaxhedge.comparison.directional_slope`); a hedge's slope should be near 0.
* ``{m}_vs_bs``, ``_lo``, ``_hi`` for ``m`` in :data:`PAIRED_METRICS`: ``m(hedger) -
  m(BS delta)`` on the same paths and its paired-bootstrap percentile interval
  (:func:`jaxhedge.comparison.paired_path_bootstrap`; one path per block).

See docs/stress.md ("Gates, directional bets and differences to BS").
"""
from __future__ import annotations

import math

import numpy as np

from jaxhedge import comparison, gates

#: The classical hedger every table is compared with (added when the user did not list it).
REFERENCE = "delta"
PAIRED_METRICS = comparison.PAIRED_METRICS
DIRECTIONAL_COLUMNS = ("gate", "hedge_0", "bs_delta_0", "pnl_slope", "pnl_slope_r2")
PAIRED_COLUMNS = tuple(f"{m}_vs_bs{s}" for m in PAIRED_METRICS for s in ("", "_lo", "_hi"))
VERSUS_COLUMNS = DIRECTIONAL_COLUMNS + PAIRED_COLUMNS
#: Headers of the display form (one cell per paired metric: "diff [lo, hi]").
HEADERS = {"gate": "gate", "hedge_0": "hedge t=0", "bs_delta_0": "BS delta t=0",
           "pnl_slope": "P&L/return slope", "pnl_slope_r2": "slope R2",
           "rmse": "dRMSE vs BS [95% CI]", "mean_cost": "d mean cost vs BS [95% CI]",
           "shortfall_prob": "dP(shortfall) vs BS [95% CI]", "es_5": "dES5% vs BS [95% CI]"}
_DIGITS = {"rmse": 4, "mean_cost": 4, "shortfall_prob": 3, "es_5": 4}
#: The metric a winner is picked by (the project's headline tail risk; lower is better).
RANK_METRIC = "es_5"


def gate_status(results: list | None) -> str:
    """``classical`` (None: not gated), ``pass``, or ``GATE FAILED: <checks>``."""
    if results is None:
        return "classical"
    return gates.gate_label(results) or "pass"


def marked(label: str, status: str) -> str:
    """The label tables and legends show: ``label [GATE FAILED: ...]`` for a failure."""
    return f"{label} [{status}]" if status.startswith("GATE FAILED") else label


def gate_reason(results: list) -> str:
    """One line naming every failed check and what it found."""
    return "; ".join(f"{r.name}: {r.detail}" for r in results if r.passed is False)


def directional(pnl, spot_return, hedge_0) -> dict[str, float]:
    """``hedge_0`` (mean of the per-path first positions), ``pnl_slope``, ``pnl_slope_r2``;
    NaN slope with fewer than 2 paths."""
    pnl, spot_return = np.asarray(pnl, np.float64), np.asarray(spot_return, np.float64)
    out = {"hedge_0": float(np.mean(np.asarray(hedge_0, np.float64)))}
    d = (comparison.directional_slope(pnl, spot_return) if pnl.size >= 2
         else {"slope": math.nan, "r2": math.nan})
    return {**out, "pnl_slope": d["slope"], "pnl_slope_r2": d["r2"]}


def paired_columns(pnls: list, costs: list, reference: int, key,
                   n_boot: int = 1000) -> list[dict[str, float]]:
    """The :data:`PAIRED_COLUMNS` of each hedger against row ``reference`` (same paths)."""
    res = comparison.paired_path_bootstrap(np.stack(pnls), np.stack(costs), reference, key,
                                           n_boot=n_boot)
    return [{f"{m}_vs_bs{s}": r[m][k] for m in PAIRED_METRICS
             for s, k in (("", "diff"), ("_lo", "lo"), ("_hi", "hi"))} for r in res]


def _fmt(v, spec: str) -> str:
    """``v`` through ``spec``; blank for a missing or NaN value."""
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else spec.format(v)


def cells(row: dict) -> dict[str, str]:
    """Display strings of the versus block of one row, keyed as :data:`HEADERS`."""
    out = {"gate": str(row.get("gate", "")), "hedge_0": _fmt(row.get("hedge_0"), "{:.4f}"),
           "bs_delta_0": _fmt(row.get("bs_delta_0"), "{:.4f}"),
           "pnl_slope": _fmt(row.get("pnl_slope"), "{:+.3f}"),
           "pnl_slope_r2": _fmt(row.get("pnl_slope_r2"), "{:.3f}")}
    for m in PAIRED_METRICS:
        spec = f"{{:+.{_DIGITS[m]}f}}"
        diff = _fmt(row.get(f"{m}_vs_bs"), spec)
        out[m] = diff and (f"{diff} [{_fmt(row.get(f'{m}_vs_bs_lo'), spec)}, "
                           f"{_fmt(row.get(f'{m}_vs_bs_hi'), spec)}]")
    return out


def winner(rows: list[dict], excluded: dict[str, str], metric: str = RANK_METRIC) -> str:
    """``best <metric>: <agent> (<value>; vs BS <diff> [lo, hi])``, ranked over the rows
    whose agent is not in ``excluded`` (label -> reason); the excluded are named with their
    reason, never ranked silently."""
    ranked = [r for r in rows if r["agent"] not in excluded and math.isfinite(r[metric])]
    if ranked:
        best = min(ranked, key=lambda r: r[metric])
        vs = cells(best).get(metric, "")
        text = f"best {metric}: {best['agent']} ({best[metric]:.4g}" + \
            (f"; vs BS {vs})" if vs else ")")
    else:
        text = f"best {metric}: none (no agent can be ranked)"
    out = {r["agent"]: r.get("gate", "") for r in rows if r["agent"] in excluded}
    if out:
        text += "; not ranked: " + "; ".join(f"{marked(a, g)} ({excluded[a]})"
                                              for a, g in out.items())
    return text


def markdown_block(rows: list[dict], label_columns: tuple[str, ...],
                   metric_columns=()) -> str:
    """One markdown table: the label columns, ``metric_columns`` (``(key, header, format)``
    triples, e.g. :data:`jaxhedge.report.tables.METRIC_COLUMNS`) and the versus block."""
    head = [*label_columns, *(h for _, h, _ in metric_columns), *HEADERS.values()]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        c = cells(r)
        metrics = ["" if r.get(k) is None else f.format(r[k]) for k, _, f in metric_columns]
        lines.append("| " + " | ".join([*(str(r.get(k, "")) for k in label_columns),
                                        *metrics, *(c[k] for k in HEADERS)]) + " |")
    return "\n".join(lines) + "\n"


def print_block(rows: list[dict], label_columns: tuple[str, ...], title: str = "") -> None:
    """The versus block as a rich table (the terminal cannot fit it beside the metrics)."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for k in label_columns:
        table.add_column(k)
    for k, h in HEADERS.items():
        table.add_column(h, justify="left" if k == "gate" else "right")
    for r in rows:
        c = cells(r)
        table.add_row(*(str(r.get(k, "")) for k in label_columns), *(c[k] for k in HEADERS))
    Console(width=240).print(table)
