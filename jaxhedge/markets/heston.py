"""Heston stochastic volatility with Andersen's QE scheme (METHODS §1).

    dS = mu S dt + sqrt(v) S dW1,   dv = kappa (theta - v) dt + xi sqrt(v) dW2,   d<W1,W2> = rho dt.

Variance: Andersen (2008) quadratic-exponential (QE) step with switching threshold
``psi_c = 1.5``. It matches the exact conditional mean and variance of v_{t+dt} given v_t, is
>= 0 by construction (quadratic branch a(b+Z)^2, exponential branch a mass at 0 plus an
exponential tail), and stays finite when the Feller condition 2 kappa theta >= xi^2 fails.

Log spot: Andersen's scheme with central weights gamma1 = gamma2 = 1/2,

    ln S' = ln S + mu dt + K0* + K1 v + K2 v' + sqrt(K3 v + K4 v') Z,

with the *martingale correction* K0* = -ln M - (K1 + K3/2) v, M = E[exp(A v') | v],
A = K2 + K4/2, so E[S_{t+dt} | S_t, v_t] = S_t e^{mu dt} exactly (hence E[S_T] = s0 e^{mu T}).
M exists only for A < 1/(2a) (quadratic branch) / A < beta (exponential branch); this can
fail only for rho > 0 with a coarse step (Andersen §4.3). There the denominators are floored
at a tiny positive number so the path stays finite, and the correction is then approximate.

``vol`` = sqrt(v_t); ``cost_multiplier`` = 1. xi = 0 is allowed (deterministic variance): the
rho/xi terms are switched off (correlation is then irrelevant).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from jaxhedge import pricing
from jaxhedge.markets import _common as C
from jaxhedge.markets.base import MarketPaths
from jaxhedge.markets.registry import MarketSpec

PSI_C = 1.5


@struct.dataclass
class HestonParams:
    s0: float = 1.0
    mu: float = 0.0
    v0: float = 0.04
    kappa: float = 1.5
    theta: float = 0.04
    xi: float = 0.5
    rho: float = -0.7


def validate(params: HestonParams) -> HestonParams:
    """Host-side check (call before jit); raises ValueError naming the field."""
    C.positive("heston.s0", params.s0)
    C.finite("heston.mu", params.mu)
    C.nonnegative("heston.v0", params.v0)
    C.positive("heston.kappa", params.kappa)
    C.nonnegative("heston.theta", params.theta)
    C.nonnegative("heston.xi", params.xi)
    C.check("heston.rho", params.rho, lambda a: abs(a) <= 1, "in [-1, 1]")
    return params


def _qe_step(v, zv, uv, *, kappa, theta, xi2, ekd, tiny):
    """One QE variance step; returns (v_next, a, b2, p, beta, is_quadratic)."""
    m = theta + (v - theta) * ekd
    s2 = v * xi2 * ekd * (1.0 - ekd) / kappa + theta * xi2 * (1.0 - ekd) ** 2 / (2.0 * kappa)
    m_safe = jnp.maximum(m, tiny)
    psi = s2 / m_safe**2
    quad = psi <= PSI_C
    # quadratic branch (psi <= psi_c); psi floored so 2/psi stays finite
    psi_q = jnp.clip(psi, tiny, PSI_C)
    inv = 2.0 / psi_q
    b2 = inv - 1.0 + jnp.sqrt(inv) * jnp.sqrt(inv - 1.0)
    a = m / (1.0 + b2)
    # psi below the floor (e.g. xi = 0): the conditional variance is ~0, take the mean
    v_quad = jnp.where(psi < tiny, m, a * (jnp.sqrt(b2) + zv) ** 2)
    # exponential branch (psi > psi_c)
    psi_e = jnp.maximum(psi, PSI_C)
    p = (psi_e - 1.0) / (psi_e + 1.0)
    beta = (1.0 - p) / m_safe
    v_exp = jnp.where(uv <= p, 0.0, jnp.log((1.0 - p) / jnp.maximum(1.0 - uv, tiny)) / beta)
    v_next = jnp.maximum(jnp.where(quad, v_quad, v_exp), 0.0)
    return v_next, a, b2, p, beta, quad


@C.fast_threefry
def simulate(key: jax.Array, params: HestonParams, n_paths: int, n_steps: int, dt: float) -> MarketPaths:
    """Heston paths (QE + martingale correction), fields shaped (n_paths, n_steps + 1)."""
    return simulate_with_variance(key, params, n_paths, n_steps, dt)[0]


@C.fast_threefry
def simulate_with_variance(key, params: HestonParams, n_paths: int, n_steps: int, dt: float):
    """Like :func:`simulate`, also returning the variance path v (n_paths, n_steps + 1)."""
    dtype = C.float_dtype(params)
    f = lambda x: C.as_float(x, dtype)  # noqa: E731
    s0, mu, v0, kappa, theta, xi, rho = map(
        f, (params.s0, params.mu, params.v0, params.kappa, params.theta, params.xi, params.rho)
    )
    dt = f(dt)
    tiny = f(jnp.finfo(dtype).tiny ** 0.25)  # ~1e-10 (f32) / 1e-77 (f64): safe floor
    k_v, k_u, k_s = jax.random.split(key, 3)
    zv = jax.random.normal(k_v, (n_steps, n_paths), dtype)
    uv = jax.random.uniform(k_u, (n_steps, n_paths), dtype)
    zs = jax.random.normal(k_s, (n_paths, n_steps), dtype)

    ekd = jnp.exp(-kappa * dt)
    xi2 = xi**2
    has_xi = xi > 0
    rho_eff = jnp.where(has_xi, rho, 0.0)
    r_over_xi = jnp.where(has_xi, rho_eff / jnp.where(has_xi, xi, 1.0), 0.0)
    g1 = g2 = 0.5
    K1 = g1 * dt * (kappa * r_over_xi - 0.5) - r_over_xi
    K2 = g2 * dt * (kappa * r_over_xi - 0.5) + r_over_xi
    K3 = g1 * dt * (1.0 - rho_eff**2)
    K4 = g2 * dt * (1.0 - rho_eff**2)
    A = K2 + 0.5 * K4
    # Andersen's K0 = -rho kappa theta dt / xi is replaced by the martingale-corrected K0*.

    def step(v, inputs):
        z, u = inputs
        v_next, a, b2, p, beta, quad = _qe_step(v, z, u, kappa=kappa, theta=theta, xi2=xi2, ekd=ekd, tiny=tiny)
        den_q = jnp.maximum(1.0 - 2.0 * A * a, tiny)
        log_m_quad = A * b2 * a / den_q - 0.5 * jnp.log(den_q)
        log_m_exp = jnp.log(p + beta * (1.0 - p) / jnp.maximum(beta - A, tiny * beta))
        log_m = jnp.where(quad, log_m_quad, log_m_exp)
        k0_star = -log_m - (K1 + 0.5 * K3) * v
        drift = k0_star + K1 * v + K2 * v_next  # diffusion added outside the scan
        var = jnp.maximum(K3 * v + K4 * v_next, 0.0)
        return v_next, (v_next, drift, var)

    v_init = jnp.broadcast_to(v0, (n_paths,)).astype(dtype)
    _, (v_path, drift, var) = jax.lax.scan(step, v_init, (zv, uv))
    v_path, drift, var = v_path.T, drift.T, var.T  # (n_paths, n_steps)
    incr = mu * dt + drift + jnp.sqrt(var) * zs
    v_all = jnp.concatenate([v_init[:, None], v_path], axis=1)
    paths = MarketPaths(
        spot=C.spot_from_log_increments(s0, incr),
        vol=jnp.sqrt(v_all),
        cost_multiplier=jnp.ones_like(v_all),
    )
    return paths, v_all


def reference_price(params: HestonParams, strike, maturity, rate, div_yield, is_call, n_steps):
    """The semi-analytic Heston price (``n_steps`` unused)."""
    m = params
    return pricing.heston_price(m.s0, strike, maturity, rate, m.kappa, m.theta, m.xi, m.rho,
                                m.v0, div_yield, is_call)


def default_params(s0: float = 100.0, mu: float = 0.0, sigma: float = 0.2) -> HestonParams:
    """v0 = theta = sigma^2, kappa = 2, xi = 0.5, rho = -0.7."""
    return HestonParams(s0=s0, mu=mu, v0=sigma**2, kappa=2.0, theta=sigma**2, xi=0.5, rho=-0.7)


#: Registered by :mod:`jaxhedge.markets`.
SPEC = MarketSpec(
    name="heston", params_cls=HestonParams, simulate=simulate, validate=validate,
    reference_price=reference_price, default_params=default_params,
    calm_vol=lambda p: p.v0 ** 0.5,
    with_calm_vol=lambda p, s: p.replace(v0=s ** 2),
    description="Heston stochastic volatility (QE scheme)")
