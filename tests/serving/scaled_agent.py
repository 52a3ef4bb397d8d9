"""``ScaledVolAgent``: a minimal agent of the protocol in :mod:`jaxhedge.agents.base`.

Its hedge is the BS delta at ``scale * vol`` plus ``shift`` and its price BS at
``scale * vol``; with ``scale = 1, shift = 0`` it IS the BS delta, so every output has a
closed-form oracle, and ``shift`` makes a misbehaving agent for the guardrail tests. Its
``update`` leaves the state as it is (the trainer can run it; nothing is learned). It lives
in its own module so a run directory can rebuild it (``tests.serving.scaled_agent:...``).
"""
from __future__ import annotations

import dataclasses

import jax.numpy as jnp
from flax import struct

from jaxhedge import pricing
from jaxhedge.codec import register_class
from jaxhedge.contracts import ContractDistribution


@struct.dataclass
class ScaledHedger:
    scale: jnp.ndarray
    shift: jnp.ndarray
    is_call: bool = struct.field(pytree_node=False, default=True)

    def __call__(self, obs):
        return pricing.bs_delta(obs.spot, obs.strike, obs.time_to_maturity, obs.rate,
                                obs.vol * self.scale, obs.div_yield, self.is_call) + self.shift


@struct.dataclass
class ScaledHParams:
    contracts: ContractDistribution


@register_class  # run directories may name only registered classes (jaxhedge.codec)
@dataclasses.dataclass(frozen=True)
class ScaledVolAgent:
    scale: float = 1.0
    shift: float = 0.0
    option: str = "call"
    name: str = "scaled-vol"

    def default_hparams(self):
        return ScaledHParams(contracts=ContractDistribution(
            dt=1 / 52, sigma_lo=0.1, sigma_hi=0.4, s0_lo=0.8, s0_hi=1.2, cost_hi=0.01))

    def init(self, key, hp):
        return {"scale": jnp.float32(self.scale), "shift": jnp.float32(self.shift)}

    def update(self, key, state, hp):
        return state, {"loss": jnp.float32(0.0)}

    def hedger(self, state, hp):
        return ScaledHedger(state["scale"], state["shift"], self.option == "call")

    def price(self, state, hp, contract):
        return pricing.bs_price(contract.s0, contract.strike, contract.maturity, contract.rate,
                                contract.sigma * state["scale"], contract.div_yield,
                                contract.option == "call")

    def evaluation_contract(self, hp):
        return hp.contracts.centre(n_steps=8, option=self.option)
