"""RL price-surface calibration: move only a trained agent's (σ, μ) inputs (METHODS §5.4).

``fit_surface(price_fn, batch)`` fits, per slice, the two inputs (σ, μ) of a price
function ``price_fn(sigma, mu, spot, strike, tau, rate) -> price`` (scalars σ, μ; quote
arrays (n_max,) broadcast) by minimising

    mean_i w_i (Ĉ_i/F_i − C_i/F_i)²,  w_i = F_i²/max(C_i, 1),

over the slice's real quotes (= mean (Ĉ_i − C_i)²/max(C_i, 1)), with the same bounded
LM solver as the parametric models. ``spot`` handed to ``price_fn`` is the PREPAID forward
S̃ = DF·F (= S e^{−qτ}): the agents are trained without dividends, so S̃ with q = 0 makes
their implied forward S̃e^{rτ} equal the file's F. ``rate`` is r = −log(DF)/τ.

Which surface is "QLBS" (docs/calibration.md): classic Halperin QLBS prices one contract
per Monte Carlo DP/FQI run (10^4 paths × N steps of spline regressions); a price per
quote per LM iteration per slice is out of reach and is not a differentiable function of
(σ, μ). The papers' "QLBS" agent of the static study is their trained network agent —
Adaptive-QLBS (METHODS §4.2) — whose price head is C_BS(σ̂(s)) with σ̂ the policy-mean
network, an explicit differentiable surface. :func:`agent_price_fn` wraps it (and RLOP's
learned price head) into the ``price_fn`` contract.

Shapes: batch (n_slices, n_max) -> SurfaceFit fields (n_slices,).
"""
from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.numpy as jnp
from flax import struct

from ._common import batch_arrays, check_iters, resolve_dtype
from .least_squares import solve_box

__all__ = ["SurfaceFit", "fit_surface", "surface_prices", "agent_price_fn"]

SIGMA_BOUNDS = (0.01, 3.0)
MU_BOUNDS = (-1.0, 1.0)


@struct.dataclass
class SurfaceFit:
    """Per-slice fitted inputs. sigma, mu, loss (the weighted mean above), n_quotes: (n_slices,)."""

    sigma: jax.Array
    mu: jax.Array
    loss: jax.Array
    n_quotes: jax.Array


def _quote_inputs(f, k, tau, df):
    """(prepaid spot, strike, tau, rate) handed to price_fn."""
    return df * f, k, tau, -jnp.log(df) / tau


@functools.partial(jax.jit, static_argnames=("price_fn", "n_iter", "bounds"))
def _fit_arrays(f, k, tau, df, c, mask, price_fn, n_iter, bounds):
    dtype = f.dtype
    lo = jnp.asarray([bounds[0][0], bounds[1][0]], dtype)
    hi = jnp.asarray([bounds[0][1], bounds[1][1]], dtype)
    # sigma starts spread over the range; mu starts at 0 (and a drift-ful one)
    starts = jnp.asarray([[0.15, 0.0], [0.5, 0.0], [1.5, 0.0], [0.3, 0.5 * bounds[1][1]]],
                         dtype)
    starts = jnp.clip(starts, lo + 1e-3 * (hi - lo), hi - 1e-3 * (hi - lo))

    def one(f, k, tau, df, c, mask):
        n = jnp.maximum(jnp.sum(mask), 1)
        s, kk, t, r = _quote_inputs(f, k, tau, df)
        # residual_i = sqrt(w_i/n)(Ĉ_i − C_i)/F_i, so sum r² = mean w (Ĉ/F − C/F)²
        scale = jnp.sqrt(f * f / jnp.maximum(c, 1.0) / n) / f

        def residuals(x):
            p = price_fn(x[0], x[1], s, kk, t, r)
            return jnp.where(mask, scale * (p - c), 0.0)

        res = solve_box(residuals, starts, lo, hi, n_iter)
        return res.x, res.loss

    x, loss = jax.vmap(one)(f, k, tau, df, c, mask)
    return SurfaceFit(sigma=x[:, 0], mu=x[:, 1], loss=loss, n_quotes=jnp.sum(mask, axis=-1))


def _check_bounds(name, b, allowed):
    ok = (isinstance(b, tuple) and len(b) == 2 and all(isinstance(v, (int, float)) for v in b)
          and allowed[0] <= b[0] < b[1] <= allowed[1])
    if not ok:
        raise ValueError(f"{name}: must be a (lo, hi) float tuple with {allowed[0]} <= lo < hi "
                         f"<= {allowed[1]}, got {b!r}")
    return (float(b[0]), float(b[1]))


def fit_surface(price_fn: Callable, batch, n_iter: int = 30, sigma_bounds=SIGMA_BOUNDS,
                mu_bounds=MU_BOUNDS, dtype=None) -> SurfaceFit:
    """Fit (σ, μ) of ``price_fn`` to every slice of ``batch`` in one compiled vmapped call.

    Args:
      price_fn: ``(sigma (), mu (), spot (n,), strike (n,), tau (n,), rate (n,)) -> (n,)``
        call prices; pure jnp and hashable (it is a static argument of the jit: pass the
        same object to reuse the compiled program).
      batch: SliceBatch.
      n_iter: LM iterations per start (4 starts).
      sigma_bounds, mu_bounds: the search box (default (0.01, 3) and (−1, 1)).
      dtype: float32 / float64 / None.
    """
    if not callable(price_fn):
        raise ValueError(f"price_fn: must be callable, got {type(price_fn).__name__}")
    sb = _check_bounds("sigma_bounds", sigma_bounds, (1e-4, 10.0))
    mb = _check_bounds("mu_bounds", mu_bounds, (-10.0, 10.0))
    dt = resolve_dtype(dtype)
    return _fit_arrays(*batch_arrays(batch, dt), price_fn=price_fn, n_iter=check_iters(n_iter),
                       bounds=(sb, mb))


def surface_prices(price_fn: Callable, fit: SurfaceFit, batch, dtype=None):
    """(n_slices, n_max) prices of ``price_fn`` at the fitted (σ, μ) of each slice."""
    f, k, tau, df, _, _ = batch_arrays(batch, resolve_dtype(dtype))
    s, kk, t, r = _quote_inputs(f, k, tau, df)
    return jax.vmap(price_fn)(jnp.asarray(fit.sigma, f.dtype), jnp.asarray(fit.mu, f.dtype),
                              s, kk, t, r)


class _AgentSurface:
    """``price_fn`` of a trained agent. Hashed by identity (a static jit argument): the
    network weights become constants of the compiled fit."""

    def __init__(self, agent, state, cost=0.0):
        self.agent, self.state, self.cost = agent, state, cost

    def __call__(self, sigma, mu, spot, strike, tau, rate):
        from jaxhedge.contracts import Contract

        dtype = jnp.result_type(spot, float)
        shape = jnp.shape(spot)
        b = lambda v: jnp.broadcast_to(jnp.asarray(v, dtype), shape)
        # The agents train on strike 1 with S0 ~ U(0.3, 1.7): price in units of K
        # (BS-type heads are homogeneous of degree 1 in (S, K)) so inputs stay in range.
        contract = Contract(s0=b(spot / strike), strike=b(1.0), maturity=b(tau), sigma=b(sigma),
                            mu=b(mu), rate=b(rate), div_yield=b(0.0), cost=b(self.cost),
                            option=getattr(self.agent, "option", "call"))
        return strike * self.agent.price(self.state, None, contract)


def agent_price_fn(agent, state, cost: float = 0.0) -> Callable:
    """Wrap a trained RLOP / AdaptiveQLBS (anything with ``price(state, hparams, contract)``)
    as a ``price_fn`` for :func:`fit_surface`; ``cost`` is the ε observation input."""
    if not hasattr(agent, "price"):
        raise ValueError(f"agent: must have a price(state, hparams, contract) method, got "
                         f"{type(agent).__name__}")
    return _AgentSurface(agent=agent, state=state, cost=float(cost))
