"""The option contract every stress scenario is defined relative to.

A :class:`Contract` is one short European option (spot, strike, life, rebalancing dates,
calm volatility, cost rate). Scenarios scale their stresses from it (``vol_spike``
multiplies ``sigma``, ``crash`` sets its intensity from ``maturity``, ...), and every agent
in a stress run hedges this one contract from the same premium: the calm Black-Scholes price
at ``sigma``, so a scenario's degradation is what it costs the seller who priced calm.

Numbers are pytree leaves (they may be traced, e.g. inside the robust-training update);
``n_steps``, ``option`` and the ledger flags are static.
"""
from __future__ import annotations

import math

import jax
from flax import struct

from jaxhedge import ledger, pricing
from jaxhedge.env import EnvConfig, EnvParams, HedgingEnv
from jaxhedge.markets import GBMParams


@struct.dataclass
class Contract:
    """Short European option hedged over ``n_steps`` dates (``dt = maturity / n_steps``).

    Attributes:
      s0, strike: spot at t = 0 and strike.
      maturity: life T in years.
      sigma: the calm volatility (the premium's implied vol; classical hedgers use it).
      mu: real-world drift of the underlying.
      rate, div_yield: continuous risk-free rate and dividend yield.
      cost: proportional transaction cost rate eps (scaled by each path's cost multiplier).
      n_steps, option, charge_entry, charge_unwind: static (see :mod:`jaxhedge.env`).
    """

    s0: float = 100.0
    strike: float = 100.0
    maturity: float = 30 / 252
    sigma: float = 0.2
    mu: float = 0.0
    rate: float = 0.0
    div_yield: float = 0.0
    cost: float = 0.002
    n_steps: int = struct.field(pytree_node=False, default=30)
    option: str = struct.field(pytree_node=False, default="call")
    charge_entry: bool = struct.field(pytree_node=False, default=True)
    charge_unwind: bool = struct.field(pytree_node=False, default=True)

    @property
    def dt(self):
        return self.maturity / self.n_steps

    @classmethod
    def from_env(cls, config: EnvConfig, params: EnvParams) -> "Contract":
        """The contract of an environment (works with traced ``params`` inside jit).

        The calm vol is the market's ``sigma`` (GBM, Merton), ``sqrt(v0)`` (Heston) or the
        first regime's sigma (regime chain).
        """
        m = params.market
        if hasattr(m, "sigma"):
            sigma = m.sigma
        elif hasattr(m, "v0"):
            sigma = m.v0 ** 0.5
        elif hasattr(m, "sigmas"):
            sigma = m.sigmas[0]
        else:
            raise ValueError(f"contract: cannot read a volatility from {type(m).__name__}")
        return cls(s0=m.s0, strike=params.strike, maturity=params.maturity, sigma=sigma,
                   mu=m.mu, rate=params.rate, div_yield=params.div_yield,
                   cost=params.costs.proportional, n_steps=config.n_steps,
                   option=config.option, charge_entry=_flag(params.charge_entry),
                   charge_unwind=_flag(params.charge_unwind))

    def premium(self):
        """The calm reference price: Black-Scholes at ``sigma`` (what every agent is paid)."""
        return pricing.bs_price(self.s0, self.strike, self.maturity, self.rate, self.sigma,
                                self.div_yield, self.option == "call")

    def env(self) -> tuple[HedgingEnv, EnvParams]:
        """(env, params) every scenario is hedged in: the ledger, costs and premium.

        The market inside is the calm GBM (it supplies the drift the observation shows);
        the paths themselves come from the scenario, via ``rollout.run_on_paths``.
        """
        env = HedgingEnv(EnvConfig(market="gbm", n_steps=self.n_steps, option=self.option))
        params = EnvParams(
            market=GBMParams(s0=self.s0, mu=self.mu, sigma=self.sigma), strike=self.strike,
            maturity=self.maturity, rate=self.rate, div_yield=self.div_yield,
            costs=ledger.CostModel(proportional=self.cost), premium=self.premium(),
            charge_entry=self.charge_entry, charge_unwind=self.charge_unwind)
        return env, params

    def describe(self) -> dict:
        """Host-side JSON-able summary."""
        return {"s0": float(self.s0), "strike": float(self.strike),
                "maturity": float(self.maturity), "sigma": float(self.sigma),
                "mu": float(self.mu), "rate": float(self.rate),
                "div_yield": float(self.div_yield), "cost": float(self.cost),
                "n_steps": self.n_steps, "option": self.option,
                "charge_entry": self.charge_entry, "charge_unwind": self.charge_unwind,
                "premium": float(self.premium())}


def _flag(x) -> bool:
    # under jit (robust training) the ledger flags are traced; the mixture only needs the
    # contract's numbers, so a traced flag reads as the default (True)
    return True if isinstance(x, jax.core.Tracer) else bool(x)


def validate_contract(c: Contract) -> Contract:
    """Host-side checks; ValueError naming the field and its allowed range."""
    checks = [("s0", c.s0, lambda v: v > 0, "> 0"), ("strike", c.strike, lambda v: v > 0, "> 0"),
              ("maturity", c.maturity, lambda v: v > 0, "> 0 years"),
              ("sigma", c.sigma, lambda v: 0 < v <= 5, "in (0, 5]"),
              ("mu", c.mu, lambda v: -10 <= v <= 10, "in [-10, 10]"),
              ("rate", c.rate, lambda v: -1 < v < 1, "in (-1, 1)"),
              ("div_yield", c.div_yield, lambda v: -1 < v < 1, "in (-1, 1)"),
              ("cost", c.cost, lambda v: 0 <= v < 1, "in [0, 1)")]
    for name, value, ok, allowed in checks:
        v = float(value)
        if not (math.isfinite(v) and ok(v)):
            raise ValueError(f"contract.{name}: must be {allowed} (got {v:g})")
    if not isinstance(c.n_steps, int) or c.n_steps < 1:
        raise ValueError(f"contract.n_steps: must be an integer >= 1 (got {c.n_steps!r})")
    if c.option not in ("call", "put"):
        raise ValueError(f"contract.option: must be 'call' or 'put' (got {c.option!r})")
    return c


def same_contract(a: Contract, b: Contract, rtol: float = 1e-6) -> bool:
    """Host-side equality of two contracts (numbers to ``rtol``, static fields exactly)."""
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    static = lambda c: (c.n_steps, c.option, c.charge_entry, c.charge_unwind)  # noqa: E731
    return static(a) == static(b) and all(
        math.isclose(float(x), float(y), rel_tol=rtol, abs_tol=1e-12) for x, y in zip(la, lb))
