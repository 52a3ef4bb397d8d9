"""A finished sweep's results: one table of all members, the best configurations, plots.

Written into the sweep directory (each file atomically: ``jaxhedge.runinfo.atomic_write``)::

    results.csv, results.parquet   one row per member: member, group, block, config,
                                   seed_index, static keys, dynamic hparams, final metrics,
                                   finite, first_bad_step, params_sha256
    best.json, best.md             hyperparameter sets (group x config) ranked by the mean
                                   of the first metric over seeds (finite members only)
    plots/<metric>_vs_<hparam>.png each metric against each swept value, one colour per group
    results.json                   summary, provenance

Rows are sorted by member index, so the table does not depend on which backend, block
size or device count produced it.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from jaxhedge.report.tables import frame_markdown
from jaxhedge.runinfo import (atomic_write, atomic_write_json, atomic_write_text, run_metadata,
                              save_figure)

__all__ = ["collect_table", "best_configs", "write_results", "print_summary", "TABLE_ORDER"]

TABLE_ORDER = ("member", "group", "block", "config", "seed_index")


def _block_files(out: Path) -> list[Path]:
    return sorted((Path(out) / "blocks").glob("block_*.json"))


def collect_table(spec, out: str | Path) -> pd.DataFrame:
    """All members of the finished blocks under ``out`` as a DataFrame sorted by member."""
    rows = []
    for path in _block_files(out):
        rec = json.loads(path.read_text())
        static = {f"static.{k}": v for k, v in rec["static"].items()}
        for m in rec["members"]:
            row = {k: m[k] for k in TABLE_ORDER}
            row.update({k: _cell(v) for k, v in static.items()})
            row.update(m["hparams"])
            row.update({k: (np.nan if v is None else v) for k, v in m["metrics"].items()})
            row.update(finite=m["finite"], first_bad_step=m["first_bad_step"],
                       params_sha256=m["params_sha256"])
            rows.append(row)
    df = pd.DataFrame(rows)
    return df.sort_values("member", kind="stable").reset_index(drop=True) if len(df) else df


def _cell(v):
    return json.dumps(v) if isinstance(v, (list, dict)) else v  # lists (widths) as text


def hparam_columns(spec) -> list[str]:
    return [f"static.{k}" for k, _ in spec.static] + [a.name for a in spec.dynamic]


def best_configs(spec, df: pd.DataFrame, top: int = 5) -> pd.DataFrame:
    """Hyperparameter sets ranked by the mean over seeds of the first metric.

    A set any of whose seeds went non-finite ranks after every finite set (``n_finite``
    tells how many seeds survived); mean and std (ddof=0) use the finite seeds only.
    """
    metric, mode = spec.section.metrics[0], spec.section.mode
    keys = ["group", "config"]
    cols = hparam_columns(spec)
    ok = df[df["finite"]]
    agg = ok.groupby(keys)[list(spec.section.metrics)].agg(["mean", "std"])
    agg.columns = [f"{m}_{s}" for m, s in agg.columns]
    for m in spec.section.metrics:  # population std, like the rest of jaxhedge
        agg[f"{m}_std"] = ok.groupby(keys)[m].std(ddof=0)
    first = df.groupby(keys)[cols].first() if cols else df.groupby(keys)[[]].first()
    counts = df.groupby(keys).agg(n_seeds=("finite", "size"), n_finite=("finite", "sum"))
    table = first.join(counts).join(agg, how="left").reset_index()
    table["all_finite"] = table["n_finite"] == table["n_seeds"]
    score = table[f"{metric}_mean"] * (1 if mode == "min" else -1)
    table = table.assign(_bad=~table["all_finite"], _score=score)
    table = table.sort_values(["_bad", "_score", "group", "config"], kind="stable",
                              na_position="last")
    return table.drop(columns=["_bad", "_score"]).head(top).reset_index(drop=True)


def _atomic_frame(df: pd.DataFrame, path: Path, kind: str) -> None:
    if kind == "csv":
        atomic_write(path, lambda tmp: df.to_csv(tmp, index=False))
    else:
        atomic_write(path, lambda tmp: df.to_parquet(tmp, index=False))


def plot_metrics(spec, df: pd.DataFrame, out: Path) -> list[Path]:
    """``plots/<metric>_vs_<hparam>.png`` for every metric x swept value (finite members)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out) / "plots"
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    ok = df[df["finite"]]
    log_axes = {a.name for a in spec.dynamic if a.kind == "loguniform"}
    for metric in spec.section.metrics:
        for col in hparam_columns(spec):
            fig, ax = plt.subplots(figsize=(5, 3.5))
            for g, part in ok.groupby("group"):
                x = part[col]
                numeric = pd.api.types.is_numeric_dtype(x) and not pd.api.types.is_bool_dtype(x)
                ax.scatter(x if numeric else x.astype(str), part[metric], s=12, alpha=0.7,
                           label=f"group {g}")
            positive = pd.api.types.is_numeric_dtype(ok[col]) and (ok[col] > 0).all()
            if col in log_axes or (positive and len(ok) and ok[col].max() > 50 * ok[col].min()):
                ax.set_xscale("log")
            ax.set_xlabel(col)
            ax.set_ylabel(metric)
            ax.set_title(f"{spec.name}: {metric} vs {col}", fontsize=9)
            if ok["group"].nunique() > 1:
                ax.legend(fontsize=7)
            fig.tight_layout()
            path = out / f"{metric}_vs_{col.replace('/', '_')}.png"
            save_figure(fig, path, dpi=100)
            paths.append(path)
    return paths


def write_results(spec, out: str | Path, top: int = 5, plots: bool = True,
                  console=None) -> pd.DataFrame:
    """Merge the blocks, write every results file, print the summary; returns the table."""
    out = Path(out)
    df = collect_table(spec, out)
    _atomic_frame(df, out / "results.csv", "csv")
    _atomic_frame(df, out / "results.parquet", "parquet")
    best = best_configs(spec, df, top)
    atomic_write_json(out / "best.json", {"metric": spec.section.metrics[0],
                                          "mode": spec.section.mode,
                                          "best": best.to_dict(orient="records")})
    atomic_write_text(out / "best.md", f"# {spec.name}: best by mean {spec.section.metrics[0]} "
                                       f"({spec.section.mode})\n\n" + frame_markdown(best, "{:.6g}", nan="nan") + "\n")
    plot_paths = plot_metrics(spec, df, out) if plots else []
    blocks = [json.loads(p.read_text()) for p in _block_files(out)]
    atomic_write_json(out / "results.json", {
        "name": spec.name, "agent": spec.section.agent, "n_members": int(len(df)),
        "n_groups": spec.n_groups, "n_blocks": len(blocks),
        "n_finite": int(df["finite"].sum()) if len(df) else 0,
        "block_wall_s": float(sum(b["wall_s"] for b in blocks)),
        "compile_s": float(sum(b["compile_s"] for b in blocks)),
        "plots": [str(p.relative_to(out)) for p in plot_paths], **run_metadata()})
    print_summary(spec, df, best, out, console)
    return df


def print_summary(spec, df: pd.DataFrame, best: pd.DataFrame, out: Path, console=None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = console or Console(width=max(Console().width, 150))
    keep = ["group", "config", *hparam_columns(spec), "n_finite",
            *[f"{m}_{s}" for m in spec.section.metrics for s in ("mean", "std")]]
    best = best[[c for c in keep if c in best.columns]]
    n_bad = int((~df["finite"]).sum())
    title = (f"{spec.name}: {len(df):,} members ({spec.n_groups} group(s), "
             f"{spec.section.n_seeds} seed(s) per set, {n_bad} non-finite); best by mean "
             f"{spec.section.metrics[0]} ({spec.section.mode})")
    table = Table(title=title)
    for col in best.columns:
        table.add_column(str(col), justify="right")
    for row in best.itertuples(index=False):
        table.add_row(*[f"{v:.4g}" if isinstance(v, (float, np.floating)) else str(v)
                        for v in row])
    console.print(table)
    console.print(f"wrote {out}/results.csv, results.parquet, best.md, best.json, plots/")
