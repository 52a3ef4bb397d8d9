"""A tiny learning agent for tests and demos of the trainer -- NOT a hedging method.

``ToyAgent`` fits a linear hedge ratio ``delta_hat = w . phi(x) + b`` to the Black-Scholes
call delta by least squares on fresh random inputs each update (Adam, learning rate in
hparams). It follows the :class:`jaxhedge.agents.base.LearningAgent` protocol exactly, is
deterministic given the key, compiles in well under a second, and has one test hook:
``hparams.nan_at_step`` (>= 0) poisons the loss at that update (0-based agent step), so
the gradient and then the parameters become NaN -- used to test non-finite detection.

It lives in the package (rather than tests/) and registers itself with
:func:`jaxhedge.codec.register_class` (``jaxhedge.train`` imports it), so that a fresh
process can rebuild it from a checkpoint's agent spec when testing resume.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import optax
from flax import struct

from jaxhedge.codec import register_class
from jaxhedge.contracts import Contract

__all__ = ["ToyAgent", "ToyHParams", "ToyState", "ToyHedger"]


@struct.dataclass
class ToyHParams:
    learning_rate: jax.Array | float = 0.05
    nan_at_step: jax.Array | int = -1  # < 0: never


@struct.dataclass
class ToyState:
    params: dict  # {"w": (3,), "b": ()}
    opt_state: optax.OptState
    step: jax.Array  # int32 ()


def _features(log_m, tau, vol):
    """``(..., 3)``: bounded functions of d1 (well conditioned for a linear fit) and vol."""
    sd = vol * jnp.sqrt(tau)
    z = jnp.tanh(0.5 * (log_m / sd + 0.5 * sd))
    return jnp.stack([z, z ** 3, sd], axis=-1)


@struct.dataclass
class ToyHedger:
    """Pytree-callable ``obs -> shares`` (reads spot, strike, time_to_maturity, vol)."""

    params: dict

    def __call__(self, obs):
        phi = _features(jnp.log(obs.spot / obs.strike), obs.time_to_maturity, obs.vol)
        return jnp.clip(phi @ self.params["w"] + self.params["b"], 0.0, 1.0)


@register_class  # so build_agent may rebuild it from a run directory
@dataclasses.dataclass(frozen=True)
class ToyAgent:
    """Least-squares fit of the BS call delta (static config: batch size)."""

    batch: int = 64
    name: str = "toy"

    def default_hparams(self) -> ToyHParams:
        return ToyHParams(learning_rate=jnp.float32(0.05), nan_at_step=jnp.int32(-1))

    @staticmethod
    def _opt():
        return optax.scale_by_adam()  # the step size is applied from hparams (vmappable)

    def init(self, key, hparams) -> ToyState:
        params = {"w": 0.1 * jax.random.normal(key, (3,)), "b": jnp.zeros(())}
        return ToyState(params=params, opt_state=self._opt().init(params),
                        step=jnp.zeros((), jnp.int32))

    def _loss(self, params, key, hparams, step):
        k1, k2, k3 = jax.random.split(key, 3)
        log_m = jax.random.uniform(k1, (self.batch,), minval=-0.3, maxval=0.3)
        tau = jax.random.uniform(k2, (self.batch,), minval=0.02, maxval=1.0)
        vol = jax.random.uniform(k3, (self.batch,), minval=0.1, maxval=0.5)
        target = jax.scipy.stats.norm.cdf(log_m / (vol * jnp.sqrt(tau)) + 0.5 * vol * jnp.sqrt(tau))
        pred = _features(log_m, tau, vol) @ params["w"] + params["b"]
        loss = jnp.mean((pred - target) ** 2)
        poison = jnp.where(step == hparams.nan_at_step, jnp.nan, 1.0)
        return loss * poison

    def update(self, key, state: ToyState, hparams):
        loss, grads = jax.value_and_grad(self._loss)(state.params, key, hparams, state.step)
        updates, opt_state = self._opt().update(grads, state.opt_state, state.params)
        params = jax.tree.map(lambda p, u: p - hparams.learning_rate * u, state.params, updates)
        new = ToyState(params=params, opt_state=opt_state, step=state.step + 1)
        return new, {"loss": loss, "b": params["b"]}

    def hedger(self, state: ToyState, hparams=None) -> ToyHedger:
        return ToyHedger(state.params)

    def evaluation_contract(self, hparams=None) -> Contract:
        """An at-the-money call in the middle of the fitted range (half a year, vol 0.3)."""
        return Contract(s0=100.0, strike=100.0, maturity=0.5, sigma=0.3, mu=0.0, rate=0.0,
                        cost=0.0, n_steps=20)

    def price(self, state: ToyState, hparams, contract: Contract):
        """The call price implied by the fitted delta: ``C(S0) = integral of delta_hat(x)
        dx`` from ``K exp(-4 sd)`` (where a call is worth ~0) to ``S0``, at ``r = q = 0``
        (what the toy fits); a put by parity. Trapezoid on 129 nodes; the contract's
        numeric leaves may be batched (the price has their broadcast shape)."""
        s0, k, tau, vol = jnp.broadcast_arrays(*(jnp.asarray(x, jnp.result_type(float)) for x in
                                                 (contract.s0, contract.strike,
                                                  contract.maturity, contract.sigma)))
        lo = k * jnp.exp(-4.0 * vol * jnp.sqrt(tau))
        u = jnp.linspace(0.0, 1.0, 129)
        x = lo[..., None] + (s0 - lo)[..., None] * u  # (..., 129), may run downwards
        phi = _features(jnp.log(x / k[..., None]), jnp.broadcast_to(tau[..., None], x.shape),
                        jnp.broadcast_to(vol[..., None], x.shape))
        delta = jnp.clip(phi @ state.params["w"] + state.params["b"], 0.0, 1.0)
        call = jnp.trapezoid(delta, x, axis=-1)
        return call if contract.option == "call" else call - s0 + k
