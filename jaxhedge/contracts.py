"""Contracts: the one option an agent hedges, and the distribution agents train on.

* :class:`Contract` -- one short European option (spot, strike, life, rebalancing dates,
  volatility, drift, rate, dividend yield, cost rate). Stress scenarios scale their stresses
  from it, ``eval``/``stress`` hedge it, and every agent's ``price(state, hparams, contract)``
  prices it. Numbers are pytree leaves (they may be traced or batched); ``n_steps``,
  ``option`` and the ledger flags are static.
* :class:`ContractDistribution` -- the training distribution of contracts of the RL agents
  (RLOP, Adaptive-QLBS): ``sample(key, n)`` draws a :class:`ContractBatch` and ``centre()``
  is the :class:`Contract` ``jaxhedge eval`` evaluates a trained agent on.

Every other module takes these types; no agent keeps its own sampler.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jaxhedge import ledger, pricing
from jaxhedge.env import EnvConfig, EnvParams, HedgingEnv, Observation
from jaxhedge.markets import GBMParams, market_spec


@struct.dataclass
class Contract:
    """Short European option hedged over ``n_steps`` dates (``dt = maturity / n_steps``).

    The premium every agent is paid in ``eval`` and ``stress`` is :meth:`premium`, the
    Black-Scholes price at ``sigma``.

    >>> c = Contract(s0=100.0, strike=100.0, maturity=1.0, sigma=0.2, n_steps=12)
    >>> round(float(c.premium()), 4)
    7.9656
    >>> round(float(c.dt), 6)
    0.083333

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

        The calm vol is the market's :attr:`~jaxhedge.markets.MarketSpec.calm_vol`: ``sigma``
        (GBM, Merton), ``sqrt(v0)`` (Heston), the first regime's sigma (regime chain).
        """
        m = params.market
        sigma = market_spec(config.market).calm_vol(m)
        return cls(s0=m.s0, strike=params.strike, maturity=params.maturity, sigma=sigma,
                   mu=m.mu, rate=params.rate, div_yield=params.div_yield,
                   cost=params.costs.proportional, n_steps=config.n_steps,
                   option=config.option, charge_entry=_flag(params.charge_entry),
                   charge_unwind=_flag(params.charge_unwind))

    def premium(self):
        """The calm reference price: Black-Scholes at ``sigma`` (what every agent is paid)."""
        return pricing.bs_price(self.s0, self.strike, self.maturity, self.rate, self.sigma,
                                self.div_yield, self.option == "call")

    def observation(self, position=0.0) -> Observation:
        """What a hedger sees at t = 0 of this contract (leaves keep their batch shape)."""
        x = jnp.broadcast_arrays(*(jnp.asarray(v, jnp.result_type(float)) for v in (
            self.s0, self.strike, self.maturity, self.rate, self.div_yield, self.mu,
            self.sigma, self.cost, position)))
        s0, strike, tau, rate, q, mu, sigma, cost, pos = x
        return Observation(spot=s0, strike=strike, time_to_maturity=tau,
                           elapsed=jnp.zeros_like(tau), rate=rate, div_yield=q, drift=mu,
                           vol=sigma, cost=cost, cost_multiplier=jnp.ones_like(tau),
                           position=pos)

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


# --------------------------------------------------------------------------- distributions
@struct.dataclass
class ContractBatch:
    """``n`` contracts drawn from a :class:`ContractDistribution`; every field shaped ``(n,)``.

    ``cost`` is the proportional cost rate eps of each contract; ``dt`` the spacing of its
    dates (its life is ``n_steps * dt``), or None in a batch built by hand, which then takes
    the distribution's ``dt``.
    """

    s0: jax.Array
    strike: jax.Array
    mu: jax.Array
    sigma: jax.Array
    cost: jax.Array
    dt: jax.Array | None = None


@struct.dataclass
class ContractDistribution:
    """Training distribution of GBM contracts (every field a pytree leaf: vmappable, sweepable).

    ``mu ~ N(mu_mean, mu_std^2)``; ``sigma``, ``s0``, ``strike``, ``cost`` uniform on
    ``[lo, hi]`` (``lo == hi`` fixes them), ``sigma`` log-uniform instead when
    ``sigma_log = 1`` (as many contracts in [0.05, 0.2] as in [0.55, 2.2]: a wide vol range
    drawn uniformly leaves the low vols of calm equity markets almost unseen); the dates' spacing ``dt`` is uniform on
    ``[dt, dt_hi]`` when ``dt_hi > dt`` (so the life ``n_steps * dt`` varies: ``n_steps`` is
    the agent's static field), else every contract has ``dt`` (``dt_hi = 0``, the default);
    one rate, no dividend.

    >>> d = ContractDistribution(sigma_lo=0.1, sigma_hi=0.3, s0_lo=0.9, s0_hi=1.1)
    >>> b = d.sample(jax.random.key(0), 1000)
    >>> b.sigma.shape, bool((b.sigma >= 0.1).all() and (b.sigma <= 0.3).all())
    ((1000,), True)
    >>> c = d.centre(n_steps=4)
    >>> round(float(c.sigma), 6), round(float(c.s0), 6), c.n_steps
    (0.2, 1.0, 4)
    """

    dt: float = 1.0 / 52
    rate: float = 0.0
    mu_mean: float = 0.0
    mu_std: float = 1.0
    sigma_lo: float = 0.01
    sigma_hi: float = 1.01
    s0_lo: float = 0.3
    s0_hi: float = 1.7
    strike_lo: float = 1.0
    strike_hi: float = 1.0
    cost_lo: float = 0.0
    cost_hi: float = 0.0
    dt_hi: float = 0.0
    sigma_log: float = 0.0   # 1: sigma log-uniform on [sigma_lo, sigma_hi]; 0: uniform

    def dt_range(self):
        """``(lo, hi)`` of the dates' spacing (``hi == lo`` when it is fixed); traceable."""
        lo = jnp.asarray(self.dt)
        return lo, jnp.maximum(lo, jnp.asarray(self.dt_hi, lo.dtype))

    def sample(self, key, n: int) -> ContractBatch:
        """``n`` i.i.d. contracts (float dtype: the default float)."""
        dtype = jnp.result_type(float)
        ks = jax.random.split(key, 5)
        shape = (n,)
        # Draw order (mu, sigma, strike, s0, cost) is part of the reproducibility contract:
        # the same key gives the same contracts in every agent.
        u = lambda k, lo, hi: jax.random.uniform(k, shape, dtype, jnp.asarray(lo, dtype),  # noqa: E731
                                                 jnp.asarray(hi, dtype))
        # dt from its own key (fold_in, not a 6th split): the five draws above stay what
        # they were before maturities could vary; with dt_hi <= dt every dt is exactly dt
        return ContractBatch(
            mu=jnp.asarray(self.mu_mean, dtype)
            + jnp.asarray(self.mu_std, dtype) * jax.random.normal(ks[0], shape, dtype),
            sigma=self._sigma(ks[1], shape, dtype),
            strike=u(ks[2], self.strike_lo, self.strike_hi),
            s0=u(ks[3], self.s0_lo, self.s0_hi),
            cost=u(ks[4], self.cost_lo, self.cost_hi),
            dt=u(jax.random.fold_in(key, 5), *self.dt_range()))

    def _sigma(self, key, shape, dtype):
        # the same uniform bits either way (one key): sigma_log = 0 is the former draw
        lo, hi = jnp.asarray(self.sigma_lo, dtype), jnp.asarray(self.sigma_hi, dtype)
        lin = jax.random.uniform(key, shape, dtype, lo, hi)
        log = jnp.exp(jax.random.uniform(key, shape, dtype, jnp.log(lo), jnp.log(hi)))
        return jnp.where(jnp.asarray(self.sigma_log) > 0.5, jnp.clip(log, lo, hi), lin)

    def centre(self, n_steps: int, option: str = "call", charge_entry: bool = True,
               charge_unwind: bool = True) -> Contract:
        """The GBM contract at the centre: mid s0, strike, sigma, cost and dt, drift ``mu_mean``."""
        mid = lambda lo, hi: 0.5 * (float(lo) + float(hi))  # noqa: E731
        dt = float(self.dt) if float(self.dt_hi) <= float(self.dt) else mid(self.dt, self.dt_hi)
        return Contract(s0=mid(self.s0_lo, self.s0_hi), strike=mid(self.strike_lo, self.strike_hi),
                        maturity=n_steps * dt, sigma=self._sigma_mid(),
                        mu=float(self.mu_mean), rate=float(self.rate), div_yield=0.0,
                        cost=mid(self.cost_lo, self.cost_hi), n_steps=n_steps, option=option,
                        charge_entry=charge_entry, charge_unwind=charge_unwind)

    def sigma_bin_centres(self, n: int) -> np.ndarray:
        """Host-side: centres of ``n`` equal-probability bins of sigma's law (in log sigma
        when log-uniform); ``n = 1`` is the median draw."""
        lo, hi = float(self.sigma_lo), float(self.sigma_hi)
        frac = (np.arange(n) + 0.5) / n
        if float(self.sigma_log) > 0.5:
            return np.exp(math.log(lo) + (math.log(hi) - math.log(lo)) * frac)
        return lo + (hi - lo) * frac

    def _sigma_mid(self) -> float:
        return float(self.sigma_bin_centres(1)[0])

    def validate(self) -> "ContractDistribution":
        """Host-side checks; ValueError naming the field and its allowed range."""
        for lo, hi, floor in (("sigma_lo", "sigma_hi", 0.0), ("s0_lo", "s0_hi", 0.0),
                              ("strike_lo", "strike_hi", 0.0), ("cost_lo", "cost_hi", None)):
            a, b = float(getattr(self, lo)), float(getattr(self, hi))
            if not (math.isfinite(a) and math.isfinite(b) and a <= b):
                raise ValueError(f"contracts.{lo}: must be finite and <= {hi} (got {a:g}, {b:g})")
            if floor is not None and a <= floor:
                raise ValueError(f"contracts.{lo}: must be > {floor:g} (got {a:g})")
        if not (0 <= float(self.cost_lo) and float(self.cost_hi) < 1):
            raise ValueError("contracts.cost_lo/cost_hi: must lie in [0, 1)")
        for name, ok, allowed in (("dt", lambda v: v > 0, "> 0 years"),
                                  ("rate", lambda v: -1 < v < 1, "in (-1, 1)"),
                                  ("mu_std", lambda v: v >= 0, ">= 0"),
                                  ("mu_mean", lambda v: -10 <= v <= 10, "in [-10, 10]")):
            v = float(getattr(self, name))
            if not (math.isfinite(v) and ok(v)):
                raise ValueError(f"contracts.{name}: must be {allowed} (got {v:g})")
        if float(self.sigma_log) not in (0.0, 1.0):
            raise ValueError(f"contracts.sigma_log: must be 0 (uniform) or 1 (log-uniform) "
                             f"(got {float(self.sigma_log):g})")
        hi = float(self.dt_hi)
        if not (math.isfinite(hi) and (hi == 0 or hi >= float(self.dt))):
            raise ValueError(f"contracts.dt_hi: must be 0 (fixed dt) or >= dt (got {hi:g})")
        return self
