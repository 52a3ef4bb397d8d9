"""Classic QLBS (Halperin): dynamic programming (DP) and fitted Q iteration (FQI).

Implements METHODS.md §4.4 ("Classic QLBS — Halperin") vectorised over Monte-Carlo paths:

* GBM paths from :func:`jaxhedge.markets.gbm.simulate` (exact step, real-world drift μ,
  METHODS §1), simulated from an explicit ``jax.random`` key; the payoff is
  :func:`jaxhedge.ledger.payoff`.
* State X_t = log S_t − (μ − σ²/2) t Δt, one cubic B-spline basis (12 functions) shared by
  every t, built on 12 evenly spaced sites τ_0..τ_11 spanning [min X, max X] over all paths
  and all t, knots = 4×τ_0, averages of τ_{j+1..j+3} (j = 0..7), 4×τ_11; evaluated with the
  Cox–de Boor recursion (the right end point τ_11 belongs to the last interval, so
  Σ_n Φ_n(x) = 1 on the closed interval [τ_0, τ_11]).
* DP backward for t = N−1..0 (one ``lax.scan`` over reversed time):
  a_t = Φ(X_t)ᵀ A_t⁻¹ B_t with A = Σ_k ΦΦᵀ (ΔŜ_t)² + 1e−3 I and
  B = Σ_k Φ [Π̂_{t+1} ΔŜ_t (+ ΔS_t/(2γλ) unless ``risk_hedge_pure``)];
  Π_t = γ(Π_{t+1} − a_t ΔS_t); V_t = cross-path variance of Π_t (one number per t);
  R_t = γ a_t ΔS_t − λ V_t; Q_N = −Π_N − λ V_N;
  ω_t = (Σ_k ΦΦᵀ + 1e−3 I)⁻¹ Σ_k Φ (R_t + γ Q_{t+1}), Q_t = ω_tᵀ Φ(X_t).
  Price = −Q_0 (X_0 is the same on every path, so Q_0 is one number; we average the fitted
  values, which are equal).
* FQI on the same paths: behaviour actions a*_t(X_t)·u, u ~ U[1−η, 1+η] per path and step;
  Π, V, R rebuilt with those actions; features (1, a, a²/2) ⊗ Φ (36), ridge 1e−3,
  target R_t + γ Q*_{t+1} where Q*_{t+1} is the previous fit evaluated at the DP hedge
  a*_{t+1} (Q*_N = −Π_N − λ V_N, the same payoff for both policies);
  Q*_t = U_0 + a*_t U_1 + ½ a*_t² U_2 (never the Q-implied argmax −U_1/U_2);
  price = −mean_k Q*_0.

Sums (not means) over paths enter the normal equations, so the 1e−3 ridge is exactly the
spec's (its effect is relative to the number of paths).

The portfolio. Π_t = γ(Π_{t+1} − a_t ΔS_t) stays in closed form, backward, because it is
the DP's regression target; it is the self-financing ledger run backward (no costs, cash at
r): ``ledger.replay`` of the hedges a_t from premium Π_0 marks to Π_t at every date and ends
at h(S_N) (tested), so the one-ledger rule of :mod:`jaxhedge.ledger` holds.

Precision. Everything runs in JAX's default float dtype: float32 unless
``jax.enable_x64(True)`` is active, in which case parameters are promoted and the whole
computation, linear solves included, runs in float64 (``solver='auto'`` then forms the
spec's Gram matrices and calls ``jnp.linalg.solve``). float32 is poor for the normal
equations: at t = 0 every path has the same X_0, so Σ_k ΦΦᵀ is rank one and the 1e−3 ridge
sits at the float32 resolution of its entries, so LU can meet a zero pivot (NaN price).
``solver='auto'`` therefore uses, in float32 only, the same ridge solution computed from a
QR factorisation of the ridge-augmented design [F; √1e−3·I] (no Gram matrix formed). Paths
are always simulated in float32 and then promoted, so one key gives the same paths in both
precisions and they can be compared seed by seed.

Known properties of the method as specified (not bugs): (i) on the few extreme paths at
late t an edge spline is supported by a handful of paths and the 1e−3 ridge barely binds,
so a few hedges are wild; (ii) V_t is the unconditional cross-path variance, which is not
invariant under adding the replicable S_t − γ^{N−t}K, so QLBS call and put prices do not
satisfy put–call parity; (iii) the non-pure hedge (keeping ΔS/(2γλ) with λ = 0.001) gives
nonsense prices, as the spec warns. Measured values of all three, of the float32/float64
agreement and of the reference prices: ``docs/qlbs.md``.

Shapes: ``qlbs_price(key, config, params)`` returns a :class:`QLBSResult` with ``spot``
(n_paths, n_steps + 1), ``hedges`` (n_paths, n_steps), ``pi`` (n_paths, n_steps + 1),
``variances`` (n_steps + 1,), ``q0`` (n_paths,) and scalar ``price``:

>>> r = qlbs_price(jax.random.key(0), QLBSConfig(n_paths=200, n_steps=3), QLBSParams())
>>> r.spot.shape, r.hedges.shape, r.pi.shape, r.variances.shape, r.price.shape
((200, 4), (200, 3), (200, 4), (4,), ())

Everything is a pure function of the key; ``config`` (:class:`QLBSConfig`) is static
(hashable frozen dataclass, defines shapes) and ``params`` (:class:`QLBSParams`) is a
dynamic pytree, so changing prices/vols/λ does not retrace.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Literal

import jax
import jax.numpy as jnp
from flax import struct

from jaxhedge import ledger
from jaxhedge.markets import gbm
from jaxhedge.pricing import bs_price

__all__ = [
    "QLBSConfig",
    "QLBSParams",
    "QLBSResult",
    "bspline_knots",
    "bspline_basis",
    "state_variable",
    "black_scholes_price",
    "qlbs_price",
    "qlbs_price_multi",
]

RIDGE = 1e-3  # METHODS §4.4: ridge on both the hedge and the Q normal equations.


@dataclasses.dataclass(frozen=True)
class QLBSConfig:
    """Static (shape-defining / branch-selecting) configuration.

    Attributes:
      n_paths: Monte-Carlo paths.
      n_steps: hedging steps N (Δt = maturity / N).
      n_basis: number of B-spline functions (12 in the spec).
      spline_degree: B-spline degree (3 = cubic, the spec's choice).
      option: 'put' or 'call'.
      method: 'dp' (dynamic programming) or 'fqi' (fitted Q iteration).
      risk_hedge_pure: drop the ΔS/(2γλ) term from B (the spec's reference setting).
      solver: how the ridge normal equations are solved. 'normal': form the Gram matrices
        (sums over paths) and ``jnp.linalg.solve`` — the spec's formulation. 'qr': the
        same solution via QR of the ridge-augmented design (stable in float32). 'auto'
        (default): 'normal' in float64, 'qr' in float32.
    """

    n_paths: int = 10_000
    n_steps: int = 24
    n_basis: int = 12
    spline_degree: int = 3
    option: Literal["put", "call"] = "put"
    method: Literal["dp", "fqi"] = "dp"
    risk_hedge_pure: bool = True
    solver: Literal["auto", "normal", "qr"] = "auto"

    def __post_init__(self):
        if self.solver not in ("auto", "normal", "qr"):
            raise ValueError(f"solver must be 'auto', 'normal' or 'qr', got {self.solver!r}")
        if self.option not in ("put", "call"):
            raise ValueError(f"option must be 'put' or 'call', got {self.option!r}")
        if self.method not in ("dp", "fqi"):
            raise ValueError(f"method must be 'dp' or 'fqi', got {self.method!r}")
        if self.n_basis < self.spline_degree + 1:
            raise ValueError("n_basis must be >= spline_degree + 1")
        if self.n_steps < 1 or self.n_paths < 2:
            raise ValueError("need n_steps >= 1 and n_paths >= 2")


@struct.dataclass
class QLBSParams:
    """Dynamic parameters (a pytree of scalars; vmappable, no retrace when changed).

    Attributes:
      s0: spot at t = 0.  strike: K.  mu: real-world drift.  sigma: GBM volatility.
      rate: continuously compounded risk-free rate r.  maturity: T in years.
      risk_aversion: λ.  fqi_eta: η of the FQI behaviour noise u ~ U[1−η, 1+η].
    """

    s0: float = 100.0
    strike: float = 100.0
    mu: float = 0.05
    sigma: float = 0.15
    rate: float = 0.03
    maturity: float = 1.0
    risk_aversion: float = 0.001
    fqi_eta: float = 0.5


@struct.dataclass
class QLBSResult:
    """Output of :func:`qlbs_price` (path-major arrays).

    Attributes:
      price: the QLBS price (−Q_0 for DP, −mean Q*_0 for FQI).
      q0: (n_paths,) fitted Q_0 (DP) or Q*_0 at the DP hedge (FQI) on every path.
      hedges: (n_paths, n_steps) DP optimal hedge a*_t(X_t).
      pi: (n_paths, n_steps + 1) hedge-portfolio value Π_t under the DP hedge.
      variances: (n_steps + 1,) V_t, cross-path variance of Π_t.
      check: built-in check mean Π_0 + λ Σ_{t=0..N} γ^t V_t (≈ −Q_0 of the DP).
      bs_price: Black–Scholes price at (s0, strike, rate, sigma, maturity).
      dp_price: the DP price on the same paths (equals ``price`` for method='dp').
      behaviour_hedges: (n_paths, n_steps) FQI behaviour actions a*_t u_t
        (equal to ``hedges`` for method='dp').
      spot: (n_paths, n_steps + 1) the simulated GBM paths.
      knots: (n_basis + degree + 1,) the B-spline knot vector used.
    """

    price: jax.Array
    q0: jax.Array
    hedges: jax.Array
    pi: jax.Array
    variances: jax.Array
    check: jax.Array
    bs_price: jax.Array
    dp_price: jax.Array
    behaviour_hedges: jax.Array
    spot: jax.Array
    knots: jax.Array


# --------------------------------------------------------------------------------------
# B-spline basis
# --------------------------------------------------------------------------------------


def bspline_knots(x_min, x_max, n_basis: int = 12, degree: int = 3) -> jax.Array:
    """Knot vector of METHODS §4.4 (clamped, de Boor averaging of evenly spaced sites).

    Sites τ_0..τ_{n−1} evenly spaced on [x_min, x_max]; knots = (degree+1)×τ_0, then the
    averages of τ_{j+1..j+degree} for j = 0..n−degree−2, then (degree+1)×τ_{n−1}. For the
    cubic 12-function case: 4 + 8 + 4 = 16 knots.
    """
    tau = jnp.linspace(x_min, x_max, n_basis)
    n_inner = n_basis - degree - 1
    inner = jnp.stack(
        [jnp.mean(tau[j + 1 : j + 1 + degree]) for j in range(n_inner)]
    ) if n_inner > 0 else jnp.zeros((0,), tau.dtype)
    return jnp.concatenate(
        [jnp.repeat(tau[:1], degree + 1), inner, jnp.repeat(tau[-1:], degree + 1)]
    )


def bspline_basis(x: jax.Array, knots: jax.Array, degree: int = 3) -> jax.Array:
    """All B-spline basis functions at ``x`` by the Cox–de Boor recursion.

    Returns an array of shape ``x.shape + (len(knots) − degree − 1,)``. Each x is assigned
    to one knot interval [t_i, t_{i+1}) with i clamped to [degree, n_basis − 1], so the
    right end point t_{n_basis} = τ_last belongs to the last interval (non-zero basis value
    there, Σ Φ = 1 on the closed range) and points outside the range get the polynomial
    extension of the first/last piece (as scipy's ``BSpline(extrapolate=True)``).
    0/0 terms from repeated knots are taken as 0.
    """
    x = jnp.asarray(x)
    knots = jnp.asarray(knots, dtype=x.dtype)
    n_knots = knots.shape[0]
    n_basis = n_knots - degree - 1
    idx = jnp.searchsorted(knots, x, side="right") - 1
    idx = jnp.clip(idx, degree, n_basis - 1)
    xe = x[..., None]
    # Degree 0: indicator of the (clamped) interval, n_knots − 1 functions.
    b = (jnp.arange(n_knots - 1) == idx[..., None]).astype(x.dtype)
    for k in range(1, degree + 1):
        n_k = n_knots - 1 - k
        t_i = knots[:n_k]
        t_ik = knots[k : k + n_k]
        t_i1 = knots[1 : 1 + n_k]
        t_ik1 = knots[k + 1 : k + 1 + n_k]
        d1 = t_ik - t_i
        d2 = t_ik1 - t_i1
        w1 = jnp.where(d1 > 0, (xe - t_i) / jnp.where(d1 > 0, d1, 1.0), 0.0)
        w2 = jnp.where(d2 > 0, (t_ik1 - xe) / jnp.where(d2 > 0, d2, 1.0), 0.0)
        b = w1 * b[..., :n_k] + w2 * b[..., 1 : n_k + 1]
    return b


# --------------------------------------------------------------------------------------
# Market and reference price
# --------------------------------------------------------------------------------------


def _float_dtype():
    # float64 under enable_x64, else float32 (no truncation warning).
    return jax.dtypes.canonicalize_dtype(jnp.float64)


def _cast_params(params: QLBSParams) -> QLBSParams:
    dt = _float_dtype()
    return jax.tree_util.tree_map(lambda v: jnp.asarray(v, dtype=dt), params)


def _simulate_paths(key, params: QLBSParams, n_paths: int, n_steps: int) -> jax.Array:
    """GBM spot paths from :func:`jaxhedge.markets.gbm.simulate`; shape (n_paths, n_steps + 1).

    Simulated in float32 and then promoted, so a key gives the same paths (up to the
    promotion) in float32 and float64 and the two precisions can be compared seed by seed.
    """
    f32 = lambda v: jnp.asarray(v, jnp.float32)  # noqa: E731
    market = gbm.GBMParams(s0=f32(params.s0), mu=f32(params.mu), sigma=f32(params.sigma))
    paths = gbm.simulate(key, market, n_paths, n_steps, f32(params.maturity) / n_steps)
    return paths.spot.astype(_float_dtype())


def state_variable(spot: jax.Array, params: QLBSParams) -> jax.Array:
    """X_t = log S_t − (μ − σ²/2) t Δt for spot of shape (n_paths, n_steps + 1)."""
    p = _cast_params(params)
    n_steps = spot.shape[-1] - 1
    t_years = jnp.arange(n_steps + 1, dtype=spot.dtype) * (p.maturity / n_steps)
    return jnp.log(spot) - (p.mu - 0.5 * p.sigma**2) * t_years


def black_scholes_price(params: QLBSParams, option: str = "put") -> jax.Array:
    """Black–Scholes price of the European option (reference only)."""
    p = _cast_params(params)
    return bs_price(p.s0, p.strike, p.maturity, p.rate, p.sigma, 0.0, option == "call")


def _use_qr(solver: str, dtype) -> bool:
    if solver == "auto":
        return jnp.dtype(dtype) != jnp.dtype(jnp.float64)
    return solver == "qr"


def _ridge_lstsq(design, y, extra=None, *, qr: bool):
    """Coefficients c of the ridge normal equations (FᵀF + 1e−3 I) c = Fᵀy (+ extra).

    ``design`` F is (P, M), ``y`` (P,), ``extra`` an optional (M,) addition to the right
    side. ``qr=False``: form the Gram matrix (sums over paths) and call jnp.linalg.solve
    (the spec's formulation; used in float64). ``qr=True``: the same solution from the QR
    factorisation of the augmented design [F; √1e−3·I] (so RᵀR = FᵀF + 1e−3 I without
    forming the Gram matrix and c = R⁻¹Qᵀ[y; 0] + R⁻¹R⁻ᵀ extra). It squares the condition
    number less, and it does not break down in float32 at t = 0, where every path has the
    same X_0 so FᵀF is rank one and the ridge is below float32 resolution of its entries
    (LU then meets a zero pivot and returns NaN).
    """
    m = design.shape[-1]
    eye = jnp.eye(m, dtype=design.dtype)
    if not qr:
        rhs = design.T @ y
        if extra is not None:
            rhs = rhs + extra
        return jnp.linalg.solve(design.T @ design + RIDGE * eye, rhs)
    aug = jnp.concatenate([design, jnp.sqrt(jnp.asarray(RIDGE, design.dtype)) * eye], 0)
    q_mat, r_mat = jnp.linalg.qr(aug, mode="reduced")
    y_aug = jnp.concatenate([y, jnp.zeros((m,), y.dtype)])
    coef = jax.scipy.linalg.solve_triangular(r_mat, q_mat.T @ y_aug, lower=False)
    if extra is not None:
        z = jax.scipy.linalg.solve_triangular(r_mat.T, extra, lower=True)
        coef = coef + jax.scipy.linalg.solve_triangular(r_mat, z, lower=False)
    return coef


# --------------------------------------------------------------------------------------
# DP and FQI backward recursions (time-major internally: arrays (n_steps[+1], n_paths))
# --------------------------------------------------------------------------------------


def _dp_backward(phi, d_s, pi_n, gamma, lam, pure: bool, qr: bool = False):
    """DP backward. phi (N+1, P, M), d_s (N, P), pi_n (P,). Returns a, pi, var, q."""
    n_steps = d_s.shape[0]
    var_n = jnp.var(pi_n)
    q_n = -pi_n - lam * var_n

    def step(carry, xs):
        pi_next, q_next = carry
        phi_t, ds_t = xs
        ds_hat = ds_t - jnp.mean(ds_t)
        pi_hat_next = pi_next - jnp.mean(pi_next)
        # A = Σ_k ΦΦᵀ ΔŜ² = FᵀF, B = Σ_k Φ Π̂_{t+1} ΔŜ (= Fᵀ Π̂_{t+1}) with F = ΔŜ·Φ.
        extra = None if pure else phi_t.T @ (ds_t / (2.0 * gamma * lam))
        coef = _ridge_lstsq(ds_hat[:, None] * phi_t, pi_hat_next, extra, qr=qr)
        a_t = phi_t @ coef
        pi_t = gamma * (pi_next - a_t * ds_t)
        var_t = jnp.var(pi_t)
        r_t = gamma * a_t * ds_t - lam * var_t
        y = r_t + gamma * q_next
        omega = _ridge_lstsq(phi_t, y, qr=qr)
        q_t = phi_t @ omega
        return (pi_t, q_t), (a_t, pi_t, var_t, q_t)

    (_, _), (a, pi, var, q) = jax.lax.scan(
        step, (pi_n, q_n), (phi[:n_steps], d_s), reverse=True
    )
    pi = jnp.concatenate([pi, pi_n[None]], axis=0)
    var = jnp.concatenate([var, var_n[None]], axis=0)
    q = jnp.concatenate([q, q_n[None]], axis=0)
    return a, pi, var, q


def _fqi_backward(phi, d_s, pi_n, a_star, u, gamma, lam, qr: bool = False):
    """FQI backward. a_star, u: (N, P). Returns Q*_t at the DP hedge, (N+1, P)."""
    n_steps, n_paths = d_s.shape
    n_basis = phi.shape[-1]
    q_n = -pi_n - lam * jnp.var(pi_n)
    a_beh = a_star * u

    def step(carry, xs):
        pi_next, qstar_next = carry
        phi_t, ds_t, ab_t, as_t = xs
        pi_t = gamma * (pi_next - ab_t * ds_t)
        var_t = jnp.var(pi_t)
        r_t = gamma * ab_t * ds_t - lam * var_t
        y = r_t + gamma * qstar_next
        psi = jnp.concatenate(
            [phi_t, ab_t[:, None] * phi_t, 0.5 * (ab_t**2)[:, None] * phi_t], axis=1
        )
        w = _ridge_lstsq(psi, y, qr=qr).reshape(3, n_basis)
        u_mat = phi_t @ w.T  # (P, 3): U_0, U_1, U_2 on each path
        qstar_t = u_mat[:, 0] + as_t * u_mat[:, 1] + 0.5 * as_t**2 * u_mat[:, 2]
        return (pi_t, qstar_t), qstar_t

    _, qstar = jax.lax.scan(
        step, (pi_n, q_n), (phi[:n_steps], d_s, a_beh, a_star), reverse=True
    )
    return jnp.concatenate([qstar, q_n[None]], axis=0), a_beh


def _qlbs_price_impl(key, config: QLBSConfig, params: QLBSParams) -> QLBSResult:
    p = _cast_params(params)
    dtype = _float_dtype()
    n, deg = config.n_steps, config.spline_degree
    dt = p.maturity / n
    gamma = jnp.exp(-p.rate * dt)
    lam = p.risk_aversion

    key_paths, key_u = jax.random.split(key)
    spot = _simulate_paths(key_paths, params, config.n_paths, n)  # (P, N+1)
    x = state_variable(spot, p)
    knots = bspline_knots(jnp.min(x), jnp.max(x), config.n_basis, deg)

    s_tm = spot.T  # (N+1, P)
    phi = bspline_basis(x.T, knots, deg)  # (N+1, P, M)
    d_s = s_tm[1:] - jnp.exp(p.rate * dt) * s_tm[:-1]  # (N, P)
    pi_n = ledger.payoff(s_tm[-1], p.strike, config.option == "call")

    qr = _use_qr(config.solver, dtype)
    a, pi, var, q = _dp_backward(phi, d_s, pi_n, gamma, lam, config.risk_hedge_pure, qr)
    dp_price = -jnp.mean(q[0])
    discounts = gamma ** jnp.arange(n + 1, dtype=dtype)
    check = jnp.mean(pi[0]) + lam * jnp.sum(discounts * var)

    if config.method == "fqi":
        u01 = jax.random.uniform(key_u, (n, config.n_paths), dtype=jnp.float32)
        u = (1.0 - p.fqi_eta) + 2.0 * p.fqi_eta * u01.astype(dtype)
        qstar, a_beh = _fqi_backward(phi, d_s, pi_n, a, u, gamma, lam, qr)
        q0 = qstar[0]
    else:
        a_beh = a
        q0 = q[0]

    return QLBSResult(
        price=-jnp.mean(q0),
        q0=q0,
        hedges=a.T,
        pi=pi.T,
        variances=var,
        check=check,
        bs_price=black_scholes_price(p, config.option),
        dp_price=dp_price,
        behaviour_hedges=a_beh.T,
        spot=spot,
        knots=knots,
    )


@functools.partial(jax.jit, static_argnames="config")
def qlbs_price(key, config: QLBSConfig, params: QLBSParams) -> QLBSResult:
    """QLBS price (DP or FQI per ``config.method``) on GBM paths simulated from ``key``.

    Jitted with ``config`` static; a second call with different ``params`` (same dtype)
    reuses the compiled code.
    """
    return _qlbs_price_impl(key, config, params)


@functools.partial(jax.jit, static_argnames="config")
def qlbs_price_multi(keys, config: QLBSConfig, params: QLBSParams) -> QLBSResult:
    """:func:`qlbs_price` over a batch of keys (leading axis of every field).

    Implemented with ``lax.map`` (one compiled body, seeds run one after another) rather
    than ``vmap``: batching gains nothing here (each seed already has 10⁴-path matmuls),
    and on XLA:CPU the vmapped QR solver path was seen to deadlock (docs/qlbs.md). Use ``jax.vmap(qlbs_price, (0, None, None))``
    yourself if you need vmap semantics.
    """
    return jax.lax.map(lambda k: _qlbs_price_impl(k, config, params), keys)
