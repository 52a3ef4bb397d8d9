"""Bounded nonlinear least squares for a handful of parameters (Levenberg–Marquardt).

Minimises ``sum(r(x)^2)`` over a box ``lo < x < hi`` (open) for ``p <= ~5`` parameters:

* The box is removed by the smooth map ``x = lo + (hi - lo) * sigmoid(z)``; LM runs on
  the unconstrained ``z``. ``z`` is clipped to ``[-Z_MAX, Z_MAX]`` so a parameter pushed
  against its bound keeps a (tiny) nonzero derivative and can come back.
* Each iteration: residual and Jacobian in one ``jax.jacfwd`` pass (``p`` forward tangents,
  cheaper than reverse mode for ``p`` << number of residuals), Marquardt-scaled damped
  normal equations ``(JᵀJ + λ·diag(JᵀJ)) δ = −Jᵀr`` (coordinates clipped at ±Z_MAX whose
  descent direction points outward are frozen for that step), one trial evaluation; accept if the
  loss decreases (λ ← λ/3) else reject (λ ← 4λ). The diagonal scaling makes the step
  invariant to the parameter scale, which matters because the sigmoid squashes the
  derivative near the bounds.
* A fixed number of iterations (``lax.fori_loop``) — jittable and vmappable, no host
  callbacks, no early exit (a converged run just keeps rejecting tiny steps).
* Multi-start: the solver is ``vmap``-ed over a small fixed set of starting points and
  the best final loss wins (Merton/Heston losses are multimodal); optionally the best
  scout is then polished alone for ``n_polish`` more iterations.

Masks: callers zero the residuals of padded quotes (``jnp.where(mask, r, 0)``), so a
padded slot contributes nothing to the loss or the Jacobian.

Shape contract: ``residual_fn(x: (p,)) -> (m,)``; ``starts: (n_starts, p)``;
``lo, hi: (p,)``. Returns an :class:`LSQResult` with ``x: (p,)``, ``loss: ()``.
Everything is per slice; vmap over slices outside.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
from flax import struct

__all__ = ["LSQResult", "to_box", "from_box", "levenberg_marquardt", "solve_box", "Z_MAX"]

Z_MAX = 12.0  # sigmoid(12) = 1 - 6e-6: bounds are reachable to ~1e-5 of the box width


@struct.dataclass
class LSQResult:
    """x: (p,) best parameters (natural units); loss: () its sum of squared residuals."""

    x: jax.Array
    loss: jax.Array


def to_box(z, lo, hi):
    """Unconstrained z -> x in the open box (lo, hi)."""
    return lo + (hi - lo) * jax.nn.sigmoid(jnp.clip(z, -Z_MAX, Z_MAX))


def from_box(x, lo, hi):
    """x in [lo, hi] -> z (clipped logit; starts on a bound map to +-Z_MAX)."""
    u = (x - lo) / (hi - lo)
    eps = jax.nn.sigmoid(-Z_MAX)
    u = jnp.clip(u, eps, 1.0 - eps)
    return jnp.log(u) - jnp.log1p(-u)


def _sse(r):
    return jnp.sum(r * r)


def levenberg_marquardt(residual_z: Callable, z0, n_iter: int, lam0: float = 1e-2):
    """LM on unconstrained ``z0 (p,)`` with a fixed ``n_iter``; returns (z, loss)."""
    dtype = z0.dtype
    p = z0.shape[0]

    def both(z):
        r = residual_z(z)
        return r, r

    jac = jax.jacfwd(both, has_aux=True)

    def clean(f):
        return jnp.where(jnp.isfinite(f), f, jnp.asarray(jnp.inf, dtype))

    def body(_, state):
        z, f, lam = state
        J, r = jac(z)
        J = jnp.where(jnp.isfinite(J), J, 0.0)
        r = jnp.where(jnp.isfinite(r), r, 0.0)
        g = J.T @ r
        H = J.T @ J
        d = jnp.diag(H)
        # Floor the scaling so a parameter with (numerically) no influence still gets a
        # well-posed, damped (hence tiny) step instead of a singular system.
        d = jnp.maximum(d, 1e-12 * jnp.max(d) + jnp.finfo(dtype).tiny)
        # Projected step: a coordinate sitting at the clip whose descent direction points
        # further out is frozen (its row/column decoupled), so the clip does not spoil the
        # step of the free coordinates (without this LM crawls along an active bound).
        active = (jnp.abs(z) >= Z_MAX * (1.0 - 1e-6)) & (jnp.sign(-g) == jnp.sign(z))
        free = ~active
        both_free = free[:, None] & free[None, :]
        eye = jnp.eye(p, dtype=dtype)
        H = jnp.where(both_free, H, 0.0) + jnp.where(active, 1.0, 0.0) * eye
        g = jnp.where(free, g, 0.0)
        A = H + lam * jnp.diag(d) + jnp.finfo(dtype).eps * jnp.max(d) * eye
        step = jnp.linalg.solve(A, -g)
        step = jnp.where(jnp.all(jnp.isfinite(step)), step, 0.0)
        z_new = jnp.clip(z + step, -Z_MAX, Z_MAX)
        f_new = clean(_sse(residual_z(z_new)))
        ok = f_new < f
        z = jnp.where(ok, z_new, z)
        f = jnp.where(ok, f_new, f)
        lam = jnp.clip(jnp.where(ok, lam / 3.0, lam * 4.0), 1e-10, 1e10)
        return z, f, lam

    f0 = clean(_sse(residual_z(z0)))
    z, f, _ = jax.lax.fori_loop(0, n_iter, body, (z0, f0, jnp.asarray(lam0, dtype)))
    return z, f


def solve_box(residual_fn: Callable, starts, lo, hi, n_iter: int,
              n_polish: int = 0) -> LSQResult:
    """Best-of-``starts`` bounded LM fit of ``residual_fn(x (p,)) -> (m,)``.

    Args:
      residual_fn: residuals in natural parameter units (padded entries already zeroed).
      starts: (n_starts, p) starting points inside [lo, hi].
      lo, hi: (p,) open box.
      n_iter: static iteration count per start ("scouting").
      n_polish: further iterations on the best scout only (0: none). Scouting all starts
        briefly and polishing one costs n_starts·n_iter + n_polish Jacobians instead of
        n_starts·(n_iter + n_polish): the expensive models (Heston) use it.
    """
    starts = jnp.atleast_2d(starts)
    dtype = starts.dtype
    lo = jnp.asarray(lo, dtype)
    hi = jnp.asarray(hi, dtype)
    residual_z = lambda z: residual_fn(to_box(z, lo, hi))
    z0 = from_box(starts, lo, hi)
    z, f = jax.vmap(lambda s: levenberg_marquardt(residual_z, s, n_iter))(z0)
    best = jnp.argmin(f)
    z_best, f_best = z[best], f[best]
    if n_polish > 0:
        z_pol, f_pol = levenberg_marquardt(residual_z, z_best, n_polish)
        keep = f_pol <= f_best  # LM never increases the loss; guard NaN anyway
        z_best = jnp.where(keep, z_pol, z_best)
        f_best = jnp.where(keep, f_pol, f_best)
    return LSQResult(x=to_box(z_best, lo, hi), loss=f_best)
