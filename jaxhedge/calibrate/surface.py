"""RL price-surface calibration: move only a trained agent's (σ, μ) inputs (METHODS §5.4).

``fit_surface(price_fn, batch, method)`` fits, per slice, the two inputs (σ, μ) of a price
function ``price_fn(sigma, mu, spot, strike, tau, rate) -> price`` (scalars σ, μ; quote
arrays (n_max,) broadcast) by minimising

    mean_i w_i (Ĉ_i/F_i − C_i/F_i)²,  w_i = F_i²/max(C_i, 1),

over the slice's real quotes. Two things define a method: the **input mapping** (how a
quote (F, K, τ, DF) becomes the network's inputs) and the **optimiser**:

* ``"authors"`` (default; the authors' protocol, METHODS §5.4): spot = F normalised to 1,
  strike K/F, remaining time fixed at the slice's anchor T_a for every quote, rate input
  r·τ/T_a (so the network discounts by exactly DF), Ĉ_i = F·price_fn(...); friction and λ
  inputs belong to ``price_fn`` (:func:`authors_price_fn`: ε = 4e−3; our networks have no
  λ input). Optimiser: Adam on (σ_raw, μ), σ = 2·sigmoid(σ_raw) + 0.01, start (0.3, 0),
  lr 0.5 (Adaptive-QLBS) / 0.1 (RLOP), at most 2,000 epochs, the authors' stop rules
  (:mod:`.adam_stop`).
* ``"authors-lm"``: the authors' mapping with the bounded Levenberg–Marquardt of the
  parametric models (σ in (0.01, 2.01), the Adam range): the same objective, another
  optimiser — METHODS allows it when it reaches the same or a lower loss.
* ``"lm"``: the project's earlier variant: spot = prepaid forward S̃ = DF·F, strike K, the
  quote's own τ and r = −log(DF)/τ (the network's implied forward S̃e^{rτ} is the file's F
  exactly; the authors' spot = F makes it F·e^{rτ}), bounded LM with σ in (0.01, 3).

The fitted (σ, μ) with the method's mapping define C(S, K, τ): :func:`surface_prices` (for
the model IV) and :func:`path_price_fn` (for the hedging study's finite-difference delta;
how τ enters along a path is documented there and in docs/calibration.md).

Which surface is "QLBS": docs/calibration.md (the Adaptive-QLBS agent's price head).

Shapes: batch (n_slices, n_max) -> SurfaceFit fields (n_slices,).
"""
from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from ._common import batch_arrays, check_iters, resolve_dtype
from .adam_stop import adam_early_stop
from .least_squares import solve_box

__all__ = ["SurfaceFit", "fit_surface", "surface_prices", "agent_price_fn",
           "authors_price_fn", "path_price_fn", "path_params", "static_anchor_tau",
           "method_for", "METHODS", "AUTHORS_LR", "AUTHORS_FRICTION",
           "HEDGING_ANCHOR_TAU"]

METHODS = ("authors", "authors-lm", "lm")
SIGMA_BOUNDS = (0.01, 3.0)
MU_BOUNDS = (-1.0, 1.0)
#: the authors' protocol constants (METHODS §5.4)
AUTHORS_LR = {"adaptive-qlbs": 0.5, "rlop": 0.1}
AUTHORS_FRICTION = 4e-3
AUTHORS_START = (0.3, 0.0)          # (sigma_raw, mu)
AUTHORS_MAX_EPOCHS = 2000
AUTHORS_TOL = 1e-7
AUTHORS_SIGMA = (0.01, 2.0)         # sigma = lo + scale * sigmoid(sigma_raw)
HEDGING_ANCHOR_TAU = 28 / 252
ANCHOR_DAYS_PER_YEAR = 252          # static study: T_a = bucket / 252


@struct.dataclass
class SurfaceFit:
    """Per-slice fit, fields (n_slices,): sigma, mu (the network's inputs), loss (the weighted
    mean above at the returned inputs), n_quotes, n_steps (Adam updates applied; LM
    iterations per start), anchor_tau (T_a of the authors' mapping; NaN for ``lm``).
    ``method`` (static) says which mapping prices the surface."""

    sigma: jax.Array
    mu: jax.Array
    loss: jax.Array
    n_quotes: jax.Array
    n_steps: jax.Array
    anchor_tau: jax.Array
    method: str = struct.field(pytree_node=False, default="authors")


def _inputs(method):
    return "native" if method == "lm" else "authors"


def _unit_prices(price_fn, mapping, sigma, mu, f, k, tau, df, anchor):
    """Ĉ/F per quote (any shape) under ``mapping``."""
    if mapping == "authors":
        one = jnp.ones_like(f)
        return price_fn(sigma, mu, one, k / f, anchor * one, -jnp.log(df) / anchor)
    return price_fn(sigma, mu, df * f, k, tau, -jnp.log(df) / tau) / f


def _slice_loss(unit_price, f, c, mask):
    """mean over real quotes of w (Ĉ/F − C/F)², w = F²/max(C, 1)."""
    w = f * f / jnp.maximum(c, 1.0)
    e = jnp.where(mask, w * (unit_price - c / f) ** 2, 0.0)
    return jnp.sum(e) / jnp.maximum(jnp.sum(mask), 1)


def _sigma_of_raw(raw):
    return AUTHORS_SIGMA[0] + AUTHORS_SIGMA[1] * jax.nn.sigmoid(raw)


@functools.partial(jax.jit, static_argnames=("price_fn", "max_epochs"))
def _fit_adam(f, k, tau, df, c, mask, anchor, lr, tol, price_fn, max_epochs):
    def loss(theta, d):
        f, k, tau, df, c, mask, anchor = d
        p = _unit_prices(price_fn, "authors", _sigma_of_raw(theta[0]), theta[1], f, k, tau,
                         df, anchor)
        return _slice_loss(p, f, c, mask)

    theta0 = jnp.broadcast_to(jnp.asarray(AUTHORS_START, f.dtype), (f.shape[0], 2))
    theta, value, n_upd = adam_early_stop(loss, theta0, (f, k, tau, df, c, mask, anchor),
                                          lr, max_epochs, tol)
    return _sigma_of_raw(theta[:, 0]), theta[:, 1], value, n_upd


@functools.partial(jax.jit, static_argnames=("price_fn", "n_iter", "bounds", "mapping"))
def _fit_lm(f, k, tau, df, c, mask, anchor, price_fn, n_iter, bounds, mapping):
    dtype = f.dtype
    lo = jnp.asarray([bounds[0][0], bounds[1][0]], dtype)
    hi = jnp.asarray([bounds[0][1], bounds[1][1]], dtype)
    # sigma starts spread over the range; mu starts at 0 (and a drift-ful one)
    starts = jnp.asarray([[0.15, 0.0], [0.5, 0.0], [1.5, 0.0], [0.3, 0.5 * bounds[1][1]]],
                         dtype)
    starts = jnp.clip(starts, lo + 1e-3 * (hi - lo), hi - 1e-3 * (hi - lo))

    def one(f, k, tau, df, c, mask, anchor):
        # residual_i = sqrt(w_i/n)(Ĉ_i/F_i − C_i/F_i), so sum r² = mean w (Ĉ/F − C/F)²
        scale = jnp.sqrt(f * f / jnp.maximum(c, 1.0) / jnp.maximum(jnp.sum(mask), 1))

        def residuals(x):
            p = _unit_prices(price_fn, mapping, x[0], x[1], f, k, tau, df, anchor)
            return jnp.where(mask, scale * (p - c / f), 0.0)

        res = solve_box(residuals, starts, lo, hi, n_iter)
        return res.x, res.loss

    x, loss = jax.vmap(one)(f, k, tau, df, c, mask, anchor)
    return x[:, 0], x[:, 1], loss


def _check_bounds(name, b, allowed):
    ok = (isinstance(b, tuple) and len(b) == 2 and all(isinstance(v, (int, float)) for v in b)
          and allowed[0] <= b[0] < b[1] <= allowed[1])
    if not ok:
        raise ValueError(f"{name}: must be a (lo, hi) float tuple with {allowed[0]} <= lo < hi "
                         f"<= {allowed[1]}, got {b!r}")
    return (float(b[0]), float(b[1]))


def static_anchor_tau(batch) -> np.ndarray:
    """T_a = bucket/252 of each (date, bucket_days) slice of a static batch, (n_slices,)."""
    try:
        days = np.asarray([float(key[1]) for key in batch.keys])
    except (TypeError, ValueError, IndexError):
        days = np.asarray([])
    if days.shape != (batch.n_slices,) or not np.all(days > 0):
        raise ValueError("anchor_tau: give it (years, scalar or one per slice); it is "
                         "bucket/252 only for batches keyed (date, bucket_days)")
    return days / ANCHOR_DAYS_PER_YEAR


def _anchor(anchor_tau, batch, dtype):
    if anchor_tau is None:
        return jnp.asarray(static_anchor_tau(batch), dtype)[:, None]
    try:
        a = np.asarray(anchor_tau, float)
    except (TypeError, ValueError):
        a = None  # not numeric: reported below
    if a is not None:
        a = np.broadcast_to(a, (batch.n_slices,)) if a.ndim <= 1 and a.size in (
            1, batch.n_slices) else None
    if a is None or not np.all(np.isfinite(a) & (a > 0) & (a <= 5)):
        raise ValueError(f"anchor_tau: must be in (0, 5] years, a scalar or one per slice "
                         f"({batch.n_slices}), got {anchor_tau!r}")
    return jnp.asarray(a, dtype)[:, None]


def fit_surface(price_fn: Callable, batch, method: str = "authors", *, anchor_tau=None,
                lr: float = AUTHORS_LR["adaptive-qlbs"], max_epochs: int = AUTHORS_MAX_EPOCHS,
                tol: float = AUTHORS_TOL, n_iter: int = 30, sigma_bounds=None,
                mu_bounds=MU_BOUNDS, dtype=None) -> SurfaceFit:
    """Fit (σ, μ) of ``price_fn`` to every slice of ``batch`` in one compiled vmapped call.

    Args:
      price_fn: ``(sigma (), mu (), spot (n,), strike (n,), tau (n,), rate (n,)) -> (n,)``
        call prices; pure jnp and hashable (a static argument of the jit: pass the same
        object to reuse the compiled program; :func:`authors_price_fn` caches agents').
      batch: SliceBatch.
      method: ``"authors"`` | ``"authors-lm"`` | ``"lm"`` (module doc).
      anchor_tau: T_a in years for the authors' mapping, scalar or (n_slices,); default
        bucket/252 from a static batch's (date, bucket_days) keys. The hedging study passes
        :data:`HEDGING_ANCHOR_TAU`.
      lr, max_epochs, tol: Adam learning rate (:data:`AUTHORS_LR`), epoch cap and loss
        threshold (``authors``).
      n_iter: LM iterations per start (4 starts; the LM methods).
      sigma_bounds: LM box for σ (default (0.01, 3) for ``lm``, (0.01, 2.01) — the Adam
        range — for ``authors-lm``); mu_bounds: LM box for μ (default (−1, 1)).
      dtype: float32 / float64 / None.
    """
    if not callable(price_fn):
        raise ValueError(f"price_fn: must be callable, got {type(price_fn).__name__}")
    if method not in METHODS:
        raise ValueError(f"method: must be one of {', '.join(METHODS)}, got {method!r}")
    dt = resolve_dtype(dtype)
    f, k, tau, df, c, mask = batch_arrays(batch, dt)
    n_quotes = jnp.sum(mask, axis=-1)
    mapping = _inputs(method)
    anchor = _anchor(anchor_tau, batch, dt) if mapping == "authors" else jnp.full(
        (batch.n_slices, 1), jnp.nan, dt)
    if method == "authors":
        if not (isinstance(lr, (int, float)) and 0 < lr <= 10):
            raise ValueError(f"lr: must be a float in (0, 10], got {lr!r}")
        if not (isinstance(tol, (int, float)) and 0 <= tol < 1):
            raise ValueError(f"tol: must be a float in [0, 1), got {tol!r}")
        steps = check_iters(max_epochs)
        sigma, mu, loss, n_steps = _fit_adam(f, k, tau, df, c, mask, anchor, lr, tol,
                                             price_fn=price_fn, max_epochs=steps)
    else:
        default = SIGMA_BOUNDS if method == "lm" else (
            AUTHORS_SIGMA[0], AUTHORS_SIGMA[0] + AUTHORS_SIGMA[1])
        sb = _check_bounds("sigma_bounds", default if sigma_bounds is None else sigma_bounds,
                           (1e-4, 10.0))
        mb = _check_bounds("mu_bounds", mu_bounds, (-10.0, 10.0))
        steps = check_iters(n_iter)
        sigma, mu, loss = _fit_lm(f, k, tau, df, c, mask, anchor, price_fn=price_fn,
                                  n_iter=steps, bounds=(sb, mb), mapping=mapping)
        n_steps = jnp.full((batch.n_slices,), steps, jnp.int32)
    return SurfaceFit(sigma=sigma, mu=mu, loss=loss, n_quotes=n_quotes, n_steps=n_steps,
                      anchor_tau=anchor[:, 0], method=method)


def surface_prices(price_fn: Callable, fit: SurfaceFit, batch, dtype=None):
    """(n_slices, n_max) money prices of ``price_fn`` at each slice's fitted (σ, μ), under
    the fit's input mapping."""
    f, k, tau, df, _, _ = batch_arrays(batch, resolve_dtype(dtype))
    mapping = _inputs(fit.method)
    cast = lambda a: jnp.asarray(a, f.dtype)

    def one(sigma, mu, f, k, tau, df, anchor):
        return f * _unit_prices(price_fn, mapping, sigma, mu, f, k, tau, df, anchor)

    return jax.vmap(one)(cast(fit.sigma), cast(fit.mu), f, k, tau, df, cast(fit.anchor_tau))


@functools.lru_cache(maxsize=None)
def path_price_fn(price_fn: Callable, method: str = "authors") -> Callable:
    """C(S, τ) of a fitted surface along a hedging path, for ``backtest.fd_delta_fn``:
    ``price(spot, tau, strike, rate, q_hat, params)`` with ``params`` = :func:`path_params`
    = (σ, μ, time_scale) per episode. One function object per (surface, method), so the
    backtest compiles once.

    ``lm``: the quote mapping at the path's state, spot = the prepaid forward S e^{−q̂τ}
    (the agents train without dividends), the remaining τ, the start day's r.

    ``authors``: F_t = S e^{(r−q̂)τ} normalised to 1, strike K/F_t, time input
    T(τ) = T_a·τ/τ₀ (time_scale = T_a/τ₀, τ₀ the anchor expiry's τ on the start day) and
    rate input r·τ/T(τ). At the start day this is exactly the fit's mapping (time input
    T_a, rate r·τ₀/T_a); later the time input shrinks in proportion to the remaining time,
    so the surface's time value decays to 0 at expiry while discounting stays e^{−rτ}.
    Holding the time input at T_a along the path would keep an ATM option's full 28-day
    time value (and a delta near 0.5) on its last day (docs/calibration.md).
    """
    if method not in METHODS:
        raise ValueError(f"method: must be one of {', '.join(METHODS)}, got {method!r}")
    if _inputs(method) == "native":
        def price(spot, tau, strike, rate, q_hat, params):
            return price_fn(params[0], params[1], spot * jnp.exp(-q_hat * tau), strike, tau,
                            rate)
        return price

    def price(spot, tau, strike, rate, q_hat, params):
        sigma, mu, scale = params
        fwd = spot * jnp.exp((rate - q_hat) * tau)
        one = jnp.ones_like(fwd)
        return fwd * price_fn(sigma, mu, one, strike / fwd, tau * scale, rate / scale * one)
    return price


def path_params(fit: SurfaceFit, tau0, dtype=None):
    """(σ, μ, time_scale) per episode for :func:`path_price_fn`: time_scale = T_a/τ₀
    (1 for ``lm``); ``tau0`` (n,) is each episode's τ on its start day."""
    dt = resolve_dtype(dtype)
    tau0 = jnp.asarray(tau0, dt)
    scale = (jnp.ones_like(tau0) if _inputs(fit.method) == "native"
             else jnp.asarray(fit.anchor_tau, dt) / tau0)
    return jnp.asarray(fit.sigma, dt), jnp.asarray(fit.mu, dt), scale


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


# (id(agent), id(state), cost) -> surface; the entry keeps agent and state alive, so the
# ids cannot be reused while cached
_SURFACES: dict[tuple, _AgentSurface] = {}


def agent_price_fn(agent, state, cost: float = 0.0) -> Callable:
    """Wrap a trained RLOP / AdaptiveQLBS (anything with ``price(state, hparams, contract)``)
    as a ``price_fn`` for :func:`fit_surface`; ``cost`` is the ε observation input. The same
    (agent, state, cost) gives the same object (one compilation per surface)."""
    if not hasattr(agent, "price"):
        raise ValueError(f"agent: must have a price(state, hparams, contract) method, got "
                         f"{type(agent).__name__}")
    key = (id(agent), id(state), float(cost))
    if key not in _SURFACES:
        _SURFACES[key] = _AgentSurface(agent=agent, state=state, cost=float(cost))
    return _SURFACES[key]


def authors_price_fn(agent, state) -> Callable:
    """The agent's surface with the authors' friction input ε = 4e−3. Their λ input (0.01
    Adaptive-QLBS, 0.10 RLOP) has no counterpart: our networks do not read λ
    (``nets.observation_features``), λ is fixed per trained agent."""
    return agent_price_fn(agent, state, cost=AUTHORS_FRICTION)


def method_for(price_fn: Callable, method: str) -> Callable:
    """The ``price_fn`` a method fits: an agent surface gets ε = 4e−3 for the authors'
    mapping (and keeps its own ε for ``lm``); other callables are returned unchanged."""
    if isinstance(price_fn, _AgentSurface) and _inputs(method) == "authors":
        return authors_price_fn(price_fn.agent, price_fn.state)
    return price_fn
