"""Black-Scholes (spot, continuous dividend yield q) and Black-76 (forward) formulas.

Every function is pure ``jnp``: jittable, vmappable, and broadcasting over all array
arguments (the output shape is the broadcast shape of the inputs). The dtype follows the
inputs (``jnp.result_type(..., float)``): float32 by default, float64 under
``jax.enable_x64(True)``.

Degenerate limit. When the total standard deviation s = σ√τ is (numerically) zero —
τ = 0 at expiry, or σ → 0 — the formulas fall back to their limits: the price is the
discounted intrinsic value of the forward, DF·max(ω(F − K), 0); delta is
ω e^{−qτ}·1{ω(F − K) > 0}; gamma = vega = 0 and theta keeps only the carry of the
intrinsic value (also exactly at the money, where the true limits are infinite). Exactly at the money (F == K) delta is the
vol → 0 limit ±½e^{−qτ} (N(0) = ½), which keeps put–call parity Δ_C − Δ_P = e^{−qτ}.
Gradients stay finite there too: the "double where" trick replaces the variance by 1
inside the regular branch before it is used, so no 0/0 or √0 reaches autodiff.

Conventions: ω = +1 for a call, −1 for a put; ``is_call`` may be a Python bool or a bool
array. theta is dPrice/dt with calendar time passing (= −dPrice/dτ), per year. vega is
per unit of vol (not per vol point).

Example:
    >>> import jax.numpy as jnp
    >>> from jaxhedge.pricing import bs_price, bs_delta
    >>> p = bs_price(100.0, 100.0, 1.0, 0.0, 0.2)            # ≈ 7.9656
    >>> bool(jnp.abs(p - 7.9656) < 1e-3)
    True
    >>> float(bs_delta(100.0, 90.0, 0.0, 0.05, 0.2))         # at expiry, ITM
    1.0
"""
from __future__ import annotations

import jax.numpy as jnp
from jax import lax

__all__ = [
    "d1_d2",
    "bs_price",
    "bs_delta",
    "bs_gamma",
    "bs_vega",
    "bs_theta",
    "black76_price",
    "black76_delta",
    "black76_vega",
]

_INV_SQRT_2PI = 0.3989422804014327


def ndtr(x):
    """Standard normal CDF as ``erfc(-x/sqrt 2)/2``: one erfc evaluation.

    Why not ``jax.scipy.special.ndtr``: it evaluates erf and erfc under selects, which XLA
    cannot fuse into one loop; this form costs one transcendental, is the hedging
    environment's hot path (BS delta every step), and keeps full relative accuracy in the
    left tail (erfc of a large positive argument) where prices of OTM options live.
    """
    return 0.5 * lax.erfc(x * -0.7071067811865476)


def _npdf(x):
    return _INV_SQRT_2PI * jnp.exp(-0.5 * x * x)


def _omega(is_call, dtype):
    return jnp.where(jnp.asarray(is_call), 1.0, -1.0).astype(dtype)


def _d1_d2_var(log_fk, var):
    """d1, d2 from log(F/K) and total variance σ²τ, safe when var → 0.

    Returns (d1, d2, s, degenerate) with s = sqrt(max(var, eps²)). Flooring the variance
    (rather than selecting limit values) gives the same limits — |d1| = |log F/K|/eps is
    astronomically large unless F = K, where d1 = d2 = 0 and N = ½ — with finite gradients
    (the floor's gradient is 0) and no selects, which keeps the formula one fused loop in
    the hedging environment's hot path. ``degenerate`` (s at the floor) lets gamma and vega
    return exactly 0 there.
    """
    dtype = jnp.result_type(log_fk, var)
    eps = jnp.finfo(dtype).eps
    # Threshold s <= eps: below it the time value is below the rounding of F.
    degenerate = var <= eps * eps
    s = jnp.sqrt(jnp.maximum(var, eps * eps))
    # at the floor the ±s/2 terms are dropped so that exactly at the money d1 = d2 = 0
    half_s = jnp.where(degenerate, 0.0, 0.5 * s)
    d1 = log_fk / s + half_s
    return d1, log_fk / s - half_s, s, degenerate


def _spot_inputs(spot, strike, tau, rate, vol, div_yield):
    dtype = jnp.result_type(spot, strike, tau, rate, vol, div_yield, float)
    spot, strike, tau, rate, vol, div_yield = (
        jnp.asarray(a, dtype) for a in (spot, strike, tau, rate, vol, div_yield)
    )
    log_fk = jnp.log(spot / strike) + (rate - div_yield) * tau
    var = vol * vol * tau
    return dtype, spot, strike, tau, rate, vol, div_yield, log_fk, var


def d1_d2(spot, strike, tau, rate, vol, div_yield=0.0):
    """Black-Scholes d1, d2 (broadcast shape of the inputs).

    d1 = [log(S/K) + (r − q + σ²/2)τ]/(σ√τ), d2 = d1 − σ√τ. In the degenerate limit
    σ√τ → 0 both are ±inf (sign of log(F/K); 0 exactly at the money).
    """
    *_, log_fk, var = _spot_inputs(spot, strike, tau, rate, vol, div_yield)
    d1, d2, _, _ = _d1_d2_var(log_fk, var)
    return d1, d2


def bs_price(spot, strike, tau, rate, vol, div_yield=0.0, is_call=True):
    """Black-Scholes price ω[S e^{−qτ} N(ωd1) − K e^{−rτ} N(ωd2)]; intrinsic at τ = 0."""
    dtype, spot, strike, tau, rate, vol, q, log_fk, var = _spot_inputs(
        spot, strike, tau, rate, vol, div_yield
    )
    w = _omega(is_call, dtype)
    d1, d2, _, _ = _d1_d2_var(log_fk, var)
    return w * (spot * jnp.exp(-q * tau) * ndtr(w * d1) - strike * jnp.exp(-rate * tau) * ndtr(w * d2))


def bs_delta(spot, strike, tau, rate, vol, div_yield=0.0, is_call=True):
    """dPrice/dSpot = ω e^{−qτ} N(ωd1); e^{−qτ}·1{S>K} (call) / −1{S<K} (put) at τ = 0."""
    dtype, spot, strike, tau, rate, vol, q, log_fk, var = _spot_inputs(
        spot, strike, tau, rate, vol, div_yield
    )
    w = _omega(is_call, dtype)
    d1, _, _, _ = _d1_d2_var(log_fk, var)
    return w * jnp.exp(-q * tau) * ndtr(w * d1)


def bs_gamma(spot, strike, tau, rate, vol, div_yield=0.0, is_call=True):
    """d²Price/dSpot² = e^{−qτ} n(d1)/(S σ√τ); same for calls and puts; 0 when σ√τ = 0."""
    del is_call  # identical for calls and puts; kept for a uniform signature
    dtype, spot, strike, tau, rate, vol, q, log_fk, var = _spot_inputs(
        spot, strike, tau, rate, vol, div_yield
    )
    d1, _, s, degenerate = _d1_d2_var(log_fk, var)
    # n(d1) is 0 at d1 = ±inf but not at the ATM limit d1 = 0: zero it explicitly.
    return jnp.where(degenerate, 0.0, jnp.exp(-q * tau) * _npdf(d1) / (spot * s))


def bs_vega(spot, strike, tau, rate, vol, div_yield=0.0, is_call=True):
    """dPrice/dσ = S e^{−qτ} n(d1) √τ (per unit vol); same for calls and puts."""
    del is_call
    dtype, spot, strike, tau, rate, vol, q, log_fk, var = _spot_inputs(
        spot, strike, tau, rate, vol, div_yield
    )
    d1, _, _, degenerate = _d1_d2_var(log_fk, var)
    # √τ has an infinite derivative at τ = 0: guard it like the variance.
    sqrt_tau = jnp.sqrt(jnp.where(degenerate, jnp.ones_like(tau), tau))
    return jnp.where(degenerate, 0.0, spot * jnp.exp(-q * tau) * _npdf(d1) * sqrt_tau)


def bs_theta(spot, strike, tau, rate, vol, div_yield=0.0, is_call=True):
    """dPrice/dt = −dPrice/dτ per year (calendar time passing).

    θ = −S e^{−qτ} n(d1) σ/(2√τ) + ω[q S e^{−qτ} N(ωd1) − r K e^{−rτ} N(ωd2)];
    in the degenerate limit only the carry term of the intrinsic value remains.
    """
    dtype, spot, strike, tau, rate, vol, q, log_fk, var = _spot_inputs(
        spot, strike, tau, rate, vol, div_yield
    )
    w = _omega(is_call, dtype)
    d1, d2, s, degenerate = _d1_d2_var(log_fk, var)
    sq = spot * jnp.exp(-q * tau)
    kd = strike * jnp.exp(-rate * tau)
    # σ/(2√τ) written as σ²/(2s) so it stays finite at τ = 0 (s is guarded).
    decay = jnp.where(degenerate, 0.0, -sq * _npdf(d1) * vol * vol / (2.0 * s))
    return decay + w * (q * sq * ndtr(w * d1) - rate * kd * ndtr(w * d2))


def _b76_inputs(forward, strike, tau, discount, vol):
    dtype = jnp.result_type(forward, strike, tau, discount, vol, float)
    forward, strike, tau, discount, vol = (
        jnp.asarray(a, dtype) for a in (forward, strike, tau, discount, vol)
    )
    return dtype, forward, strike, tau, discount, vol


def _black76_var(forward, strike, var, discount, w):
    """Black-76 price from total variance (used by the Merton mixture and IV code)."""
    d1, d2, _, _ = _d1_d2_var(jnp.log(forward / strike), var)
    return discount * w * (forward * ndtr(w * d1) - strike * ndtr(w * d2))


def black76_price(forward, strike, tau, discount, vol, is_call=True):
    """Black-76 price DF·ω[F N(ωd1) − K N(ωd2)], d1 = [log(F/K) + σ²τ/2]/(σ√τ).

    ``discount`` is DF = e^{−rτ}. Intrinsic DF·max(ω(F − K), 0) when σ√τ = 0.
    """
    dtype, forward, strike, tau, discount, vol = _b76_inputs(forward, strike, tau, discount, vol)
    return _black76_var(forward, strike, vol * vol * tau, discount, _omega(is_call, dtype))


def black76_delta(forward, strike, tau, discount, vol, is_call=True):
    """dPrice/dForward = DF·ω N(ωd1)."""
    dtype, forward, strike, tau, discount, vol = _b76_inputs(forward, strike, tau, discount, vol)
    w = _omega(is_call, dtype)
    d1, _, _, _ = _d1_d2_var(jnp.log(forward / strike), vol * vol * tau)
    return discount * w * ndtr(w * d1)


def black76_vega(forward, strike, tau, discount, vol, is_call=True):
    """dPrice/dσ = DF·F n(d1) √τ; same for calls and puts."""
    del is_call
    dtype, forward, strike, tau, discount, vol = _b76_inputs(forward, strike, tau, discount, vol)
    d1, _, _, degenerate = _d1_d2_var(jnp.log(forward / strike), vol * vol * tau)
    sqrt_tau = jnp.sqrt(jnp.where(degenerate, jnp.ones_like(tau), tau))
    return jnp.where(degenerate, 0.0, discount * forward * _npdf(d1) * sqrt_tau)
