"""Adam with the authors' early-stopping rules, vmapped over slices (METHODS §5.4).

Per slice, epoch e = 0, 1, ... evaluates the loss L_e and its gradient at the current
parameters θ_e, then

* stops (θ_e is kept, e Adam updates were applied) when L_e < ``tol``, or when e > 100
  and L_e is not below ``factor`` × L_{e−100} (``patience`` = 100 epochs);
* otherwise applies one Adam update (``optax.adam(lr)``, PyTorch's defaults β = (0.9,
  0.999), ε = 1e−8), giving θ_{e+1};

and runs at most ``max_epochs`` updates. All slices advance together inside one
``lax.while_loop``; a stopped slice is frozen (its parameters and Adam state are masked
out of the update) and the loop ends when every slice has stopped. The last ``patience``
losses of each slice live in a ring buffer.

Shapes: ``theta0`` (n_slices, p); ``data`` a pytree of (n_slices, ...) arrays;
``loss_fn(theta (p,), data_slice) -> ()``. Returns (theta (n_slices, p), loss
(n_slices,) at the returned theta, n_updates (n_slices,) int32).
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import optax

__all__ = ["adam_early_stop"]


def adam_early_stop(loss_fn: Callable, theta0, data, lr, max_epochs: int, tol=1e-7,
                    patience: int = 100, factor=0.9):
    """Run the masked Adam loop described in the module doc (jittable; ``max_epochs`` and
    ``patience`` are Python ints)."""
    n = theta0.shape[0]
    dtype = theta0.dtype
    opt = optax.adam(lr)
    value_and_grad = jax.vmap(jax.value_and_grad(loss_fn))
    # one Adam state per slice, so a frozen slice's moments and count stay as they were
    state0 = jax.vmap(opt.init)(theta0)
    hist0 = jnp.full((n, patience), jnp.inf, dtype)

    def cond(carry):
        e, _, _, _, active, _ = carry
        return (e < max_epochs) & jnp.any(active)

    def body(carry):
        e, theta, state, hist, active, n_upd = carry
        loss, grad = value_and_grad(theta, data)
        slot = e % patience
        stop = (loss < tol) | ((e > patience) & ~(loss < factor * hist[:, slot]))
        stop = active & stop
        go = active & ~stop
        updates, new_state = jax.vmap(opt.update)(grad, state)
        keep = lambda new, old: jnp.where(go.reshape(go.shape + (1,) * (new.ndim - 1)),
                                          new, old)
        theta = keep(optax.apply_updates(theta, updates), theta)
        state = jax.tree.map(keep, new_state, state)
        hist = hist.at[:, slot].set(loss)
        n_upd = jnp.where(stop, e, n_upd)
        return e + 1, theta, state, hist, go, n_upd

    carry = (jnp.asarray(0, jnp.int32), theta0, state0, hist0, jnp.ones((n,), bool),
             jnp.zeros((n,), jnp.int32))
    e, theta, _, _, active, n_upd = jax.lax.while_loop(cond, body, carry)
    n_upd = jnp.where(active, e, n_upd)  # slices that ran out of epochs
    loss = jax.vmap(loss_fn)(theta, data)
    return theta, loss, n_upd
