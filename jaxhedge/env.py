"""Gymnax-style hedging environment: explicit key, state and params; fixed horizon.

One episode = one short European option hedged from its premium over ``n_steps``
rebalancing dates. ``reset(key, params)`` simulates the whole market path up front (so
every agent that gets the same key sees the same path: common random numbers) and opens
the account; ``step(key, state, action, params)`` trades to ``action`` shares at S_t with
the ledger (:mod:`jaxhedge.ledger`), lets time pass to t+1 and, at the last step, closes
the position and settles the payoff.

Static (shape-defining) choices live in the frozen, hashable :class:`EnvConfig`; every
number lives in the :class:`EnvParams` pytree so one compiled program can vmap over
markets, strikes and costs.

Reward: ``r_t = V_{t+1} - V_t`` with V the hedge portfolio marked to market after costs;
the final reward also subtracts the payoff h(S_T), so ``premium + sum_t r_t = Pi_T``
(reported as ``info["pnl"]`` on the last step).
"""
from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
from flax import struct

from jaxhedge import ledger, markets
from jaxhedge.markets.base import MarketPaths
from jaxhedge.markets.registry import market_spec

OPTION_TYPES = ("call", "put")


@dataclasses.dataclass(frozen=True)
class EnvConfig:
    """Static environment settings (changing one recompiles).

    Attributes:
      market: a registered market's name (:func:`jaxhedge.markets.market_names`: "gbm",
        "heston", "merton", "regime" built in).
      n_steps: rebalancing dates per episode, N >= 1.
      option: "call" or "put" (the hedger is short one option).
    """

    market: str = "gbm"
    n_steps: int = 30
    option: str = "call"

    def __post_init__(self):
        market_spec(self.market, field="env.market")
        if not isinstance(self.n_steps, int) or self.n_steps < 1:
            raise ValueError(f"env.n_steps: must be an integer >= 1 (got {self.n_steps!r})")
        if self.option not in OPTION_TYPES:
            raise ValueError(f"env.option: must be one of {OPTION_TYPES} (got {self.option!r})")

    @property
    def is_call(self) -> bool:
        return self.option == "call"


@struct.dataclass
class EnvParams:
    """Dynamic (vmappable) environment parameters.

    Attributes:
      market: the market's params dataclass (e.g. ``GBMParams``); holds s0 and the drift mu.
      strike: option strike K.
      maturity: T in years; dt = T / n_steps.
      rate: risk-free rate r (continuous).
      div_yield: continuous dividend yield q.
      costs: transaction-cost coefficients (the market's cost multiplier scales them).
      premium: initial capital p (what the short option was sold for).
      charge_entry / charge_unwind: ledger flags (METHODS §2).
    """

    market: object
    strike: jax.Array | float = 1.0
    maturity: jax.Array | float = 30 / 252
    rate: jax.Array | float = 0.0
    div_yield: jax.Array | float = 0.0
    costs: ledger.CostModel = ledger.CostModel()
    premium: jax.Array | float = 0.0
    charge_entry: jax.Array | bool = True
    charge_unwind: jax.Array | bool = True

    def ledger_params(self, n_steps: int) -> ledger.LedgerParams:
        return ledger.LedgerParams(
            costs=self.costs, rate=self.rate, div_yield=self.div_yield,
            dt=self.maturity / n_steps, charge_entry=self.charge_entry,
            charge_unwind=self.charge_unwind)


@struct.dataclass
class Observation:
    """What a hedger sees at date t (before trading). Scalars per episode.

    ``vol`` is the market's instantaneous vol at t (GBM sigma, Heston sqrt(v_t), the regime's
    sigma); ``cost`` the proportional cost rate in force (eps times the liquidity multiplier).
    """

    spot: jax.Array
    strike: jax.Array
    time_to_maturity: jax.Array
    elapsed: jax.Array
    rate: jax.Array
    div_yield: jax.Array
    drift: jax.Array
    vol: jax.Array
    cost: jax.Array
    cost_multiplier: jax.Array
    position: jax.Array


@struct.dataclass
class EnvState:
    """Episode state: the pre-simulated path (shape (N+1,) per field), the account and t."""

    path: MarketPaths
    account: ledger.LedgerState
    t: jax.Array


class HedgingEnv:
    """Hedge one short European option. Pure methods; safe to jit/vmap.

    >>> from jaxhedge.markets.gbm import GBMParams
    >>> env = HedgingEnv(EnvConfig(market="gbm", n_steps=4))
    >>> params = env.default_params(GBMParams(s0=1.0, mu=0.0, sigma=0.2), strike=1.0)
    >>> obs, state = env.reset(jax.random.key(0), params)
    >>> obs.time_to_maturity.dtype.name  # float32 by default, so compare with a tolerance
    'float32'
    >>> abs(obs.time_to_maturity.item() - params.maturity) < 1e-6
    True
    """

    def __init__(self, config: EnvConfig):
        self.config = config
        self._simulate = market_spec(config.market, field="env.market").simulate

    # Equal configs give equal environments, so jit caches keyed on the env are shared.
    def __hash__(self):
        return hash(self.config)

    def __eq__(self, other):
        return isinstance(other, HedgingEnv) and other.config == self.config

    @property
    def n_steps(self) -> int:
        return self.config.n_steps

    def default_params(self, market_params, **overrides) -> EnvParams:
        """EnvParams with the given market and ``premium`` set to the market's reference price."""
        params = EnvParams(market=market_params, **overrides)
        if "premium" not in overrides:
            params = params.replace(premium=reference_premium(self.config, params))
        return params

    def reset(self, key, params: EnvParams):
        """Simulate one market path and open the account: ``(obs, state)``."""
        paths = self._simulate(key, params.market, 1, self.n_steps, self.dt(params))
        return self.reset_to_path(jax.tree.map(lambda a: a[0], paths), params)

    def reset_to_path(self, path: MarketPaths, params: EnvParams):
        """Start an episode on a given path (fields shaped (N+1,)), e.g. a historical one."""
        state = EnvState(
            path=path,
            account=ledger.open_account(jnp.asarray(params.premium, path.spot.dtype)),
            t=jnp.zeros((), jnp.int32),
        )
        return self.observe(state, params), state

    def dt(self, params: EnvParams):
        return params.maturity / self.n_steps

    def observe(self, state: EnvState, params: EnvParams) -> Observation:
        t = jnp.minimum(state.t, self.n_steps)
        return self.observation(t, tick(state.path, t), state.account, params)

    def observation(self, t, market: MarketPaths, account: ledger.LedgerState,
                    params: EnvParams) -> Observation:
        """The observation at date ``t`` given that date's market tick (any batch shape)."""
        dt = self.dt(params)
        dtype = market.spot.dtype
        cast = lambda x: jnp.asarray(x, dtype)
        return Observation(
            spot=market.spot,
            strike=cast(params.strike),
            time_to_maturity=cast((self.n_steps - t) * dt),
            elapsed=cast(t * dt),
            rate=cast(params.rate),
            div_yield=cast(params.div_yield),
            drift=cast(params.market.mu),
            vol=market.vol,
            cost=cast(params.costs.proportional) * market.cost_multiplier,
            cost_multiplier=market.cost_multiplier,
            position=account.shares,
        )

    def transition(self, t, account: ledger.LedgerState, now: MarketPaths, nxt: MarketPaths,
                   action, params: EnvParams, last: bool | None = None):
        """The one step both :meth:`step` and the batched rollout use.

        Trade to ``action`` at ``now.spot`` (the entry trade at t = 0 pays costs only with
        ``charge_entry``), let time pass to ``nxt``, and at t + 1 = N close out and settle.
        ``t`` may be a scalar shared by a batch (then the close-out runs only once, at the
        end, under ``lax.cond``). A caller that knows statically whether this is the last
        step passes ``last`` and no conditional is traced at all (the batched rollout does,
        so its loop body is one straight-line block XLA can fuse). Returns
        ``(account, reward, done, pnl)`` with ``pnl`` = Pi_T on the last step and 0 before.
        """
        lp = params.ledger_params(self.n_steps)
        value_before = ledger.portfolio_value(account, now.spot)
        account = ledger.trade(account, jnp.asarray(action, now.spot.dtype), now.spot, lp,
                               now.cost_multiplier,
                               charge=jnp.logical_or(t > 0, params.charge_entry))
        account = ledger.accrue(account, nxt.spot, lp)
        done = t + 1 >= self.n_steps

        def settle(account):
            closed = ledger.close_out(account, nxt.spot, lp, nxt.cost_multiplier)
            return closed, closed.cash - ledger.payoff(nxt.spot, params.strike,
                                                       self.config.is_call)

        def carry_on(account):
            return account, ledger.portfolio_value(account, nxt.spot)

        if last is None:
            account, value_after = jax.lax.cond(done, settle, carry_on, account)
        else:
            account, value_after = (settle if last else carry_on)(account)
        pnl = jnp.where(done, value_after, jnp.zeros_like(value_after))
        return account, value_after - value_before, done, pnl

    def step(self, key, state: EnvState, action, params: EnvParams):
        """Trade to ``action`` shares at S_t, move to t+1; settle at T.

        ``key`` is unused (the path was drawn at reset) and kept for the gymnax signature.
        Returns ``(obs, state, reward, done, info)``; ``info["pnl"]`` is Pi_T on the last
        step and 0 before.
        """
        del key
        t = state.t
        account, reward, done, pnl = self.transition(
            t, state.account, tick(state.path, t), tick(state.path, t + 1), action, params)
        new_state = EnvState(path=state.path, account=account, t=t + 1)
        info = {"pnl": pnl, "cost": account.cost, "turnover": account.turnover}
        return self.observe(new_state, params), new_state, reward, done, info


def tick(path: MarketPaths, t) -> MarketPaths:
    """The market at date ``t`` of a path whose fields are shaped (..., N+1)."""
    return jax.tree.map(lambda a: a[..., t], path)


def reference_premium(config: EnvConfig, params: EnvParams):
    """Price the hedger is paid: the market model's own risk-neutral price (drift set to r).

    Each market's :attr:`~jaxhedge.markets.MarketSpec.reference_price`: GBM Black-Scholes at
    sigma, Merton's jump-diffusion price, the semi-analytic Heston price, and for the regime
    chain Black-Scholes at the square root of the time-average variance implied by its
    transition matrix started in its initial state (no closed form there).
    """
    spec = market_spec(config.market, field="env.market")
    return spec.reference_price(params.market, params.strike, params.maturity, params.rate,
                                params.div_yield, config.is_call, config.n_steps)


def validate_env_params(config: EnvConfig, params: EnvParams) -> None:
    """Host-side checks with one-line messages naming the field and the allowed range."""
    expected = market_spec(config.market, field="env.market").params_cls
    if not isinstance(params.market, expected):
        raise ValueError(f"env.market: market {config.market!r} needs {expected.__name__} "
                         f"parameters (got {type(params.market).__name__})")
    checks = [
        ("strike", params.strike, lambda v: v > 0, "> 0"),
        ("maturity", params.maturity, lambda v: v > 0, "> 0 years"),
        ("rate", params.rate, lambda v: -1 < v < 1, "in (-1, 1)"),
        ("div_yield", params.div_yield, lambda v: -1 < v < 1, "in (-1, 1)"),
        ("costs.proportional", params.costs.proportional, lambda v: 0 <= v < 1, "in [0, 1)"),
        ("costs.quadratic", params.costs.quadratic, lambda v: v >= 0, ">= 0"),
        ("costs.fixed", params.costs.fixed, lambda v: v >= 0, ">= 0"),
        ("premium", params.premium, math.isfinite, "finite"),
    ]
    for name, value, ok, allowed in checks:
        v = float(value)
        if not (math.isfinite(v) and ok(v)):
            raise ValueError(f"env.{name}: must be {allowed} (got {v:g})")
    markets.validate(params.market)
