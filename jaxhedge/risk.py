r"""Risk and performance metrics (METHODS.md §6), one module used everywhere.

Pure ``jax.numpy``; every function is jittable and vmappable. Nothing is cast to a fixed
precision: the floating dtype is taken from the inputs (float32 by default, float64 when
``jax.enable_x64`` is on and the inputs are float64). Integer / bool inputs are promoted to the
default float dtype.

Conventions
-----------
* **P&L** ``X = Π_T`` (terminal hedging error of the short option, METHODS.md §2);
  positive = gain.
* **Loss** ``L = −X``.
* **Shortfall** ``SF = max(0, −X) = max(0, L)``.
* ``alpha`` is the **tail probability**: ``alpha = 0.05`` means "the worst 5 %".
  Valid range ``0 < alpha <= 1``. ``alpha`` may be a Python float or a (traced) array; it is
  broadcast against the batch shape ``...`` (so one alpha per batch row also works).
* **Shapes.** Sample statistics take an array of shape ``(..., n)`` (a single 1-D sample is the
  case ``(n,)``) and reduce over the LAST axis, returning shape ``(...)`` (a 0-d array for a
  1-D input). Path statistics (``turnover``, ``max_drawdown``) take ``(..., n_steps)`` /
  ``(..., n_steps + 1)`` time series and reduce over the last (time) axis.
* ``std`` is the population standard deviation (``ddof = 0``).
* Public functions are wrapped in ``jax.jit`` (compiled once per input shape/dtype; ``alpha``,
  ``risk_aversion``, ``temperature`` and ``threshold`` are traced, so changing them never
  recompiles; ``turnover``'s flags are static). They inline when called inside another jit,
  vmap and grad. :func:`oce` is not jitted because its ``loss_fn`` is a Python callable.

Empirical tail definitions (``n`` samples, sorted DESCENDING ``L_(1) >= L_(2) >= ... >= L_(n)``)
-----------------------------------------------------------------------------------------------
* ``VaR_α(L) = L_(k)``, ``k = floor(n·α) + 1`` (clipped to ``[1, n]``). This is the usual
  lower ``(1−α)``-quantile ``q⁻_{1−α}(L) = inf{ℓ : P̂(L <= ℓ) >= 1 − α}``, i.e. the smallest
  sample level ``ℓ`` with ``P̂(L > ℓ) <= α`` (at most α of the empirical mass lies above it):
  n = 10, α = 0.1 gives the second largest loss. ``n·α`` within a few ulps of an integer is
  snapped to it, so ``α = 0.05`` (not exactly representable) with ``n = 100`` gives ``k = 6``.
* ``ES_α(L) = (1/α) ∫_{1−α}^{1} q_u(L) du`` evaluated EXACTLY on the empirical distribution:
  with ``m = n·α`` the weights are ``w_j = clip(m − (j − 1), 0, 1) / m`` for rank ``j``, i.e. the
  top ``floor(m)`` samples get ``1/m`` each, the next one gets ``(m − floor(m))/m``, the rest 0
  (Acerbi–Tasche). ``ES_1 = mean``; for ``m < 1`` the worst sample gets all the weight
  (``ES = max``). ``α → 0`` gives the maximum too (``α`` is floored at a tiny positive number).
  ``ES_α = min_w { w + E[(L − w)⁺]/α }`` (Rockafellar–Uryasev), see
  :func:`cvar_rockafellar_uryasev`.
"""
from __future__ import annotations

from functools import partial
from typing import Callable

import jax
import jax.numpy as jnp
from jax import lax

Array = jax.Array

__all__ = [
    "mean",
    "std",
    "rmse",
    "shortfall",
    "shortfall_probability",
    "smooth_shortfall_probability",
    "value_at_risk",
    "expected_shortfall",
    "es_shortfall",
    "cvar_rockafellar_uryasev",
    "entropic_risk",
    "entropic_indifference_price",
    "oce",
    "turnover",
    "max_drawdown",
    "hedge_metrics",
    "HEDGE_METRIC_KEYS",
]

#: Keys of :func:`hedge_metrics`, in table order (the CLI table and results.json use them).
HEDGE_METRIC_KEYS = (
    "mean_pnl",
    "std_pnl",
    "rmse",
    "shortfall_prob",
    "var_5",
    "es_5",
    "es_10",
    "var_loss_5",
    "es_loss_1",
    "es_loss_5",
    "es_loss_10",
    "entropic_1",
    "mean_cost",
    "turnover",
)


# ----------------------------------------------------------------------------- helpers
def _as_float(x) -> Array:
    """``x`` as a floating jnp array (dtype kept if already floating, else default float)."""
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.result_type(float))
    return x


def _param(p, dtype) -> Array:
    """A scalar / per-batch parameter as an array of ``dtype`` with a trailing sample axis."""
    return jnp.asarray(p, dtype=dtype)[..., None]


def _sorted_desc(x: Array) -> Array:
    return jnp.flip(jnp.sort(x, axis=-1), axis=-1)


def _tail_mass(n: int, alpha: Array) -> Array:
    """``m = n·α`` with α clipped to (tiny, 1] and snapped to an integer when within a few ulps."""
    dtype = alpha.dtype
    tiny = jnp.asarray(jnp.finfo(dtype).tiny, dtype)
    m = n * jnp.clip(alpha, tiny, 1.0)
    r = jnp.round(m)
    tol = 8.0 * jnp.finfo(dtype).eps * jnp.maximum(r, 1.0)
    return jnp.where((jnp.abs(m - r) <= tol) & (r >= 1), r, m)


# ----------------------------------------------------------------------------- moments
@jax.jit
def mean(x) -> Array:
    """Sample mean over the last axis: ``(..., n) -> (...)``.

    >>> float(mean(jnp.array([1.0, 2.0, 6.0])))
    3.0
    """
    return jnp.mean(_as_float(x), axis=-1)


@jax.jit
def std(x) -> Array:
    """Population standard deviation (``ddof = 0``) over the last axis: ``(..., n) -> (...)``.

    >>> float(std(jnp.array([1.0, 3.0])))
    1.0
    """
    return jnp.std(_as_float(x), axis=-1)


@jax.jit
def rmse(pnl) -> Array:
    """Hedging RMSE ``sqrt(mean(Π_T²))`` over the last axis: ``(..., n) -> (...)``.

    >>> float(rmse(jnp.array([3.0, -3.0])))
    3.0
    """
    x = _as_float(pnl)
    return jnp.sqrt(jnp.mean(x * x, axis=-1))


# ----------------------------------------------------------------------------- shortfall
@jax.jit
def shortfall(pnl) -> Array:
    """Elementwise shortfall ``SF = max(0, −Π)``; same shape as ``pnl``.

    >>> shortfall(jnp.array([-2.0, 1.0])).tolist()
    [2.0, 0.0]
    """
    x = _as_float(pnl)
    return jnp.maximum(-x, jnp.zeros((), x.dtype))


@jax.jit
def shortfall_probability(pnl) -> Array:
    """Empirical ``P(Π_T < 0) = mean(pnl < 0)`` over the last axis: ``(..., n) -> (...)``.

    >>> float(shortfall_probability(jnp.array([-1.0, 0.0, 2.0, -3.0])))
    0.5
    """
    x = _as_float(pnl)
    return jnp.mean((x < 0).astype(x.dtype), axis=-1)


@jax.jit
def smooth_shortfall_probability(pnl, temperature) -> Array:
    """Differentiable surrogate ``mean(sigmoid(−Π / temperature))``: ``(..., n) -> (...)``.

    ``temperature > 0`` is in P&L units (sharpness ``k = 1/temperature``); as
    ``temperature → 0`` it tends to ``mean(Π < 0) + ½·mean(Π = 0)``. ``temperature`` may be
    a scalar or broadcast against the batch shape ``...``.

    >>> float(smooth_shortfall_probability(jnp.array([0.0, 0.0]), 1.0))
    0.5
    """
    x = _as_float(pnl)
    t = _param(temperature, x.dtype)
    return jnp.mean(jax.nn.sigmoid(-x / t), axis=-1)


# ----------------------------------------------------------------------------- VaR / ES
@jax.jit
def value_at_risk(losses, alpha) -> Array:
    """Empirical VaR at tail probability ``alpha`` of a LOSS sample: ``(..., n) -> (...)``.

    ``VaR_α = L_(k)`` with the sample sorted descending and ``k = floor(n·α) + 1`` clipped to
    ``[1, n]`` — the usual lower ``(1−α)``-quantile ``inf{ℓ : P̂(L <= ℓ) >= 1 − α}``, i.e. the
    smallest sample level that at most ``n·α`` samples exceed (see the module
    docstring for the exact convention and the integer snapping of ``n·α``). ``alpha`` may be
    traced and may broadcast against ``...``. Pass ``−pnl`` for the loss, or
    ``shortfall(pnl)`` for the shortfall.

    >>> L = jnp.arange(1.0, 11.0)            # 10 samples, worst = 10
    >>> float(value_at_risk(L, 0.1)), float(value_at_risk(L, 0.25)), float(value_at_risk(L, 1.0))
    (9.0, 8.0, 1.0)
    """
    x = _as_float(losses)
    n = x.shape[-1]
    a = _param(alpha, x.dtype)
    k = jnp.clip(jnp.floor(_tail_mass(n, a)) + 1, 1, n)  # (..., 1)
    ranks = jnp.arange(1, n + 1, dtype=x.dtype)
    xs = _sorted_desc(x)
    return jnp.sum(jnp.where(ranks == k, xs, jnp.zeros((), x.dtype)), axis=-1)


def _es_weights(n: int, alpha: Array) -> Array:
    """Acerbi–Tasche weights on the descending-sorted sample; shape (..., n), sums to 1."""
    m = _tail_mass(n, alpha)  # (..., 1)
    ranks0 = jnp.arange(n, dtype=alpha.dtype)  # j − 1
    return jnp.clip(m - ranks0, 0.0, 1.0) / m


@jax.jit
def expected_shortfall(losses, alpha) -> Array:
    """Empirical expected shortfall (CVaR) of a LOSS sample: ``(..., n) -> (...)``.

    ``ES_α = (1/α) ∫_{1−α}^{1} VaR_u du`` on the empirical distribution, exactly: sort
    descending, the top ``floor(nα)`` samples get weight ``1/(nα)``, the next one
    ``(nα − floor(nα))/(nα)``. Mean of the worst ``α`` fraction with a fractional last sample;
    ``ES_1 = mean``; ``nα <= 1`` gives the maximum. Jittable with ``alpha`` traced (no
    recompilation per alpha), differentiable in ``losses`` (subgradient through the sort).

    >>> L = jnp.arange(1.0, 11.0)
    >>> float(expected_shortfall(L, 0.05)), float(expected_shortfall(L, 0.2))  # nα = 0.5, 2
    (10.0, 9.5)
    >>> round(float(expected_shortfall(L, 0.25)), 5)  # nα = 2.5: (10 + 9 + 0.5·8) / 2.5
    9.2
    """
    x = _as_float(losses)
    n = x.shape[-1]
    w = _es_weights(n, _param(alpha, x.dtype))
    xs = _sorted_desc(x)
    # where(): a +-inf sample outside the tail must not turn 0·inf into nan.
    return jnp.sum(jnp.where(w > 0, w * xs, jnp.zeros((), x.dtype)), axis=-1)


@jax.jit
def es_shortfall(pnl, alpha) -> Array:
    """ES of the shortfall: ``expected_shortfall(max(0, −pnl), alpha)``; ``(..., n) -> (...)``.

    The "ES 5 % / 10 % of the shortfall" of the papers' tables (mean of the worst α of SF_T).

    >>> float(es_shortfall(jnp.array([-4.0, 1.0, 2.0, 3.0]), 0.5))
    2.0
    """
    return expected_shortfall(shortfall(pnl), alpha)


@jax.jit
def cvar_rockafellar_uryasev(pnl, threshold, alpha) -> Array:
    """Rockafellar–Uryasev objective ``w + E[(L − w)⁺]/α`` with ``L = −pnl``: ``(..., n) -> (...)``.

    ``threshold`` (``w``, a learnable scalar or one per batch row) is the VaR estimate.
    The function is convex and piecewise linear in ``w`` and its minimum over ``w`` equals
    :func:`expected_shortfall` ``(−pnl, alpha)`` exactly (attained for ``w`` in the
    ``[q⁻_{1−α}, q⁺_{1−α}]`` quantile interval, e.g. at ``value_at_risk``). Deep hedging
    minimises it jointly over the hedge and ``w``.

    >>> float(cvar_rockafellar_uryasev(-jnp.arange(1.0, 11.0), 9.0, 0.2))
    9.5
    """
    x = _as_float(pnl)
    w = _param(threshold, x.dtype)
    a = _param(alpha, x.dtype)
    excess = jnp.mean(jnp.maximum(-x - w, jnp.zeros((), x.dtype)), axis=-1, keepdims=True)
    return (w + excess / a)[..., 0]


# ----------------------------------------------------------------------------- entropic / OCE
@jax.jit
def entropic_risk(pnl, risk_aversion) -> Array:
    """Entropic risk ``ρ_λ(X) = (1/λ) log E[exp(−λ X)]`` of a P&L sample: ``(..., n) -> (...)``.

    Computed as ``−min X + (1/λ) log mean exp(−λ (X − min X))`` (a log-sum-exp shift, so
    ``|λX| ~ 1e4`` is finite and exact); when the mean of the exponentials is above ½ (small
    ``λ·spread``) the log is taken as ``log1p(mean(expm1(·)))`` so the ``λ → 0`` limit
    ``−mean X`` is accurate too. ``λ = 0`` returns ``−mean X``; ``λ < 0`` is not supported. ``λ > 0`` is risk-averse:
    ``−mean X <= ρ_λ <= −min X``, increasing in ``λ``; ``ρ(X + c) = ρ(X) − c``. ``λ`` may be
    traced and broadcast against ``...``. ``ρ`` is the cash amount that makes the position
    acceptable (the deep-hedging indifference price when ``X`` excludes the premium).

    >>> round(float(entropic_risk(jnp.array([0.0, 0.0]), 1.0)), 6)
    0.0
    """
    x = _as_float(pnl)
    lam = _param(risk_aversion, x.dtype)
    zero = jnp.zeros((), x.dtype)
    xmin = jnp.min(x, axis=-1, keepdims=True)
    d = x - xmin  # >= 0
    safe_lam = jnp.where(lam == 0, jnp.ones((), x.dtype), lam)
    z = -safe_lam * d  # <= 0 for lam > 0
    m_exp = jnp.mean(jnp.exp(z), axis=-1, keepdims=True)
    m_expm1 = jnp.mean(jnp.expm1(z), axis=-1, keepdims=True)
    # both branches finite (m_exp >= 1/n; the clamp only touches the unselected branch) so the
    # where() has no nan gradient.
    log_mean = jnp.where(m_exp < 0.5, jnp.log(m_exp), jnp.log1p(jnp.maximum(m_expm1, -0.75)))
    rho = -xmin + log_mean / safe_lam
    rho = jnp.where(lam == 0, -jnp.mean(x, axis=-1, keepdims=True) + zero, rho)
    return rho[..., 0]


@jax.jit
def entropic_indifference_price(pnl_ex_premium, risk_aversion, baseline_pnl=None) -> Array:
    """Entropic indifference (ask) price of a short claim: ``(..., n) -> (...)``.

    ``pnl_ex_premium`` is the hedged terminal P&L of the short claim *without* the premium
    (``V_T − h(S_T)`` started from ``V_0 = 0``). The price is the cash ``p`` making the seller
    indifferent, ``ρ(X + p) = ρ(baseline)``, i.e. ``ρ(X) − ρ(baseline)`` by translation
    invariance; ``baseline_pnl = None`` means no position (``ρ = 0``).

    >>> float(entropic_indifference_price(jnp.array([-2.0, -2.0]), 1.0))
    2.0
    """
    p = entropic_risk(pnl_ex_premium, risk_aversion)
    if baseline_pnl is not None:
        p = p - entropic_risk(baseline_pnl, risk_aversion)
    return p


def oce(pnl, threshold, loss_fn: Callable[[Array], Array]) -> Array:
    """Optimized-certainty-equivalent objective ``w + E[ℓ(−X − w)]``: ``(..., n) -> (...)``.

    ``loss_fn`` ``ℓ`` is convex, increasing, with ``ℓ(0) = 0``; ``threshold`` ``w`` is learned.
    The OCE risk is the minimum over ``w``. ``ℓ(x) = max(x, 0)/α`` gives ES_α
    (:func:`cvar_rockafellar_uryasev`); ``ℓ(x) = (exp(λx) − 1)/λ`` gives
    :func:`entropic_risk` (minimiser ``w* = ρ_λ``).

    >>> float(oce(jnp.array([-1.0, 1.0]), 0.0, lambda u: jnp.maximum(u, 0.0)))
    0.5
    """
    x = _as_float(pnl)
    w = _param(threshold, x.dtype)
    return (w + jnp.mean(loss_fn(-x - w), axis=-1, keepdims=True))[..., 0]


# ----------------------------------------------------------------------------- paths
@partial(jax.jit, static_argnames=("include_entry", "include_unwind"))
def turnover(positions, include_entry: bool = True, include_unwind: bool = True) -> Array:
    """Total traded quantity ``Σ|Δu|`` of a hedge path: ``(..., n_steps) -> (...)``.

    ``positions[..., t] = u_t`` for ``t = 0 .. N−1`` (the holding over ``(t, t+1]``, decided at
    ``t``). ``turnover = [|u_0|] + Σ_{t=0}^{N−2} |u_{t+1} − u_t| + [|u_{N−1}|]`` where the
    bracketed terms are the entry trade from 0 (``include_entry``) and the unwind to 0 at ``T``
    (``include_unwind``). The flags are static Python bools. Turnover is in shares; multiply by
    price and ε yourself for proportional cost.

    >>> float(turnover(jnp.array([0.5, 1.0, 0.25])))
    2.0
    >>> float(turnover(jnp.array([0.5, 1.0, 0.25]), include_unwind=False))
    1.75
    """
    u = _as_float(positions)
    total = jnp.sum(jnp.abs(jnp.diff(u, axis=-1)), axis=-1)
    if include_entry:
        total = total + jnp.abs(u[..., 0])
    if include_unwind:
        total = total + jnp.abs(u[..., -1])
    return total


@jax.jit
def max_drawdown(values) -> Array:
    """Maximum drawdown of a value path: ``(..., n_steps + 1) -> (...)``.

    ``max_t (max_{s<=t} V_s − V_t)`` in money units (absolute, not relative; >= 0).

    >>> float(max_drawdown(jnp.array([1.0, 3.0, 2.0, 4.0, 0.5, 1.0])))
    3.5
    """
    v = _as_float(values)
    running_max = lax.cummax(v, axis=v.ndim - 1)
    return jnp.max(running_max - v, axis=-1)


# ----------------------------------------------------------------------------- summary
@jax.jit
def _hedge_metric_values(pnl, cost, turn) -> tuple[Array, ...]:
    """The values of :func:`hedge_metrics` as a tuple in ``HEDGE_METRIC_KEYS`` order."""
    x = _as_float(pnl)
    loss = -x
    sf = shortfall(x)
    nan = jnp.full(x.shape[:-1], jnp.nan, x.dtype)
    return (
        mean(x),  # mean_pnl
        std(x),  # std_pnl
        rmse(x),  # rmse
        shortfall_probability(x),  # shortfall_prob
        value_at_risk(sf, 0.05),  # var_5
        expected_shortfall(sf, 0.05),  # es_5
        expected_shortfall(sf, 0.10),  # es_10
        value_at_risk(loss, 0.05),  # var_loss_5
        expected_shortfall(loss, 0.01),  # es_loss_1
        expected_shortfall(loss, 0.05),  # es_loss_5
        expected_shortfall(loss, 0.10),  # es_loss_10
        entropic_risk(x, 1.0),  # entropic_1
        nan if cost is None else mean(cost).astype(x.dtype),  # mean_cost
        nan if turn is None else mean(turn).astype(x.dtype),  # turnover
    )


def hedge_metrics(pnl, cost=None, turnover=None) -> dict[str, Array]:  # noqa: A002
    """Standard metric dict of a hedging experiment, keys exactly :data:`HEDGE_METRIC_KEYS`.

    Inputs are per-path arrays of shape ``(..., n)`` (``n`` paths): ``pnl`` = ``Π_T``,
    ``cost`` = total transaction cost of each path (entry included, per contract),
    ``turnover`` = per-path turnover (e.g. from :func:`turnover`). Every value has shape
    ``(...)`` and ``pnl``'s float dtype. ``cost`` / ``turnover`` = ``None`` gives NaN for
    ``mean_cost`` / ``turnover``.

    * ``mean_pnl``, ``std_pnl`` (ddof 0), ``rmse`` = sqrt(mean Π²), ``shortfall_prob`` = P(Π<0)
    * ``var_5`` = VaR_5% of the shortfall SF; ``es_5``, ``es_10`` = ES_5%/10% of SF
    * ``var_loss_5`` = VaR_5% of L = −Π; ``es_loss_1``, ``es_loss_5``, ``es_loss_10`` = ES of L
    * ``entropic_1`` = entropic risk of Π with λ = 1
    * ``mean_cost`` = mean per-path cost; ``turnover`` = mean per-path turnover

    Called eagerly the dict is in table order (the computation itself is one compiled call).
    If you wrap it in your own ``jax.jit`` / ``vmap``, JAX returns dicts with SORTED keys;
    iterate over :data:`HEDGE_METRIC_KEYS` for table order.

    >>> list(hedge_metrics(jnp.array([1.0, -1.0]))) == list(HEDGE_METRIC_KEYS)
    True
    """
    return dict(zip(HEDGE_METRIC_KEYS, _hedge_metric_values(pnl, cost, turnover)))
