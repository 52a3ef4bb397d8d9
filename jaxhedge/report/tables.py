"""Metric tables: a rich table for the terminal, markdown and CSV for files."""
from __future__ import annotations

import csv
import io

# Columns shown for a hedging comparison, in order, with their header and number format.
METRIC_COLUMNS = [
    ("mean_pnl", "mean P&L", "{:.4f}"),
    ("std_pnl", "std P&L", "{:.4f}"),
    ("shortfall_prob", "P(shortfall)", "{:.3f}"),
    ("es_5", "ES5% SF", "{:.4f}"),
    ("es_10", "ES10% SF", "{:.4f}"),
    ("mean_cost", "mean cost", "{:.4f}"),
    ("turnover", "turnover", "{:.3f}"),
    ("wall_s", "wall s", "{:.2f}"),
    ("path_steps_per_s", "path-steps/s", "{:.3g}"),
]
LABEL_COLUMNS = ("agent", "market", "scenario")


def _columns(rows):
    labels = [c for c in LABEL_COLUMNS if any(c in r for r in rows)]
    metrics = [(k, h, f) for k, h, f in METRIC_COLUMNS if any(k in r for r in rows)]
    return labels, metrics


def _cell(row, key, fmt):
    value = row.get(key)
    return "" if value is None else fmt.format(value)


def print_metrics_table(rows: list[dict], title: str | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    labels, metrics = _columns(rows)
    table = Table(title=title)
    for c in labels:
        table.add_column(c)
    for _, header, _ in metrics:
        table.add_column(header, justify="right")
    for r in rows:
        table.add_row(*[str(r.get(c, "")) for c in labels],
                      *[_cell(r, k, f) for k, _, f in metrics])
    Console(width=160).print(table)


def markdown_table(rows: list[dict]) -> str:
    labels, metrics = _columns(rows)
    header = [*labels, *[h for _, h, _ in metrics]]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        cells = [str(r.get(c, "")) for c in labels] + [_cell(r, k, f) for k, _, f in metrics]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def csv_table(rows: list[dict]) -> str:
    keys = list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def frame_markdown(frame, floatfmt: str = "{:.3f}", nan: str = "") -> str:
    """Any pandas DataFrame as a GitHub markdown table: floats through ``floatfmt``, NaN as
    ``nan``, everything else ``str`` (no tabulate dependency)."""
    import math

    def cell(v):
        if isinstance(v, float):  # numpy float64 is a float
            return nan if math.isnan(v) else floatfmt.format(v)
        if hasattr(v, "dtype") and getattr(v.dtype, "kind", "") == "f":  # numpy float32
            return cell(float(v))
        return str(v)

    cols = [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |"
              for row in frame.itertuples(index=False)]
    return "\n".join(lines)
