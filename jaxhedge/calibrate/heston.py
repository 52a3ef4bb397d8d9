"""Heston calibration: (κ, θ, ξ, ρ, v₀) per slice (METHODS §5.4).

Bounds κ ∈ (0.05, 10), θ ∈ (1e−4, 2), ξ ∈ (1e−3, 3), ρ ∈ (−0.999, 0), v₀ ∈ (1e−4, 3);
unweighted price SSE on the file's F and DF. Four LM starts around the slice's BS
variance v = σ_BS² (fitted first, same compiled call) scout ``N_SCOUT`` iterations each,
the best is polished alone for the rest of ``n_iter``; start 0 is BS-like (ξ = 0.01,
θ = v₀ = v), so the SSE never exceeds the BS SSE by more than that start's tiny mismatch.

Identifiability: one maturity bucket holds one or two expiries, so κ and θ are only
weakly identified (they enter mostly through the expected integrated variance); the
well-determined quantities are the prices/IVs, the ATM level (≈ v₀, θ via their
τ-average) and the skew (ρξ). Tests check prices, IVs and those, not κ alone.

Pricing: ``heston_price_black76`` (Lewis integral, automatic u_max) with ``N_QUAD`` = 40
Gauss–Legendre nodes per panel instead of the library's 48; the calibration's Jacobians
(5 forward tangents) over ~100 slices × ~25 quotes dominate the cost, linear in the nodes.
Why 40: a hypothesis property test (tests/calibrate/test_fits.py) found butterfly arbitrage
in model prices at fewer nodes. Measured (float64, 3000 draws of the box below with
ξ ≤ 1.2, half of them with ρ ∈ (−0.999, −0.9), F = 100, K ∈ [60, 160], τ = 7 days), the
most negative second strike difference is −6.6e−6 with 32 nodes, −7.3e−7 with 40 and
−3.0e−7 with 48; at ordinary ρ, 16 nodes already leave −1.4e−4 and 24 leave −3.5e−7, but
24 reaches −7.5e−5 at ρ ≈ −0.97, ξ ≈ 1.2. The extreme corner ξ = 3, v₀ = 1e−3, ρ → −0.99
is inaccurate at any node count (see pricing.heston) — the fit avoids it unless forced.

Shapes: batch fields (n_slices, n_max) -> every HestonFit field (n_slices,).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from flax import struct

from jaxhedge.pricing import heston_price_black76

from ._common import batch_arrays, check_iters, resolve_dtype
from .nested import box_starts, fit_nested_slice

N_SCOUT = 10  # LM iterations of every start before the best is polished alone

__all__ = ["HestonFit", "HESTON_BOUNDS", "N_QUAD", "fit_heston", "heston_price"]

HESTON_BOUNDS = {"kappa": (0.05, 10.0), "theta": (1e-4, 2.0), "xi": (1e-3, 3.0),
                 "rho": (-0.999, 0.0), "v0": (1e-4, 3.0)}
N_QUAD = 40


@struct.dataclass
class HestonFit:
    """Calibrated Heston parameters per slice; all fields (n_slices,) (or scalars).

    kappa, theta, xi, rho, v0: the model's parameters; sse: unweighted price SSE;
    n_quotes: real quotes fitted.
    """

    kappa: jax.Array
    theta: jax.Array
    xi: jax.Array
    rho: jax.Array
    v0: jax.Array
    sse: jax.Array
    n_quotes: jax.Array


def heston_price(fit: HestonFit, forward, strike, tau, discount):
    """Call price under the fitted parameters (fields broadcast against the quotes)."""
    return heston_price_black76(forward, strike, tau, discount, fit.kappa, fit.theta, fit.xi,
                                fit.rho, fit.v0, n_quad=N_QUAD)


def _starts(sig_bs, dtype):
    v = sig_bs * sig_bs
    rows = [
        (2.0, v, 0.01, -0.5, v),         # ≈ BS
        (2.0, v, 0.5, -0.7, v),          # moderate skew
        (5.0, 1.5 * v, 1.0, -0.8, 0.7 * v),  # steep skew, rising term structure
        (1.0, v, 1.5, -0.4, 1.3 * v),    # high vol-of-vol, smile
    ]
    return box_starts(rows, HESTON_BOUNDS, dtype)


def _price(x, f, k, tau, df):
    return heston_price_black76(f, k, tau, df, x[0], x[1], x[2], x[3], x[4], n_quad=N_QUAD)


def _fit_one(f, k, tau, df, c, mask, n_iter):
    return fit_nested_slice(_price, _starts, f, k, tau, df, c, mask, n_iter, N_SCOUT)


@functools.partial(jax.jit, static_argnames=("n_iter",))
def _fit_arrays(f, k, tau, df, c, mask, n_iter):
    x, sse = jax.vmap(lambda *a: _fit_one(*a, n_iter))(f, k, tau, df, c, mask)
    return HestonFit(kappa=x[:, 0], theta=x[:, 1], xi=x[:, 2], rho=x[:, 3], v0=x[:, 4],
                     sse=sse, n_quotes=jnp.sum(mask, axis=-1))


def fit_heston(batch, n_iter: int = 30, dtype=None) -> HestonFit:
    """Fit (κ, θ, ξ, ρ, v₀) to every slice of ``batch`` in one compiled, vmapped call.

    Args:
      batch: SliceBatch, fields (n_slices, n_max).
      n_iter: LM iterations in all (static): the 4 starts each run
        min(n_iter, N_SCOUT = 10), the best one continues alone for the rest.
      dtype: float32 / float64 / None (JAX default); float64 needs x64 enabled.
    """
    dt = resolve_dtype(dtype)
    return _fit_arrays(*batch_arrays(batch, dt), n_iter=check_iters(n_iter))
