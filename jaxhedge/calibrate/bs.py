"""Black-Scholes (Black-76) calibration: one σ per slice (METHODS §5.4).

Objective: the UNWEIGHTED sum over the slice's real quotes of
``(DF·Black76(F, K, τ, σ) − C_eur)²`` on the file's F and DF, σ ∈ (0.01, 3).
All slices in one jitted ``vmap`` call. Three starts (σ = 0.15, 0.5, 1.5): the loss is
unimodal in practice but flat at very low σ for deep-ITM slices, so one start could stall.

Shapes: batch fields (n_slices, n_max) -> every BSFit field (n_slices,).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from flax import struct

from jaxhedge.pricing import black76_price

from ._common import batch_arrays, check_iters, resolve_dtype
from .least_squares import solve_box

__all__ = ["BSFit", "BS_BOUNDS", "fit_bs"]

BS_BOUNDS = {"sigma": (0.01, 3.0)}
_STARTS = (0.15, 0.5, 1.5)


@struct.dataclass
class BSFit:
    """Calibrated Black-76 vol per slice. All fields (n_slices,) (or scalars for one slice).

    sigma: σ. sse: unweighted sum of squared price errors. n_quotes: real quotes fitted.
    """

    sigma: jax.Array
    sse: jax.Array
    n_quotes: jax.Array


def _fit_one(f, k, tau, df, c, mask, n_iter):
    def residuals(x):
        return jnp.where(mask, black76_price(f, k, tau, df, x[0]) - c, 0.0)

    lo, hi = BS_BOUNDS["sigma"]
    starts = jnp.asarray(_STARTS, f.dtype)[:, None]
    res = solve_box(residuals, starts, jnp.array([lo], f.dtype), jnp.array([hi], f.dtype), n_iter)
    return res.x[0], res.loss


@functools.partial(jax.jit, static_argnames=("n_iter",))
def _fit_arrays(f, k, tau, df, c, mask, n_iter):
    sigma, sse = jax.vmap(lambda *a: _fit_one(*a, n_iter))(f, k, tau, df, c, mask)
    return BSFit(sigma=sigma, sse=sse, n_quotes=jnp.sum(mask, axis=-1))


def fit_bs(batch, n_iter: int = 30, dtype=None) -> BSFit:
    """Fit σ to every slice of ``batch`` (one compiled, vmapped call).

    Args:
      batch: SliceBatch, fields (n_slices, n_max).
      n_iter: LM iterations per start (static).
      dtype: float32 / float64 / None (JAX default); float64 needs x64 enabled.
    """
    dt = resolve_dtype(dtype)
    arrays = batch_arrays(batch, dt)
    return _fit_arrays(*arrays, n_iter=check_iters(n_iter))
