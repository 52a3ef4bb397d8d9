"""Black-Scholes delta hedger (METHODS §4.1)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from jaxhedge.agents.registry import HedgerSpec
from jaxhedge.pricing import bs_delta


@struct.dataclass
class DeltaHedger:
    """Hold the Black-Scholes delta ``e^{-q tau} N(d1)`` of the short option.

    Attributes:
      vol: the hedging volatility. NaN (the default) means "use the vol the market shows
        at t" (``obs.vol``: GBM sigma, Heston sqrt(v_t), the regime's sigma), a fixed
        number means a calibrated/assumed sigma.
      is_call: option type (a pytree leaf so call and put hedgers share one compile).
    """

    vol: jax.Array | float = float("nan")
    is_call: jax.Array | bool = True

    def hedge_vol(self, obs):
        return jnp.where(jnp.isnan(self.vol), obs.vol, self.vol).astype(obs.spot.dtype)

    def __call__(self, obs):
        return bs_delta(obs.spot, obs.strike, obs.time_to_maturity, obs.rate,
                        self.hedge_vol(obs), obs.div_yield, self.is_call)


def build(option: str = "call", sigma: float | None = None, **_) -> DeltaHedger:
    """BS delta at ``sigma`` (None: the market's vol at t)."""
    return DeltaHedger(vol=float("nan") if sigma is None else sigma, is_call=option == "call")


#: Registered by :mod:`jaxhedge.agents`.
SPEC = HedgerSpec(name="delta", build=build, description="Black-Scholes delta")
