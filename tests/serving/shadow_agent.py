"""``MixAgent``: a protocol agent whose hedge depends on EVERY observation field.

The hedge is the BS delta at ``vol * (1 + 0.25 tanh(z))``, ``z`` a small fixed-weight
network (4 tanh units) of all eleven :class:`~jaxhedge.env.Observation` fields (spot,
strike, tau, elapsed, rate, q, drift, vol, cost, cost multiplier, previous position): a
shadow replay that fed any field differently from the study's policy mode would hedge
differently. The hedge is a BS delta (inside the call's sanity range) within ~0.1 of the BS
delta at ``vol``, so no guardrail trips on the real episodes. Its arithmetic is written so
that XLA compiles it to the same bits in the study's program and in the bundle (see
``MixHedger``). Its price (the calibration surface) is BS at sigma plus a drift-dependent
level, so both inputs (sigma, mu) are identified. ``update`` leaves the state as it is (the
trainer can run it, nothing is learned); it lives in its own module so a run directory can
rebuild it (:mod:`jaxhedge.codec`).
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
        # strike, cost and cost multiplier first: they are constants of the study's compiled
        # policy (its inputs 1, eps, 1), which XLA may fold; summed first, in this order,
        # they fold to the value the bundle computes at run time. Power-of-two weights make
        # every product exact, so no fused multiply-add changes a bit (docs/desk.md).
        x = (obs.strike, 256 * obs.cost, obs.cost_multiplier, obs.spot, obs.time_to_maturity,
             obs.elapsed, obs.rate, obs.div_yield, obs.drift, obs.vol, obs.position)
        hidden = []
        for j in range(self.w1.shape[1]):
            pre = self.w1[0, j] * x[0] + self.w1[1, j] * x[1] + self.w1[2, j] * x[2] + self.b1[j]
            for k in range(3, len(x)):
                pre = pre + self.w1[k, j] * x[k]
            hidden.append(jnp.tanh(pre))
        z = sum(self.w2[j] * h for j, h in enumerate(hidden))
        vol = obs.vol * (1 + 0.25 * jnp.tanh(z))
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
    name: str = "rlop"  # stands in for RLOP in the study (its surface fit settings)

    def default_hparams(self):
        # ranges wide enough for the real SPY episodes (1-day to ~3-month tau, April 2025 vol)
        return MixHParams(contracts=ContractDistribution(
            dt=1 / 365, sigma_lo=0.02, sigma_hi=2.0, s0_lo=0.5, s0_hi=1.5, cost_hi=0.01))

    def init(self, key, hp):
        del key  # fixed weights: the test oracle is the study, not a trained network
        k1, k2, k3, k4 = jax.random.split(jax.random.key(self.seed), 4)

        def pow2(k, shape, lo, hi):  # +-2^e, e uniform in [lo, hi]
            e = jax.random.randint(k, shape, lo, hi + 1).astype(jnp.float32)
            return jnp.where(jax.random.bernoulli(k4, 0.5, shape), 1.0, -1.0) * 2.0 ** e

        return {"w1": pow2(k1, (11, 4), -3, 0), "b1": pow2(k2, (4,), -4, -2),
                "w2": pow2(k3, (4,), -2, 0)}

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
