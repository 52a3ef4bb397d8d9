"""Market and model implied vols for the static study (METHODS §5.5).

* Market IV: Black-76 inversion of ``C_eur`` on the file's F, DF by
  :func:`jaxhedge.pricing.implied_vol_black76` with the bracket [1e−4, 10] (reaches the
  ~5.5 vols of March-2020 XOP). Quotes exactly on the lower bound DF·(F − K) are inverted
  like any other: the bisection converges to the small σ* below which the time value is
  numerically zero (dtype-dependent; that function's docstring). Quotes outside the
  no-arbitrage bounds, or needing σ > 10, give NaN (and are excluded from the IVRMSE).
* Model IV: BS is the calibrated σ itself for every contract (never inverted: deep-ITM
  time value underflows). Merton/Heston/agent prices are inverted the same way. A model
  price is first clipped into [DF·max(F − K, 0), DF·F]: quadrature/rounding noise that
  puts it a few ulps below the intrinsic value is treated as ON the bound, i.e. exactly
  like a market quote on the bound (σ*), not as an arbitrage (NaN).

Shapes: (n_slices, n_max) in and out; padded entries are NaN.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxhedge.pricing import implied_vol_black76

from ._common import batch_arrays, resolve_dtype
from .bs import BSFit
from .models import model_price, per_quote

__all__ = ["IV_HI", "invert_prices", "market_iv", "model_iv"]

IV_HI = 10.0


@jax.jit
def invert_prices(price, forward, strike, tau, discount, mask):
    """Black-76 IVs of call ``price`` (any shape); NaN where masked out or invalid."""
    iv = implied_vol_black76(price, forward, strike, tau, discount, True, 1e-4, IV_HI, 64)
    return jnp.where(mask, iv.vol, jnp.nan)


def market_iv(batch, dtype=None):
    """(n_slices, n_max) Black-76 IVs of the batch's ``price`` (= C_eur); NaN on padding."""
    f, k, tau, df, c, mask = batch_arrays(batch, resolve_dtype(dtype))
    return invert_prices(c, f, k, tau, df, mask)


def model_iv(fit, batch, dtype=None):
    """(n_slices, n_max) model IVs of every quote (see module docstring); NaN on padding.

    ``fit`` is a BSFit/MertonFit/HestonFit with (n_slices,) fields, or an
    (n_slices, n_max) array of model PRICES (e.g. an RL surface) to invert.
    """
    f, k, tau, df, _, mask = batch_arrays(batch, resolve_dtype(dtype))
    if isinstance(fit, BSFit):
        return jnp.where(mask, jnp.broadcast_to(jnp.asarray(fit.sigma, f.dtype)[:, None],
                                                f.shape), jnp.nan)
    if isinstance(fit, (jax.Array,)) or hasattr(fit, "shape"):
        price = jnp.asarray(fit, f.dtype)
    else:
        price = model_price(per_quote(fit), f, k, tau, df)
    lower = df * jnp.maximum(f - k, 0.0)
    price = jnp.clip(price, lower, df * f)
    return invert_prices(price, f, k, tau, df, mask)
