"""Matplotlib figures (Agg backend: files only, no display needed)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from jaxhedge.runinfo import save_figure


def pnl_distribution(pnls: dict[str, np.ndarray], path: str | Path, title: str = "") -> Path:
    """Overlaid P&L histograms and empirical CDFs, one line per hedger; written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, (ax_h, ax_c) = plt.subplots(1, 2, figsize=(11, 4))
    lo = min(np.quantile(p, 0.001) for p in pnls.values())
    hi = max(np.quantile(p, 0.999) for p in pnls.values())
    pad = 0.03 * (hi - lo)
    lo, hi = lo - pad, hi + pad
    bins = np.linspace(lo, hi, 80)
    peaks = []
    for name, pnl in pnls.items():
        density, _, _ = ax_h.hist(pnl, bins=bins, histtype="step", density=True, label=name)
        peaks.append(density.max())
        xs = np.sort(pnl)
        ax_c.plot(xs, np.arange(1, len(xs) + 1) / len(xs), label=name)
    # a hedger with a point mass (the naked seller keeps the premium on most paths) would
    # flatten everyone else: scale the axis to the typical peak and let a spike run off it
    ax_h.set_ylim(0, 1.15 * float(np.median(peaks)))
    for ax in (ax_h, ax_c):
        ax.axvline(0.0, color="grey", lw=0.8, ls=":")
        ax.set_xlabel("terminal hedging P&L  $\\Pi_T$")
        ax.set_xlim(lo, hi)
    ax_h.set_ylabel("density")
    ax_c.set_ylabel("P($\\Pi_T \\leq x$)")
    ax_h.legend()
    fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path)
