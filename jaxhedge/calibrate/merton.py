"""Merton jump-diffusion calibration: (σ, λ_J, μ_J, δ_J) per slice (METHODS §5.4).

Bounds σ ∈ (0.01, 3), λ_J ∈ (0, 5), μ_J ∈ (−0.5, 0.5), δ_J ∈ (0.01, 1); unweighted price
SSE on the file's F and DF. The loss is multimodal (jump size vs. jump intensity trade
off), so LM runs from four starts built around the slice's BS vol σ_BS (fitted first, in
the same compiled call) for ``N_SCOUT`` iterations each and polishes the best alone. Start 0 is BS-like (λ = 1e-3), so the final
SSE never exceeds the BS SSE by more than that start's O(λ) mismatch: the model nests BS.

Pricing: ``merton_price_black76`` with ``N_TERMS`` = 40 Poisson terms (the library default
is 80). With λ_J ≤ 5 and τ ≤ 70 days, λτ ≤ 1 and P(N ≥ 40) < 1e-45; even τ = 2y gives
λτ = 10 and P(N ≥ 40) < 1e-12. Halving the terms halves the calibration cost.

Shapes: batch fields (n_slices, n_max) -> every MertonFit field (n_slices,).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from flax import struct

from jaxhedge.pricing import merton_price_black76

from ._common import batch_arrays, check_iters, resolve_dtype
from .nested import box_starts, fit_nested_slice

N_SCOUT = 15  # LM iterations of every start before the best is polished alone

__all__ = ["MertonFit", "MERTON_BOUNDS", "N_TERMS", "fit_merton", "merton_price"]

MERTON_BOUNDS = {"sigma": (0.01, 3.0), "lam": (0.0, 5.0), "mu_j": (-0.5, 0.5),
                 "delta_j": (0.01, 1.0)}
N_TERMS = 40


@struct.dataclass
class MertonFit:
    """Calibrated Merton parameters per slice; all fields (n_slices,) (or scalars).

    sigma: diffusion vol; lam: jump intensity λ_J (1/yr); mu_j, delta_j: mean and std of
    the log jump; sse: unweighted price SSE; n_quotes: real quotes fitted.
    """

    sigma: jax.Array
    lam: jax.Array
    mu_j: jax.Array
    delta_j: jax.Array
    sse: jax.Array
    n_quotes: jax.Array


def merton_price(fit: MertonFit, forward, strike, tau, discount):
    """Call price under the fitted parameters (fields broadcast against the quotes)."""
    return merton_price_black76(forward, strike, tau, discount, fit.sigma, fit.lam, fit.mu_j,
                                fit.delta_j, n_terms=N_TERMS)


def _starts(sig_bs, dtype):
    s = sig_bs
    rows = [
        (s, 1e-3, 0.0, 0.1),          # ≈ BS: guarantees SSE ≲ SSE_BS
        (0.8 * s, 1.0, -0.1, 0.15),   # frequent small negative jumps
        (0.6 * s, 0.3, -0.3, 0.2),    # rare crash-size jumps
        (0.9 * s, 2.0, 0.0, 0.1),     # symmetric jumps (fat both wings)
    ]
    return box_starts(rows, MERTON_BOUNDS, dtype)


def _price(x, f, k, tau, df):
    return merton_price_black76(f, k, tau, df, x[0], x[1], x[2], x[3], n_terms=N_TERMS)


def _fit_one(f, k, tau, df, c, mask, n_iter):
    return fit_nested_slice(_price, _starts, f, k, tau, df, c, mask, n_iter, N_SCOUT)


@functools.partial(jax.jit, static_argnames=("n_iter",))
def _fit_arrays(f, k, tau, df, c, mask, n_iter):
    x, sse = jax.vmap(lambda *a: _fit_one(*a, n_iter))(f, k, tau, df, c, mask)
    return MertonFit(sigma=x[:, 0], lam=x[:, 1], mu_j=x[:, 2], delta_j=x[:, 3], sse=sse,
                     n_quotes=jnp.sum(mask, axis=-1))


def fit_merton(batch, n_iter: int = 40, dtype=None) -> MertonFit:
    """Fit (σ, λ_J, μ_J, δ_J) to every slice of ``batch`` in one compiled, vmapped call.

    Args:
      batch: SliceBatch, fields (n_slices, n_max).
      n_iter: LM iterations in all (static): the 4 starts each run
        min(n_iter, N_SCOUT = 15), the best one continues alone for the rest.
      dtype: float32 / float64 / None (JAX default); float64 needs x64 enabled.
    """
    dt = resolve_dtype(dtype)
    return _fit_arrays(*batch_arrays(batch, dt), n_iter=check_iters(n_iter))
