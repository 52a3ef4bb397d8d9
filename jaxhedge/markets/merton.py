"""Merton jump-diffusion (METHODS §1): GBM plus compensated compound-Poisson jumps.

Per step dt, with N ~ Poisson(lambda dt) and, given N = n, the sum of n i.i.d. N(mu_J, delta_J^2)
log jumps drawn exactly as n mu_J + sqrt(n) delta_J Z':

    ln S_{t+1} - ln S_t = (mu - lambda k - sigma^2/2) dt + sigma sqrt(dt) Z + sum of log jumps,
    k = exp(mu_J + delta_J^2/2) - 1,

so E[S_T] = s0 e^{mu T} and Var[ln S_T] = sigma^2 T + lambda T (mu_J^2 + delta_J^2).
``vol`` = sigma (the diffusion part; jumps are not in it), ``cost_multiplier`` = 1.
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
class MertonParams:
    s0: float = 1.0
    mu: float = 0.0
    sigma: float = 0.2
    jump_intensity: float = 1.0
    jump_mean: float = -0.1
    jump_std: float = 0.15


def validate(params: MertonParams) -> MertonParams:
    """Host-side check (call before jit); raises ValueError naming the field."""
    C.positive("merton.s0", params.s0)
    C.finite("merton.mu", params.mu)
    C.positive("merton.sigma", params.sigma)
    C.nonnegative("merton.jump_intensity", params.jump_intensity)
    C.finite("merton.jump_mean", params.jump_mean)
    C.nonnegative("merton.jump_std", params.jump_std)
    return params


def jump_compensator(jump_mean, jump_std):
    """k = E[e^J] - 1 for J ~ N(jump_mean, jump_std^2)."""
    return jnp.expm1(jump_mean + 0.5 * jump_std**2)


def compound_poisson_log_jumps(key, lam_dt, jump_mean, jump_std, shape, dtype):
    """Per-step jump counts N ~ Poisson(lam_dt) (int32) and summed log jumps (dtype).

    ``lam_dt`` may be a scalar or an array broadcastable to ``shape`` (regime model).
    """
    k_n, k_z = jax.random.split(key)
    lam = jnp.broadcast_to(jnp.asarray(lam_dt, dtype), shape)
    counts = jax.random.poisson(k_n, lam, shape, dtype=jnp.int32)
    n = counts.astype(dtype)
    z = jax.random.normal(k_z, shape, dtype)
    log_jumps = n * jump_mean + jnp.sqrt(n) * jump_std * z  # exactly 0 where n = 0
    return counts, log_jumps


@C.fast_threefry
def simulate_with_jumps(key, params: MertonParams, n_paths: int, n_steps: int, dt: float):
    """Returns (MarketPaths, jump_counts (n_paths, n_steps) int32, log_jump_sizes (n_paths, n_steps)).

    Column t of the jump arrays belongs to the step (t, t+1]; ``log_jump_sizes`` is the sum of
    the log jumps in that step (0 where there is none).
    """
    dtype = C.float_dtype(params)
    f = lambda x: C.as_float(x, dtype)  # noqa: E731
    s0, mu, sigma, lam, mj, sj = map(
        f, (params.s0, params.mu, params.sigma, params.jump_intensity, params.jump_mean, params.jump_std)
    )
    dt = f(dt)
    k_w, k_j = jax.random.split(key)
    shape = (n_paths, n_steps)
    z = jax.random.normal(k_w, shape, dtype)
    counts, log_jumps = compound_poisson_log_jumps(k_j, lam * dt, mj, sj, shape, dtype)
    k = jump_compensator(mj, sj)
    incr = (mu - lam * k - 0.5 * sigma**2) * dt + sigma * jnp.sqrt(dt) * z + log_jumps
    full_shape = (n_paths, n_steps + 1)
    paths = MarketPaths(
        spot=C.spot_from_log_increments(s0, incr),
        vol=C.full(full_shape, sigma, dtype),
        cost_multiplier=jnp.ones(full_shape, dtype),
    )
    return paths, counts, log_jumps


@C.fast_threefry
def simulate(key: jax.Array, params: MertonParams, n_paths: int, n_steps: int, dt: float) -> MarketPaths:
    """Merton paths, fields shaped (n_paths, n_steps + 1)."""
    return simulate_with_jumps(key, params, n_paths, n_steps, dt)[0]


def reference_price(params: MertonParams, strike, maturity, rate, div_yield, is_call, n_steps):
    """Merton's jump-diffusion price (``n_steps`` unused)."""
    m = params
    return pricing.merton_price(m.s0, strike, maturity, rate, m.sigma, m.jump_intensity,
                                m.jump_mean, m.jump_std, div_yield, is_call)


def default_params(s0: float = 100.0, mu: float = 0.0, sigma: float = 0.2) -> MertonParams:
    """One jump a year on average, log jump N(-0.10, 0.15^2)."""
    return MertonParams(s0=s0, mu=mu, sigma=sigma, jump_intensity=1.0, jump_mean=-0.10,
                        jump_std=0.15)


#: Registered by :mod:`jaxhedge.markets`.
SPEC = MarketSpec(
    name="merton", params_cls=MertonParams, simulate=simulate, validate=validate,
    reference_price=reference_price, default_params=default_params,
    calm_vol=lambda p: p.sigma,
    with_calm_vol=lambda p, s: p.replace(sigma=s),
    description="Merton jump-diffusion")
