"""The single self-financing ledger (METHODS §2).

**The rule: every agent and backtest settles here; no other module does cash/share
arithmetic.** The environment, the vectorised rollout, the backtest, RLOP's stacked
portfolios (a batched :class:`LedgerState` driven through :func:`trade` / :func:`accrue` /
:func:`close_out`, frozen after expiry with :func:`where`) all call these functions. A
closed form kept elsewhere for speed or as a regression target (Halperin QLBS's backward
Pi recursion) is tied to :func:`replay` by a test on random tapes.

Conventions (one step is (t, t+1], length ``dt`` years):

* ``shares`` u_t is the number of underlying shares held over (t, t+1]; ``cash`` B_t the
  money account, growing at ``e^{r dt}`` per step.
* Dividends: shares earn a continuous yield q. Over one step the holder of u shares
  receives ``u S_{t+1} (e^{q dt} - 1)`` in cash at t+1 — exactly what re-investing the
  yield in shares and selling the extra shares at t+1 would give, so the BS delta
  ``e^{-q tau} N(d1)`` replicates with this ledger as dt -> 0.
* Trading to u_{t+1} at S_{t+1} costs ``TC(u_{t+1} - u_t, S_{t+1})`` in cash, so

      u_t S_{t+1} + e^{r dt} B_t + div_t = u_{t+1} S_{t+1} + B_{t+1} + TC(u_{t+1} - u_t, S_{t+1}),

  the papers' eq. (1) plus the dividend term.
* ``TC(du, S) = m (eps |du| S + eta du^2 S + fee 1{du != 0})`` with m the (possibly
  time-varying) liquidity multiplier.
* ``charge_entry``: whether the first purchase at t = 0 pays costs. ``charge_unwind``:
  whether liquidating the final position at T pays costs (paper training environments
  charge the unwind; the real-data backtest charges the entry and marks to market).
* Terminal hedging error of a short option hedged from premium p: ``Pi_T = V_T - h(S_T)``.

The functions below are small, pure and shape-polymorphic (they broadcast over any
leading batch shape), so the environment, the vectorised rollout and the backtest all
call the same arithmetic. :func:`replay` runs a whole trade tape with ``lax.scan``.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class CostModel:
    """Transaction-cost coefficients (before the liquidity multiplier).

    Attributes:
      proportional: eps, cost ``eps |du| S`` (papers' backtests: 4e-3).
      quadratic: eta, market-impact cost ``eta du^2 S``.
      fixed: fee in currency per non-zero trade.
    """

    proportional: jax.Array | float = 0.0
    quadratic: jax.Array | float = 0.0
    fixed: jax.Array | float = 0.0


@struct.dataclass
class LedgerParams:
    """Dynamic (vmappable) ledger settings. Flags are arrays so they can vary per member."""

    costs: CostModel = CostModel()
    rate: jax.Array | float = 0.0
    div_yield: jax.Array | float = 0.0
    dt: jax.Array | float = 1.0 / 252
    charge_entry: jax.Array | bool = True
    charge_unwind: jax.Array | bool = True


@struct.dataclass
class LedgerState:
    """Hedge account of one (or a batch of) short option position(s).

    Attributes:
      cash: money account B_t.
      shares: current holding u (held over the next step).
      cost: cumulative transaction costs paid so far.
      turnover: cumulative sum of |du| traded so far.
    """

    cash: jax.Array
    shares: jax.Array
    cost: jax.Array
    turnover: jax.Array


def where(mask, new: LedgerState, old: LedgerState) -> LedgerState:
    """Field-wise ``jnp.where(mask, new, old)``: apply a ledger step only where ``mask``.

    Used to run several accounts in one batched :class:`LedgerState` when they are not all
    live (RLOP's stacked expiries: a column is frozen after its expiry). ``mask``
    broadcasts against the account's shape.

    >>> a = open_account(jnp.array([1.0, 2.0]))
    >>> b = a.replace(cash=a.cash + 10.0)
    >>> where(jnp.array([True, False]), b, a).cash.tolist()
    [11.0, 2.0]
    """
    return jax.tree.map(lambda x, y: jnp.where(mask, x, y), new, old)


def transaction_cost(trade, spot, costs: CostModel, multiplier=1.0):
    """Cost of trading ``trade`` shares at ``spot``: ``m (eps|du|S + eta du^2 S + fee 1{du!=0})``.

    >>> float(transaction_cost(2.0, 100.0, CostModel(proportional=0.01)))
    2.0
    """
    trade = jnp.asarray(trade)
    fee = jnp.where(trade != 0, costs.fixed, 0.0)
    return multiplier * (
        costs.proportional * jnp.abs(trade) * spot + costs.quadratic * trade**2 * spot + fee
    )


def open_account(premium, like=None) -> LedgerState:
    """A fresh account holding the premium in cash and no shares."""
    cash = jnp.asarray(premium, dtype=jnp.result_type(premium if like is None else like, float))
    zero = jnp.zeros_like(cash)
    return LedgerState(cash=cash, shares=zero, cost=zero, turnover=zero)


def trade(state: LedgerState, new_shares, spot, params: LedgerParams, multiplier=1.0,
          charge=True) -> LedgerState:
    """Rebalance to ``new_shares`` at ``spot``; the cost is paid in cash when ``charge``."""
    dq = new_shares - state.shares
    cost = jnp.where(charge, transaction_cost(dq, spot, params.costs, multiplier), 0.0)
    return LedgerState(
        cash=state.cash - dq * spot - cost,
        shares=jnp.broadcast_to(new_shares, state.shares.shape).astype(state.shares.dtype),
        cost=state.cost + cost,
        turnover=state.turnover + jnp.abs(dq),
    )


def accrue(state: LedgerState, spot_next, params: LedgerParams) -> LedgerState:
    """Let one step pass: cash grows at r, held shares pay their dividend into cash at t+1."""
    growth = jnp.exp(params.rate * params.dt)
    dividend = state.shares * spot_next * jnp.expm1(params.div_yield * params.dt)
    return state.replace(cash=state.cash * growth + dividend)


def portfolio_value(state: LedgerState, spot):
    """Mark-to-market value ``B + u S`` (no liquidation cost)."""
    return state.cash + state.shares * spot


def close_out(state: LedgerState, spot, params: LedgerParams, multiplier=1.0) -> LedgerState:
    """Liquidate at T: the position is sold at ``spot``, paying costs only when ``charge_unwind``.

    Without ``charge_unwind`` this is the mark-to-market convention of the real-data
    backtest (the position is valued at ``spot`` for free).
    """
    return trade(state, jnp.zeros_like(state.shares), spot, params, multiplier,
                 charge=params.charge_unwind)


def payoff(spot, strike, is_call=True):
    """European payoff ``(S-K)^+`` for a call, ``(K-S)^+`` for a put."""
    return jnp.where(is_call, jnp.maximum(spot - strike, 0.0), jnp.maximum(strike - spot, 0.0))


@struct.dataclass
class TapeResult:
    """Outcome of replaying a trade tape. Shapes: the leading batch dims of the inputs.

    Attributes:
      terminal_value: V_T after close-out (before the option payoff).
      pnl: Pi_T = V_T - h(S_T).
      cost: total transaction cost paid (entry and unwind included when charged).
      turnover: total |du| traded, the entry and the close-out included.
      values: hedge value marked to market before each rebalance, V_0 = p, V_t = B + u S_t
        for t = 1..N-1, and V_T after close-out at index N; shape (..., N+1).
    """

    terminal_value: jax.Array
    pnl: jax.Array
    cost: jax.Array
    turnover: jax.Array
    values: jax.Array


def replay(spots, positions, premium, strike, params: LedgerParams, is_call=True,
           multipliers=None) -> TapeResult:
    """Run the ledger over a whole trade tape (``lax.scan`` over time).

    Args:
      spots: (..., N+1) prices S_0..S_N.
      positions: (..., N) holdings u_0..u_{N-1}; u_t is bought at S_t and held over (t, t+1].
      premium: (...) initial capital V_0 = p.
      strike: strike K of the short option.
      params: ledger settings.
      is_call: option type.
      multipliers: (..., N+1) liquidity multipliers on costs at each date (default 1).

    Returns:
      :class:`TapeResult`.
    """
    spots = jnp.asarray(spots)
    positions = jnp.asarray(positions, dtype=spots.dtype)
    if multipliers is None:
        multipliers = jnp.ones_like(spots)
    premium = jnp.broadcast_to(jnp.asarray(premium, spots.dtype), spots.shape[:-1])
    state = trade(open_account(premium), positions[..., 0], spots[..., 0], params,
                  multipliers[..., 0], charge=params.charge_entry)

    def one_step(state, xs):
        spot_next, multiplier_next, shares_next = xs
        state = accrue(state, spot_next, params)
        value = portfolio_value(state, spot_next)
        return trade(state, shares_next, spot_next, params, multiplier_next), value

    # Rebalance at t = 1..N-1; at t = N the "trade" holds the position (du = 0, no cost)
    # and close_out settles it.
    hold_last = jnp.concatenate([positions[..., 1:], positions[..., -1:]], axis=-1)
    to_time_major = lambda a: jnp.moveaxis(a, -1, 0)
    state, values = jax.lax.scan(
        one_step, state,
        (to_time_major(spots[..., 1:]), to_time_major(multipliers[..., 1:]),
         to_time_major(hold_last)),
    )
    final = close_out(state, spots[..., -1], params, multipliers[..., -1])
    values = jnp.concatenate(
        [premium[..., None], jnp.moveaxis(values[:-1], 0, -1), final.cash[..., None]], axis=-1)
    return TapeResult(
        terminal_value=final.cash,
        pnl=final.cash - payoff(spots[..., -1], strike, is_call),
        cost=final.cost,
        turnover=final.turnover,
        values=values,
    )
