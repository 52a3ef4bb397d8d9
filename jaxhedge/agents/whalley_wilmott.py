"""Whalley–Wilmott no-transaction band around the BS delta (METHODS §4.1).

The asymptotic band of Whalley & Wilmott (1997) for exponential utility with risk
aversion ``risk_aversion``: half-width ``H = (3/2 e^{-r tau} eps S Gamma^2 / lambda)^{1/3}``.
Inside the band the hedger does not trade; outside it trades to the nearest band edge.
With eps = 0 the band collapses and this is the BS delta hedge.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from jaxhedge.agents.delta import DeltaHedger
from jaxhedge.agents.registry import HedgerSpec
from jaxhedge.pricing import bs_gamma


@struct.dataclass
class WhalleyWilmottHedger:
    """Band hedger. ``risk_aversion`` is lambda in money^-1 units of the underlying's currency.

    ``eps`` is the proportional cost the band is built for; NaN (default) means the cost in
    force at t (``obs.cost``, which includes the liquidity multiplier).
    """

    vol: jax.Array | float = float("nan")
    risk_aversion: jax.Array | float = 1.0
    eps: jax.Array | float = float("nan")
    is_call: jax.Array | bool = True

    def band(self, obs):
        """(lower, upper) edges of the no-trade band at this observation."""
        centre_hedger = DeltaHedger(vol=self.vol, is_call=self.is_call)
        vol = centre_hedger.hedge_vol(obs)
        delta = centre_hedger(obs)
        gamma = bs_gamma(obs.spot, obs.strike, obs.time_to_maturity, obs.rate, vol,
                         obs.div_yield, self.is_call)
        eps = jnp.where(jnp.isnan(self.eps), obs.cost, self.eps)
        width = jnp.cbrt(1.5 * jnp.exp(-obs.rate * obs.time_to_maturity) * eps * obs.spot
                         * gamma**2 / self.risk_aversion)
        return delta - width, delta + width

    def __call__(self, obs):
        lower, upper = self.band(obs)
        return jnp.clip(obs.position, lower, upper)


def build(option: str = "call", risk_aversion: float = 1.0, sigma: float | None = None,
          cost: float | None = None, **_) -> WhalleyWilmottHedger:
    """The band for lambda = ``risk_aversion`` at ``sigma`` and ``cost`` (None: as seen at t)."""
    nan = float("nan")
    return WhalleyWilmottHedger(vol=nan if sigma is None else sigma, risk_aversion=risk_aversion,
                                eps=nan if cost is None else cost, is_call=option == "call")


#: Registered by :mod:`jaxhedge.agents`.
SPEC = HedgerSpec(name="ww", build=build, description="Whalley-Wilmott no-transaction band")
