"""Black-76 / Black-Scholes implied volatility: safeguarded Newton with bisection fallback.

Fixed iteration count (``lax.fori_loop``), so it is jittable and vmappable; all array
arguments broadcast. Algorithm (per element):

1. Check the no-arbitrage bounds DF·max(ω(F − K), 0) ≤ price ≤ DF·F (call) / DF·K (put).
   Outside them (or for non-finite inputs, τ ≤ 0, F, K, DF ≤ 0) → vol = NaN, valid = False.
2. Strip the intrinsic value: by put–call parity the time value equals the price of the
   *out-of-the-money* option (put if F > K, call otherwise). The OTM price is inverted
   instead of the given one because its formula has no large cancelling terms, so tiny
   time values (deep ITM / short-dated) keep their relative precision.
3. Newton on log(OTM price) in σ (log-price is close to linear in 1/σ², so Newton is
   fast even deep OTM), started at the Manaster–Koehler point σ0² = 2|log(F/K)|/τ
   (the inflection point of price(σ)), clipped to [lo, hi]. A bracket [lo, hi] is kept;
   the Newton step is taken only if it lands strictly inside the bracket and at least
   halves the previous step (Numerical Recipes' ``rtsafe`` rule); otherwise bisect.
   Worst case is pure bisection: 64 halvings of [1e-4, 10] reach 5e-19, below float64
   resolution of any σ ≥ lo, so ``n_iter=64`` converges in float32 and float64.

Edge cases (METHODS §5.5):
  * A quote exactly on the lower bound (zero time value, e.g. a `C_eur` clamped to
    DF(F − K)) is inverted like any other: pure bisection converges to the small vol σ*
    below which the time value is numerically zero, i.e. intrinsic + time value rounds
    to the intrinsic in the working dtype (so σ* is dtype-dependent; any σ ≤ σ*
    reproduces the price exactly). For an OTM quote of 0 that is where the time value
    underflows. Quotes whose time value is positive but below the
    price at ``lo`` return ≈ ``lo`` (the resolution floor of the bracket), valid = True.
  * A quote above the price at ``hi`` (needs σ > hi; includes price == DF·F exactly)
    returns NaN, valid = False — never a silent clamp to ``hi``.

Precision limit: the OTM Black formula N(d1) − k N(d2) cancels to relative accuracy
≈ eps·x/s² (x = |log k|, s = σ√τ) deep OTM / short-dated; when the time value itself is
below ~eps·F (e.g. K/F = 2, τ = 1 day, σ < 1 in float32) the price carries no vol
information and only the price (not σ) round-trips. In float32 use vols only where
vega·σ ≫ 1e-7·F.

Example:
    >>> from jaxhedge.pricing import black76_price, implied_vol_black76
    >>> p = black76_price(100.0, 110.0, 0.5, 0.99, 0.3)
    >>> iv = implied_vol_black76(p, 100.0, 110.0, 0.5, 0.99)
    >>> bool(abs(float(iv.vol) - 0.3) < 1e-4), bool(iv.valid)
    (True, True)
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct
from jax.scipy.special import ndtr

__all__ = ["ImpliedVol", "implied_vol_black76", "implied_vol_bs"]

_INV_SQRT_2PI = 0.3989422804014327


@struct.dataclass
class ImpliedVol:
    """Result of an implied-vol inversion; both fields have the broadcast input shape.

    Attributes:
      vol: implied σ (NaN where ``valid`` is False).
      valid: True where the quote is inside the no-arbitrage bounds and σ ≤ hi.
    """

    vol: jax.Array
    valid: jax.Array


def _otm_norm(sigma, log_k, sqrt_tau, w_otm, k):
    """Normalised (F = 1, DF = 1) OTM Black price and its vega in σ."""
    s = sigma * sqrt_tau
    d1 = -log_k / s + 0.5 * s
    d2 = d1 - s
    price = w_otm * (ndtr(w_otm * d1) - k * ndtr(w_otm * d2))
    vega = _INV_SQRT_2PI * jnp.exp(-0.5 * d1 * d1) * sqrt_tau
    return price, vega


def implied_vol_black76(
    price, forward, strike, tau, discount, is_call=True, lo=1e-4, hi=10.0, n_iter=64
) -> ImpliedVol:
    """Black-76 implied vol of ``price`` (broadcast over every array argument).

    Args:
      price: option price (same currency and discounting as ``DF·Black(F, K, τ, σ)``).
      forward, strike, tau, discount: F, K, τ in years, DF = e^{−rτ}.
      is_call: bool or bool array.
      lo, hi: vol bracket; ``hi`` ≥ 10 reaches the March-2020 XOP vols (~5.5).
      n_iter: static iteration count (see module docstring for why 64 suffices).

    Returns:
      ImpliedVol(vol, valid) with the broadcast shape and dtype of the inputs.
    """
    dtype = jnp.result_type(price, forward, strike, tau, discount, lo, hi, float)
    price, forward, strike, tau, discount = (
        jnp.asarray(a, dtype) for a in (price, forward, strike, tau, discount)
    )
    shape = jnp.broadcast_shapes(
        price.shape, forward.shape, strike.shape, tau.shape, discount.shape, jnp.shape(is_call)
    )
    is_call = jnp.broadcast_to(jnp.asarray(is_call), shape)
    price, forward, strike, tau, discount = (
        jnp.broadcast_to(a, shape) for a in (price, forward, strike, tau, discount)
    )
    lo = jnp.asarray(lo, dtype)
    hi = jnp.asarray(hi, dtype)

    inputs_ok = (
        jnp.isfinite(price) & jnp.isfinite(forward) & jnp.isfinite(strike)
        & (forward > 0) & (strike > 0) & (tau > 0) & (discount > 0) & jnp.isfinite(tau)
    )
    # Sanitise invalid elements so the loop below never sees NaN/inf (keeps it quiet).
    one = jnp.ones((), dtype)
    forward = jnp.where(inputs_ok, forward, one)
    strike = jnp.where(inputs_ok, strike, one)
    tau = jnp.where(inputs_ok, tau, one)
    discount = jnp.where(inputs_ok, discount, one)
    price = jnp.where(inputs_ok, price, 0.1)

    # Normalise to F = 1, DF = 1 (O(1) numbers help float32).
    k = strike / forward
    undisc = price / (discount * forward)
    intrinsic = jnp.where(is_call, jnp.maximum(1.0 - k, 0.0), jnp.maximum(k - 1.0, 0.0))
    upper = jnp.where(is_call, one, k)
    # A few ulps of slack: a quote on the bound that went through price/DF rounding (or
    # was computed as DF·(F − K) by the caller) must count as on the bound, not below it.
    slack = 8.0 * jnp.finfo(dtype).eps * jnp.maximum(one, k)
    in_bounds = inputs_ok & (undisc >= intrinsic - slack) & (undisc <= upper + slack)

    # OTM counterpart's normalised price = time value (put–call parity).
    target = jnp.maximum(undisc - intrinsic, 0.0)
    w_otm = jnp.where(k < 1.0, -one, one)
    log_k = jnp.log(k)
    sqrt_tau = jnp.sqrt(tau)
    on_bound = target <= 0.0
    log_target = jnp.log(jnp.where(on_bound, one, target))

    small_step = jnp.sqrt(jnp.finfo(dtype).eps)
    sigma0 = jnp.clip(jnp.sqrt(2.0 * jnp.abs(log_k) / tau), lo, hi)

    def body(_, state):
        sigma, a, b, dy_old = state
        p, vega = _otm_norm(sigma, log_k, sqrt_tau, w_otm, k)
        # Bracket update: price increases with σ. An on-bound quote is compared in the
        # quoted option's own representation (intrinsic + time value, rounded), so the
        # bisection walks up to the largest σ whose price still rounds to the bound — what
        # bisecting the quoted (e.g. ITM call) price itself gives, as in METHODS §5.5.
        above = jnp.where(on_bound, intrinsic + p > intrinsic, p > target)
        a = jnp.where(above, a, sigma)
        b = jnp.where(above, sigma, b)
        # Newton on log p in y = log σ: Δy = (log p − log target)·p/(σ·vega). In log σ the
        # ATM price is ~linear (one step) and deep OTM log p ~ −x²/(2τ)e^{−2y} is smooth.
        p_pos = p > 0.0
        p_safe = jnp.where(p_pos, p, one)
        slope = sigma * vega
        slope_safe = jnp.where(slope > 0.0, slope, one)
        dy = (jnp.log(p_safe) - log_target) * p_safe / slope_safe
        newton = sigma * jnp.exp(-jnp.clip(dy, -50.0, 50.0))
        # rtsafe: Newton only strictly inside the bracket and only if it at least halves
        # the previous step; otherwise bisect. Steps at noise level are always taken (the
        # converged σ sits on a bracket end, and bisecting would jump away from it).
        tiny = (jnp.abs(dy) <= small_step) & (newton >= a) & (newton <= b)
        halving = (newton > a) & (newton < b) & (jnp.abs(dy) <= 0.5 * jnp.abs(dy_old))
        use_newton = p_pos & (slope > 0.0) & ~on_bound & (tiny | halving)
        mid = 0.5 * (a + b)
        new_sigma = jnp.where(use_newton, newton, mid)
        new_dy = jnp.where(use_newton, dy, jnp.log(sigma / mid))
        # Exact hit: stay (Newton step is 0, do not bisect away from the root).
        exact = (p == target) & ~on_bound
        new_sigma = jnp.where(exact, sigma, new_sigma)
        return new_sigma, a, b, new_dy

    state = (sigma0, jnp.broadcast_to(lo, shape), jnp.broadcast_to(hi, shape),
             jnp.broadcast_to(jnp.log(hi / lo), shape))
    sigma, *_ = jax.lax.fori_loop(0, n_iter, body, state)

    p_hi, _ = _otm_norm(hi, log_k, sqrt_tau, w_otm, k)
    valid = in_bounds & (target <= p_hi)
    vol = jnp.where(valid, sigma, jnp.asarray(jnp.nan, dtype))
    return ImpliedVol(vol=vol, valid=valid)


def implied_vol_bs(
    price, spot, strike, tau, rate, div_yield=0.0, is_call=True, lo=1e-4, hi=10.0, n_iter=64
) -> ImpliedVol:
    """Black-Scholes implied vol with continuous yield q: Black-76 on F = S e^{(r−q)τ}, DF = e^{−rτ}."""
    dtype = jnp.result_type(price, spot, strike, tau, rate, div_yield, float)
    spot, tau, rate, div_yield = (jnp.asarray(a, dtype) for a in (spot, tau, rate, div_yield))
    forward = spot * jnp.exp((rate - div_yield) * tau)
    discount = jnp.exp(-rate * tau)
    return implied_vol_black76(price, forward, strike, tau, discount, is_call, lo, hi, n_iter)
