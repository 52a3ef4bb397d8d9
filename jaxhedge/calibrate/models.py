"""Prices and hedge ratios of calibrated models (pure, jittable, vmappable).

``model_price(fit, forward, strike, tau, discount)`` and ``model_delta(fit, spot, strike,
tau, rate, q)`` dispatch on the fit's type (a Python-level choice, static under jit).
The fit's parameter fields broadcast against the quote arguments: pass one slice's fit
(scalar fields, e.g. ``jax.tree.map(lambda a: a[i], fit)``) with any quote shape, or use
:func:`slice_prices` for a whole batch ((n_slices,) fields against (n_slices, n_max)).

Delta (METHODS §5.6): BS analytic ``e^{−qτ} N(d1)`` at the calibrated σ; Merton and
Heston by central finite differences of the calibrated price function in spot,
``h = max(1e−4, 1e−3·max(|S|, 1))``, with F = S e^{(r−q)τ}, DF = e^{−rτ}.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxhedge.pricing import black76_price, bs_delta

from .bs import BSFit
from .heston import HestonFit, heston_price
from .merton import MertonFit, merton_price

__all__ = ["model_price", "model_delta", "slice_prices", "per_quote"]

_FITS = (BSFit, MertonFit, HestonFit)


def _check(fit):
    if not isinstance(fit, _FITS):
        raise ValueError(f"fit: must be a BSFit, MertonFit or HestonFit, got {type(fit).__name__}")


def model_price(fit, forward, strike, tau, discount):
    """European call price DF·E[(F_T − K)^+] under ``fit`` (broadcast shape of all inputs)."""
    _check(fit)
    if isinstance(fit, BSFit):
        return black76_price(forward, strike, tau, discount, fit.sigma)
    if isinstance(fit, MertonFit):
        return merton_price(fit, forward, strike, tau, discount)
    return heston_price(fit, forward, strike, tau, discount)


def model_delta(fit, spot, strike, tau, rate, q=0.0):
    """dC/dS of the calibrated call at fixed parameters (broadcast shape of the inputs).

    ``q`` is the continuous dividend yield; τ must be > 0 for the finite differences.
    """
    _check(fit)
    if isinstance(fit, BSFit):
        return bs_delta(spot, strike, tau, rate, fit.sigma, q)
    dtype = jnp.result_type(spot, strike, tau, rate, q, float)
    spot, tau, rate, q = (jnp.asarray(a, dtype) for a in (spot, tau, rate, q))
    h = jnp.maximum(1e-4, 1e-3 * jnp.maximum(jnp.abs(spot), 1.0))
    growth = jnp.exp((rate - q) * tau)
    df = jnp.exp(-rate * tau)
    up = model_price(fit, (spot + h) * growth, strike, tau, df)
    dn = model_price(fit, (spot - h) * growth, strike, tau, df)
    return (up - dn) / (2.0 * h)


def per_quote(fit):
    """The fit with a trailing axis on every field: (n_slices,) -> (n_slices, 1)."""
    return jax.tree.map(lambda a: jnp.asarray(a)[..., None], fit)


def slice_prices(fit, batch, dtype=None):
    """(n_slices, n_max) model prices of every quote of ``batch`` (padding included)."""
    from ._common import batch_arrays, resolve_dtype

    f, k, tau, df, _, _ = batch_arrays(batch, resolve_dtype(dtype))
    return model_price(per_quote(fit), f, k, tau, df)
