"""``MixAgent``: a protocol agent whose hedge depends on EVERY observation field.

The hedge is the BS delta at ``vol * (1 + 0.2 tanh(z))``, ``z`` a small fixed-weight
network (4 tanh units) of all eleven :class:`~jaxhedge.env.Observation` fields (spot, strike, tau, elapsed, rate,
q, drift, vol, cost, cost multiplier, previous position): a shadow replay that fed any field
differently from the study's policy mode would hedge differently. The hedge stays in the
call's sanity range ``[0, e^{-q tau}]`` (a BS delta) and within ~0.1 of the BS delta, so no
guardrail trips on the real episodes. Its price (the calibration surface) is BS at sigma
plus a drift-dependent level, so both inputs (sigma, mu) are identified. ``update`` leaves
the state as it is (the trainer can run it, nothing is learned); it lives in its own module
so a run directory can rebuild it (:mod:`jaxhedge.codec`).
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import struct

from jaxhedge import pricing
from jaxhedge.codec import register_class
from jaxhedge.contracts import ContractDistribution


@struct.dataclass
class MixHedger:
    w1: jnp.ndarray
    b1: jnp.ndarray
    w2: jnp.ndarray

    def __call__(self, obs):
        x = (obs.spot, obs.strike, obs.time_to_maturity, obs.elapsed, obs.rate,
             obs.div_yield, obs.drift, obs.vol, 100 * obs.cost, obs.cost_multiplier,
             obs.position)
        # written out elementwise, no matmul: XLA's CPU dot rounds a row differently with the
        # batch shape (docs/desk.md "Shadow replay"), elementwise code does not
        hidden = [jnp.tanh(sum(self.w1[k, j] * v for k, v in enumerate(x)) + self.b1[j])
                  for j in range(self.w1.shape[1])]
        z = sum(self.w2[j] * h for j, h in enumerate(hidden))
        vol = obs.vol * (1 + 0.2 * jnp.tanh(z))
        return pricing.bs_delta(obs.spot, obs.strike, obs.time_to_maturity, obs.rate, vol,
                                obs.div_yield)


@struct.dataclass
class MixHParams:
    contracts: ContractDistribution


@register_class  # run directories may name only registered classes (jaxhedge.codec)
@dataclasses.dataclass(frozen=True)
class MixAgent:
    seed: int = 7
    option: str = "call"
    name: str = "mix"

    def default_hparams(self):
        # ranges wide enough for the real SPY episodes (1-day to ~3-month tau, April 2025 vol)
        return MixHParams(contracts=ContractDistribution(
            dt=1 / 365, sigma_lo=0.02, sigma_hi=2.0, s0_lo=0.5, s0_hi=1.5, cost_hi=0.01))

    def init(self, key, hp):
        del key  # fixed weights: the test oracle is the study, not a trained network
        k1, k2, k3 = jax.random.split(jax.random.key(self.seed), 3)
        return {"w1": 0.7 * jax.random.normal(k1, (11, 4)),
                "b1": 0.1 * jax.random.normal(k2, (4,)),
                "w2": 0.5 * jax.random.normal(k3, (4,))}

    def update(self, key, state, hp):
        return state, {"loss": jnp.float32(0.0)}

    def hedger(self, state, hp):
        return MixHedger(state["w1"], state["b1"], state["w2"])

    def price(self, state, hp, contract):
        bs = pricing.bs_price(contract.s0, contract.strike, contract.maturity, contract.rate,
                              contract.sigma, contract.div_yield)
        return bs + 0.01 * jnp.tanh(contract.mu) * contract.s0 * jnp.sqrt(contract.maturity)

    def evaluation_contract(self, hp):
        return hp.contracts.centre(n_steps=100, option=self.option)
