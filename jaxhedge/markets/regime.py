"""Regime-switching volatility / liquidity stress (METHODS §1).

A K-state Markov chain s_t (K static, from the array shapes) with a per-step row-stochastic
``transition[i, j] = P(s_{t+1} = j | s_t = i)``, s_0 = ``initial_state``.

Timing convention: the regime in force at t drives the step (t, t+1]. The log return over
(t, t+1] is Merton's with the state-s_t diffusion vol and jump intensity (jump size law shared
by all states), compensated per state so E[S_{t+1} | F_t] = S_t e^{mu dt} in every regime:

    ln S_{t+1} - ln S_t = (mu - lambda_{s_t} k - sigma_{s_t}^2/2) dt + sigma_{s_t} sqrt(dt) Z + jumps,

then s_{t+1} is drawn from row s_t. ``vol[:, t] = sigmas[s_t]`` and
``cost_multiplier[:, t] = cost_multipliers[s_t]`` — what a hedger sees at t is the regime
that governs its next step (same convention as Heston's vol = sqrt(v_t)).
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jaxhedge import pricing
from jaxhedge.markets import _common as C
from jaxhedge.markets.base import MarketPaths
from jaxhedge.markets.registry import MarketSpec
from jaxhedge.markets.merton import compound_poisson_log_jumps, jump_compensator


def _arr(x):
    return dataclasses.field(default_factory=lambda: jnp.asarray(x, dtype=float))


@struct.dataclass
class RegimeParams:
    """Defaults are the calm/stress chain of :func:`two_state` with its defaults."""

    s0: float = 1.0
    mu: float = 0.0
    sigmas: jax.Array = _arr([0.15, 0.45])
    cost_multipliers: jax.Array = _arr([1.0, 3.0])
    jump_intensities: jax.Array = _arr([0.0, 2.0])
    jump_mean: float = -0.05
    jump_std: float = 0.05
    transition: jax.Array = _arr([[0.98, 0.02], [0.10, 0.90]])
    initial_state: int = 0

    @property
    def n_states(self) -> int:
        return self.sigmas.shape[-1]


def two_state(
    calm_sigma: float = 0.15,
    stress_sigma: float = 0.45,
    p_calm_to_stress: float = 0.02,
    p_stress_to_calm: float = 0.10,
    stress_cost_multiplier: float = 3.0,
    stress_jump_intensity: float = 2.0,
    *,
    calm_cost_multiplier: float = 1.0,
    calm_jump_intensity: float = 0.0,
    jump_mean: float = -0.05,
    jump_std: float = 0.05,
    s0: float = 1.0,
    mu: float = 0.0,
    initial_state: int = 0,
) -> RegimeParams:
    """State 0 = calm, state 1 = stress; probabilities are per step."""
    return RegimeParams(
        s0=s0,
        mu=mu,
        sigmas=jnp.asarray([calm_sigma, stress_sigma], dtype=float),
        cost_multipliers=jnp.asarray([calm_cost_multiplier, stress_cost_multiplier], dtype=float),
        jump_intensities=jnp.asarray([calm_jump_intensity, stress_jump_intensity], dtype=float),
        jump_mean=jump_mean,
        jump_std=jump_std,
        transition=jnp.asarray(
            [[1.0 - p_calm_to_stress, p_calm_to_stress], [p_stress_to_calm, 1.0 - p_stress_to_calm]],
            dtype=float,
        ),
        initial_state=initial_state,
    )


def stationary_distribution(transition) -> np.ndarray:
    """Host-side: the left eigenvector pi P = pi, sum 1 (for an irreducible chain)."""
    p = np.asarray(transition, dtype=float)
    k = p.shape[0]
    a = np.vstack([p.T - np.eye(k), np.ones((1, k))])
    b = np.zeros(k + 1)
    b[-1] = 1.0
    return np.linalg.lstsq(a, b, rcond=None)[0]


def validate(params: RegimeParams, atol: float = 1e-6) -> RegimeParams:
    """Host-side check (call before jit); raises ValueError naming the field."""
    C.positive("regime.s0", params.s0)
    C.finite("regime.mu", params.mu)
    sig = np.asarray(params.sigmas, dtype=float)
    if sig.ndim != 1 or sig.shape[0] < 1:
        raise ValueError(f"regime.sigmas: must be a 1-D array of K >= 1 states (got shape {sig.shape})")
    k = sig.shape[0]
    for name in ("cost_multipliers", "jump_intensities"):
        shp = np.shape(getattr(params, name))
        if shp != (k,):
            raise ValueError(f"regime.{name}: must have shape ({k},) like sigmas (got {shp})")
    C.positive("regime.sigmas", sig)
    C.nonnegative("regime.cost_multipliers", params.cost_multipliers)
    C.nonnegative("regime.jump_intensities", params.jump_intensities)
    C.finite("regime.jump_mean", params.jump_mean)
    C.nonnegative("regime.jump_std", params.jump_std)
    p = np.asarray(params.transition, dtype=float)
    if p.shape != (k, k):
        raise ValueError(f"regime.transition: must have shape ({k}, {k}) (got {p.shape})")
    C.check("regime.transition", p, lambda a: (a >= 0) & (a <= 1), "entries in [0, 1]")
    sums = p.sum(axis=1)
    bad = np.flatnonzero(np.abs(sums - 1.0) > atol)
    if bad.size:
        raise ValueError(f"regime.transition: rows must sum to 1 (got {sums[bad[0]]:.6g} in row {bad[0]})")
    s = np.asarray(params.initial_state)
    if s.ndim != 0 or not float(s).is_integer() or not 0 <= int(s) < k:
        raise ValueError(f"regime.initial_state: must be an integer in [0, {k - 1}] (got {params.initial_state!r})")
    return params


@C.fast_threefry
def simulate_with_states(key, params: RegimeParams, n_paths: int, n_steps: int, dt: float):
    """Returns (MarketPaths, states (n_paths, n_steps + 1) int32); states[:, 0] = initial_state."""
    dtype = C.float_dtype(params)
    f = lambda x: C.as_float(x, dtype)  # noqa: E731
    s0, mu, mj, sj = map(f, (params.s0, params.mu, params.jump_mean, params.jump_std))
    sigmas, cms, lams = map(f, (params.sigmas, params.cost_multipliers, params.jump_intensities))
    trans = f(params.transition)
    dt = f(dt)
    k_chain, k_w, k_j = jax.random.split(key, 3)

    # Chain: next = #{j < K-1 : u >= cumsum(row)_j}; the last cumulative entry is never used,
    # so a row summing to 1 - 1e-7 in float32 cannot produce an out-of-range state.
    cum = jnp.cumsum(trans, axis=1)[:, :-1]  # (K, K-1)
    u = jax.random.uniform(k_chain, (n_steps, n_paths), dtype)

    def step(s, u_t):
        s_next = jnp.sum(u_t[:, None] >= cum[s], axis=1).astype(jnp.int32)
        return s_next, s_next

    s_init = jnp.full((n_paths,), params.initial_state, jnp.int32)
    _, s_rest = jax.lax.scan(step, s_init, u)
    states = jnp.concatenate([s_init[:, None], s_rest.T], axis=1)  # (n_paths, n_steps+1)

    s_cur = states[:, :-1]
    sig_t = sigmas[s_cur]
    lam_t = lams[s_cur]
    shape = (n_paths, n_steps)
    z = jax.random.normal(k_w, shape, dtype)
    _, log_jumps = compound_poisson_log_jumps(k_j, lam_t * dt, mj, sj, shape, dtype)
    k = jump_compensator(mj, sj)
    incr = (mu - lam_t * k - 0.5 * sig_t**2) * dt + sig_t * jnp.sqrt(dt) * z + log_jumps
    paths = MarketPaths(
        spot=C.spot_from_log_increments(s0, incr),
        vol=sigmas[states],
        cost_multiplier=cms[states],
    )
    return paths, states


@C.fast_threefry
def simulate(key: jax.Array, params: RegimeParams, n_paths: int, n_steps: int, dt: float) -> MarketPaths:
    """Regime-switching paths, fields shaped (n_paths, n_steps + 1)."""
    return simulate_with_states(key, params, n_paths, n_steps, dt)[0]


def average_vol(params: RegimeParams, n_steps: int):
    """sqrt of the expected time-average of sigma^2 over n_steps under the regime chain."""
    m = params
    k = m.sigmas.shape[-1]
    dist = jax.nn.one_hot(m.initial_state, k, dtype=m.sigmas.dtype)

    def body(d, _):
        return d @ m.transition, d @ (m.sigmas**2)

    _, variances = jax.lax.scan(body, dist, None, length=n_steps)
    return jnp.sqrt(jnp.mean(variances))


def reference_price(params: RegimeParams, strike, maturity, rate, div_yield, is_call, n_steps):
    """Black-Scholes at :func:`average_vol` over the ``n_steps`` dates.

    There is no closed form; the P&L mean then shows the model's mispricing.
    """
    return pricing.bs_price(params.s0, strike, maturity, rate, average_vol(params, n_steps),
                            div_yield, is_call)


def default_params(s0: float = 100.0, mu: float = 0.0, sigma: float = 0.2) -> RegimeParams:
    """Calm sigma / stress 3 sigma, 2% per step of entering stress, 10% of leaving, costs x3
    and two jumps a year in stress."""
    return two_state(calm_sigma=sigma, stress_sigma=3 * sigma, s0=s0, mu=mu)


def _with_calm_vol(p, sigma):
    """The chain with its first (calm) regime's vol set to ``sigma``."""
    return p.replace(sigmas=jnp.asarray(p.sigmas).at[0].set(sigma))


#: Registered by :mod:`jaxhedge.markets`.
SPEC = MarketSpec(
    name="regime", params_cls=RegimeParams, simulate=simulate, validate=validate,
    reference_price=reference_price, default_params=default_params,
    calm_vol=lambda p: p.sigmas[0],
    with_calm_vol=_with_calm_vol,
    description="regime-switching volatility and liquidity")
