"""Geometric Brownian motion (METHODS §1, the papers' training world).

Exact log step ``S_{t+1} = S_t exp((mu - sigma^2/2) dt + sigma sqrt(dt) Z)``; ``mu`` is the
real-world drift (not r). ``vol`` = sigma everywhere, ``cost_multiplier`` = 1.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from jaxhedge import pricing
from jaxhedge.markets import _common as C
from jaxhedge.markets.base import MarketPaths
from jaxhedge.markets.registry import MarketSpec


@struct.dataclass
class GBMParams:
    s0: float = 1.0
    mu: float = 0.0
    sigma: float = 0.2


def validate(params: GBMParams) -> GBMParams:
    """Host-side check (call before jit); raises ValueError naming the field."""
    C.positive("gbm.s0", params.s0)
    C.finite("gbm.mu", params.mu)
    C.positive("gbm.sigma", params.sigma)
    return params


@C.fast_threefry
def simulate(key: jax.Array, params: GBMParams, n_paths: int, n_steps: int, dt: float) -> MarketPaths:
    """GBM paths, each field shaped (n_paths, n_steps + 1); n_paths, n_steps static."""
    dtype = C.float_dtype(params)
    s0, mu, sigma = (C.as_float(x, dtype) for x in (params.s0, params.mu, params.sigma))
    dt = C.as_float(dt, dtype)
    z = jax.random.normal(key, (n_paths, n_steps), dtype)
    incr = (mu - 0.5 * sigma**2) * dt + sigma * jnp.sqrt(dt) * z
    shape = (n_paths, n_steps + 1)
    return MarketPaths(
        spot=C.spot_from_log_increments(s0, incr),
        vol=C.full(shape, sigma, dtype),
        cost_multiplier=jnp.ones(shape, dtype),
    )


def reference_price(params: GBMParams, strike, maturity, rate, div_yield, is_call, n_steps):
    """Black-Scholes at ``sigma`` (``n_steps`` unused)."""
    return pricing.bs_price(params.s0, strike, maturity, rate, params.sigma, div_yield, is_call)


def default_params(s0: float = 100.0, mu: float = 0.0, sigma: float = 0.2) -> GBMParams:
    return GBMParams(s0=s0, mu=mu, sigma=sigma)


#: Registered by :mod:`jaxhedge.markets`.
SPEC = MarketSpec(
    name="gbm", params_cls=GBMParams, simulate=simulate, validate=validate,
    reference_price=reference_price, default_params=default_params,
    calm_vol=lambda p: p.sigma,
    with_calm_vol=lambda p, s: p.replace(sigma=s),
    description="geometric Brownian motion (Black-Scholes)")
