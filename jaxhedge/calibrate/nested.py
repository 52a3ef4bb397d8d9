"""The fit shared by the models that nest Black-Scholes (Merton, Heston).

Both fit one slice the same way: BS first (its sigma seeds the starts), a few starts
scouted for ``n_scout`` LM iterations, the best polished alone for the rest. Start 0 of
each model is BS-like, and LM only accepts decreases, so the nested model never fits
worse than BS (up to that start's tiny mismatch).
"""
from __future__ import annotations

from typing import Callable

import jax.numpy as jnp

from .bs import _fit_one as _fit_bs_one
from .least_squares import solve_box

__all__ = ["box_starts", "fit_nested_slice"]


def box_starts(rows, bounds: dict, dtype):
    """(starts (n_starts, n_params), lo, hi) with every start kept 1e-3 of the box width
    strictly inside ``bounds`` (the sigmoid transform cannot represent the bound itself)."""
    lo = jnp.asarray([b[0] for b in bounds.values()], dtype)
    hi = jnp.asarray([b[1] for b in bounds.values()], dtype)
    x = jnp.stack([jnp.stack([jnp.asarray(v, dtype) for v in r]) for r in rows])
    return jnp.clip(x, lo + 1e-3 * (hi - lo), hi - 1e-3 * (hi - lo)), lo, hi


def fit_nested_slice(price: Callable, starts: Callable, f, k, tau, df, c, mask, n_iter: int,
                     n_scout: int):
    """Fit ``price(x, f, k, tau, df)`` to one slice's quotes; ``starts(sigma_bs, dtype)``
    gives (starts, lo, hi). Returns (x, unweighted price SSE)."""
    sig_bs, _ = _fit_bs_one(f, k, tau, df, c, mask, 30)

    def residuals(x):
        return jnp.where(mask, price(x, f, k, tau, df) - c, 0.0)

    x0, lo, hi = starts(sig_bs, f.dtype)
    n_scout = min(n_iter, n_scout)
    res = solve_box(residuals, x0, lo, hi, n_scout, n_polish=n_iter - n_scout)
    return res.x, res.loss
