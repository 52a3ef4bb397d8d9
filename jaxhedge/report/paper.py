"""Figures of the real-data study: P&L CDFs per hedging slice and the cost–risk map.

Both write PNGs atomically (:func:`jaxhedge.runinfo.save_figure`).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from jaxhedge.runinfo import save_figure


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def pnl_cdf_grid(pnls: dict[tuple, dict[str, np.ndarray]], path: str | Path,
                 title: str = "") -> Path:
    """Empirical CDFs of Pi_T, one panel per slice, one line per model.

    Args:
        pnls: ``{(bucket_days, target_moneyness): {model: pnl (n_episodes,)}}``; panels are
            laid out with buckets as rows and targets as columns.
        path: PNG to write.
    """
    plt = _plt()
    buckets = sorted({k[0] for k in pnls})
    targets = sorted({k[1] for k in pnls})
    fig, axes = plt.subplots(len(buckets), len(targets), squeeze=False,
                             figsize=(4.2 * len(targets), 3.0 * len(buckets)))
    for (bucket, target), models in pnls.items():
        ax = axes[buckets.index(bucket)][targets.index(target)]
        for name, pnl in models.items():
            x = np.sort(np.asarray(pnl, float))
            x = x[np.isfinite(x)]
            if len(x):
                ax.step(x, np.arange(1, len(x) + 1) / len(x), where="post", label=name)
        ax.axvline(0.0, color="grey", lw=0.8, ls=":")
        ax.set_title(f"{bucket}d, K/F = {target:.2f}", fontsize=9)
        ax.set_ylim(0, 1)
    for ax in axes[-1]:
        ax.set_xlabel("$\\Pi_T$")
    for row in axes:
        row[0].set_ylabel("P($\\Pi_T \\leq x$)")
    axes[0][0].legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path)


def cost_risk_map(points, path: str | Path, title: str = "") -> Path:
    """E[TC] against the RMSE of the before-cost error Pi_T + TC, one marker per model.

    Args:
        points: iterable of dicts with keys ``model``, ``avg_cost``, ``rmse_before_cost``
            and optionally ``label`` (e.g. the slice) — one point per model and slice.
    """
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.0, 4.5))
    points = list(points)
    models = sorted({p["model"] for p in points})
    markers = "osD^vP*X"
    for i, m in enumerate(models):
        mine = [p for p in points if p["model"] == m]
        ax.scatter([p["avg_cost"] for p in mine], [p["rmse_before_cost"] for p in mine],
                   marker=markers[i % len(markers)], label=m, alpha=0.75)
    ax.set_xlabel("average trading cost E[TC]")
    ax.set_ylabel("RMSE of the before-cost error $\\Pi_T + TC$")
    ax.legend(fontsize=8)
    ax.set_title(title)
    fig.tight_layout()
    return save_figure(fig, path)
