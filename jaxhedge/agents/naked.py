"""The zero hedge: sell the option, keep the premium in cash, never trade."""
from __future__ import annotations

import jax.numpy as jnp
from flax import struct

from jaxhedge.agents.registry import HedgerSpec


@struct.dataclass
class NakedHedger:
    def __call__(self, obs):
        return jnp.zeros_like(obs.spot)


def build(option: str = "call", **_) -> NakedHedger:
    return NakedHedger()


#: Registered by :mod:`jaxhedge.agents`.
SPEC = HedgerSpec(name="naked", build=build, description="no hedge: keep the premium in cash")
