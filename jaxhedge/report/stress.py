"""Stress tables: degradation ratios, verdicts, CSV/markdown/rich table and the heatmap.

Rows are dicts with the keys of :data:`STRESS_COLUMNS` (one per agent x scenario).

Degradation ``es_5_vs_calm = es_5(scenario) / es_5(calm)`` of the same agent. When the calm
ES is 0 (the agent never falls short in the worst 5% of calm paths) the ratio is ``inf`` if
the scenario's ES is positive and 1 if it is 0 too.

Verdict (per agent, from the ratios): a scenario *breaks* the agent when its ratio is at
least ``breaks_at`` (2: the tail loss at least doubles), *strains* it from ``strained_at``
(1.25), and the agent *survives* it below that. The text names the worst scenario first.

Rows may also carry ``rmse`` and the columns of :mod:`jaxhedge.report.versus` (gate,
first-day hedge, directional slope, paired differences to BS delta): the CSV appends them
after :data:`STRESS_COLUMNS`, the markdown and terminal tables show them, and an agent
whose ``gate`` is ``GATE FAILED: ...`` is labelled so in every table, verdict and figure.
"""
from __future__ import annotations

import csv
import io
import math
import os
from pathlib import Path

import numpy as np

from jaxhedge.report import versus
from jaxhedge.runinfo import save_figure

STRESS_COLUMNS = ("agent", "scenario", "shortfall_prob", "es_5", "es_10", "mean_pnl",
                  "std_pnl", "mean_cost", "turnover", "es_5_vs_calm")
_FORMATS = {"shortfall_prob": "{:.3f}", "es_5": "{:.4f}", "es_10": "{:.4f}",
            "mean_pnl": "{:.4f}", "std_pnl": "{:.4f}", "mean_cost": "{:.4f}",
            "turnover": "{:.3f}", "es_5_vs_calm": "{:.2f}"}
_HEADERS = {"shortfall_prob": "P(shortfall)", "es_5": "ES5% SF", "es_10": "ES10% SF",
            "mean_pnl": "mean P&L", "std_pnl": "std P&L", "mean_cost": "mean cost",
            "es_5_vs_calm": "ES5% / calm"}
#: Columns the CSV appends after :data:`STRESS_COLUMNS` when the rows carry them.
EXTRA_COLUMNS = ("rmse",) + versus.VERSUS_COLUMNS
BREAKS_AT = 2.0
STRAINED_AT = 1.25


def label(row: dict) -> str:
    """The agent as tables and figures show it (marked when it failed a sanity gate)."""
    return versus.marked(row["agent"], row.get("gate", ""))


def degradation(es: float, es_calm: float) -> float:
    """``es / es_calm``; ``inf`` when only the calm ES is 0, 1 when both are."""
    if es_calm > 0:
        return es / es_calm
    return math.inf if es > 0 else 1.0


def add_degradation(rows: list[dict]) -> list[dict]:
    """Set ``es_5_vs_calm`` on every row from the same agent's ``calm`` row (in place)."""
    calm = {r["agent"]: r["es_5"] for r in rows if r["scenario"] == "calm"}
    for r in rows:
        if r["agent"] not in calm:
            raise ValueError(f"rows: agent {r['agent']!r} has no calm row to compare with")
        r["es_5_vs_calm"] = degradation(r["es_5"], calm[r["agent"]])
    return rows


def _ratio_text(r: float) -> str:
    return "ES 5% > 0 vs 0 in calm" if math.isinf(r) else f"\u00d7{r:.2f}"


def verdicts(rows: list[dict], breaks_at: float = BREAKS_AT,
             strained_at: float = STRAINED_AT) -> dict[str, str]:
    """One sentence per agent, written from its ``es_5_vs_calm`` ratios (module docstring).

    Example: ``"delta: worst under crash (ES 5% x4.20 calm: 12.1 vs 2.9); breaks under
    crash (x4.20), gap_at_expiry (x2.31); strained by vol_spike (x1.40); survives
    vol_of_vol (x1.10)"``.
    """
    out = {}
    for agent in dict.fromkeys(r["agent"] for r in rows):
        mine = [r for r in rows if r["agent"] == agent and r["scenario"] != "calm"
                and not math.isnan(r["es_5_vs_calm"])]
        if not mine:
            calm = [r for r in rows if r["agent"] == agent]
            out[agent] = f"{label(calm[0])}: only the calm scenario was run"
            continue
        mine.sort(key=lambda r: r["es_5_vs_calm"], reverse=True)
        calm = next(r for r in rows if r["agent"] == agent and r["scenario"] == "calm")
        worst = mine[0]
        groups = {"breaks under": [], "strained by": [], "survives": []}
        for r in mine:
            ratio = r["es_5_vs_calm"]
            key = ("breaks under" if ratio >= breaks_at else
                   "strained by" if ratio >= strained_at else "survives")
            groups[key].append(f"{r['scenario']} ({_ratio_text(ratio)})")
        head = (f"{label(calm)}: worst under {worst['scenario']} (ES 5% "
                f"{_ratio_text(worst['es_5_vs_calm'])} calm: {worst['es_5']:.4g} vs "
                f"{calm['es_5']:.4g})")
        parts = [f"{k} {', '.join(v)}" for k, v in groups.items() if v]
        out[agent] = "; ".join([head, *parts])
    return out


def worst_scenario(rows: list[dict], agent: str) -> str:
    """The non-calm scenario with the largest ``es_5_vs_calm`` for ``agent``."""
    mine = [r for r in rows if r["agent"] == agent and r["scenario"] != "calm"]
    return max(mine, key=lambda r: r["es_5_vs_calm"])["scenario"]


def _cell(row, key):
    if key == "agent":
        return label(row)
    v = row.get(key)
    if isinstance(v, float):
        return "inf" if math.isinf(v) else _FORMATS.get(key, "{:.4g}").format(v)
    return str(v)


def csv_text(rows: list[dict]) -> str:
    """CSV with :data:`STRESS_COLUMNS`, then the :data:`EXTRA_COLUMNS` the rows carry (full
    precision; ``inf`` spelled out; ``agent`` plain, its gate status in ``gate``)."""
    columns = STRESS_COLUMNS + tuple(c for c in EXTRA_COLUMNS if any(c in r for r in rows))
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for r in rows:
        w.writerow([repr(float(r[c])) if isinstance(r.get(c), float) else r.get(c, "")
                    for c in columns])
    return buf.getvalue()


def _has_versus(rows) -> bool:
    return any("rmse_vs_bs" in r for r in rows)


def markdown(rows: list[dict], verdict_lines: dict[str, str], skipped: dict[str, str],
             title: str = "") -> str:
    extra = list(versus.HEADERS) if _has_versus(rows) else []
    head = [_HEADERS.get(c, c) for c in STRESS_COLUMNS] + [versus.HEADERS[k] for k in extra]
    lines = [f"# {title}\n" if title else "", "| " + " | ".join(head) + " |",
             "|" + "---|" * len(head)]
    lines += ["| " + " | ".join([*(_cell(r, c) for c in STRESS_COLUMNS),
                                 *(versus.cells(r)[k] for k in extra)]) + " |" for r in rows]
    lines += ["", "## Verdicts", ""] + [f"- {v}" for v in verdict_lines.values()]
    if skipped:
        lines += ["", "## Skipped scenarios", ""] + [f"- {k}: {v}" for k, v in skipped.items()]
    return "\n".join(lines).lstrip("\n") + "\n"


def print_table(rows: list[dict], verdict_lines: dict[str, str], skipped: dict[str, str],
                title: str = "") -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for c in STRESS_COLUMNS:
        table.add_column(_HEADERS.get(c, c), justify="left" if c in ("agent", "scenario")
                         else "right")
    for r in rows:
        table.add_row(*[_cell(r, c) for c in STRESS_COLUMNS])
    console = Console(width=160)
    console.print(table)
    if _has_versus(rows):  # too wide to sit beside the metrics in a terminal
        versus.print_block([{**r, "agent": label(r)} for r in rows], ("agent", "scenario"),
                           title="Directional bets and paired differences to BS delta "
                                 "(same paths; 95% bootstrap CI)")
    for v in verdict_lines.values():
        console.print(v, markup=False, highlight=False)
    for k, v in skipped.items():
        console.print(f"skipped {k}: {v}", markup=False, highlight=False)


def heatmap(rows: list[dict], path: str | os.PathLike, title: str = "") -> Path:
    """Agent x scenario heatmap of ``es_5_vs_calm`` (log colour scale, value in each cell);
    written atomically (:func:`jaxhedge.runinfo.save_figure`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm
    from matplotlib.ticker import FuncFormatter, NullFormatter

    agents = list(dict.fromkeys(r["agent"] for r in rows))
    shown_as = {r["agent"]: label(r) for r in rows}
    scenarios = list(dict.fromkeys(r["scenario"] for r in rows))
    grid = np.full((len(agents), len(scenarios)), np.nan)
    for r in rows:
        grid[agents.index(r["agent"]), scenarios.index(r["scenario"])] = r["es_5_vs_calm"]
    finite = grid[np.isfinite(grid) & (grid > 0)]
    hi = max(float(finite.max()) if finite.size else 2.0, 2.0)
    lo = min(float(finite.min()) if finite.size else 0.5, 1.0 / hi)
    # LogNorm cannot place 0 or inf: clip them to the ends of the scale (the cell text is exact)
    shown = np.clip(np.where(np.isinf(grid), hi, grid), lo, hi)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(1.2 * len(scenarios) + 3, 0.6 * len(agents) + 2))
    im = ax.imshow(np.ma.masked_invalid(shown), cmap="RdYlGn_r", norm=LogNorm(lo, hi),
                   aspect="auto")
    for i in range(len(agents)):
        for j in range(len(scenarios)):
            v = grid[i, j]
            text = "" if np.isnan(v) else ("inf" if np.isinf(v) else f"{v:.2f}")
            ax.text(j, i, text, ha="center", va="center", fontsize=8)
    ax.set_xticks(range(len(scenarios)), scenarios, rotation=35, ha="right")
    ax.set_yticks(range(len(agents)), [shown_as[a] for a in agents])
    bar = fig.colorbar(im, ax=ax, label="ES 5% of shortfall / calm")
    bar.ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    bar.ax.yaxis.set_minor_formatter(NullFormatter())
    bar.set_ticks([t for t in (0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64) if lo <= t <= hi])
    ax.set_title(title or "ES 5% of the shortfall relative to calm")
    fig.tight_layout()
    return save_figure(fig, path)


def winners_markdown(winners: dict[str, str]) -> str:
    """The ``## Winners`` section: one line per scenario (:func:`versus.winner`)."""
    if not winners:
        return ""
    return "\n".join(["", "## Winners (lowest ES 5%; gate failures not ranked)", "",
                      *(f"- {k}: {v}" for k, v in winners.items())]) + "\n"
