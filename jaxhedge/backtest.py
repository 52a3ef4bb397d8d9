r"""Real-path hedging backtest of a short call (METHODS §5.6), on the project's single ledger.

Per episode (one short call sold at its premium p = ``C_eur``, hedged along the file's
realized spots S_0..S_N with N = ``n_hedges``):

* t = 0..N-1 (rebalancing dates): ``ledger.trade`` to u_t = delta(S_t, tau_t) at S_t, paying
  eps|u_t - u_{t-1}|S_t (the entry trade at t = 0 is charged), then ``ledger.accrue`` over
  the actual calendar gap dt_t = (date_{t+1} - date_t)/365 at the start day's r, the
  shares earning q_hat;
* t = N (terminal date): no trade; ``ledger.close_out`` with ``charge_unwind=False`` marks
  the shares to market at S_N, and the payoff (S_N - K)^+ is settled:
  Pi_T = B_N + u_{N-1} S_N - (S_N - K)^+.

Episodes are padded to a common T (``EpisodeBatch``); on padded steps the position is held,
dt = 0 and the spot is the terminal one, so they change nothing. Everything is one
``lax.scan`` over dates inside ``vmap`` over episodes, jitted.

Hedge ratios: an array (n, T) of positions, or a callable
``delta_fn(spot, tau, strike, rate, q_hat, params) -> shares`` on scalars (one episode,
one date), evaluated under vmap over dates and episodes with ``params`` a pytree whose
leaves have a leading episode axis (e.g. each episode's calibrated sigma). :func:`bs_delta_fn`
is the BS analytic e^{-q tau}N(d1); :func:`fd_delta_fn` turns a price function into the
METHODS central finite-difference delta. ``delta_fn`` is a static argument of a jitted
function: pass the same (module-level) function object each time, not a fresh lambda, or
every call recompiles.
"""
from __future__ import annotations

from functools import partial
from typing import Callable

import jax
import jax.numpy as jnp
from flax import struct

from jaxhedge import ledger, risk
from jaxhedge.data.episodes import EpisodeBatch
from jaxhedge.pricing import bs_delta, implied_vol_black76

__all__ = ["BacktestResult", "backtest", "hedge_ratios", "bs_delta_fn", "fd_delta_fn",
           "model_delta_fn",
           "anchor_implied_vol", "metrics", "DEFAULT_COST", "SLICES"]

DEFAULT_COST = 4e-3
_EP_BLOCK, _STEP_BLOCK = 64, 16
#: The 12 (bucket days, target K/F) slices of one asset-period (x 2 assets x 2 periods = 24).
SLICES = tuple((b, k) for b in (14, 28, 56) for k in (1.00, 1.03))


@struct.dataclass
class BacktestResult:
    """Per-episode outcome. Shapes: (n,) unless stated.

    Attributes:
      pnl: Pi_T, terminal hedging error after costs.
      cost: total transaction cost, entry included.
      error_before_cost: Pi_T + cost.
      turnover: sum |du| over the rebalances, entry included (the free mark-to-market close
        is not a trade).
      n_hedges: number of rebalancing dates (int).
      positions: (n, T) the hedge held after each rebalance (held value on padding).
      values: (n, T+1) the P&L path: hedge account value B + u S marked at each date before
        trading (values[:, 0] = premium), and V_T at the terminal index and after.
    """

    pnl: jax.Array
    cost: jax.Array
    error_before_cost: jax.Array
    turnover: jax.Array
    n_hedges: jax.Array
    positions: jax.Array
    values: jax.Array


def bs_delta_fn(spot, tau, strike, rate, q_hat, vol):
    """BS call delta e^{-q tau} N(d1) at a fixed ``vol`` (``params`` = vol, (n,))."""
    return bs_delta(spot, strike, tau, rate, vol, q_hat)


def model_delta_fn(spot, tau, strike, rate, q_hat, fit):
    """Delta of a calibrated model (``jaxhedge.calibrate.model_delta``; ``params`` = the
    per-episode fit, e.g. ``fit_bs(episodes.anchor)``): BS analytic, others by METHODS
    central differences."""
    from jaxhedge.calibrate import model_delta  # lazy: calibration is an optional layer here

    return model_delta(fit, spot, strike, tau, rate, q_hat)


def fd_delta_fn(price_fn: Callable) -> Callable:
    """Central-difference delta of ``price_fn(spot, tau, strike, rate, q_hat, params)``.

    Step h = max(1e-4, 1e-3 max(|S|, 1)) (METHODS §5.6).
    """
    def delta(spot, tau, strike, rate, q_hat, params):
        h = jnp.maximum(1e-4, 1e-3 * jnp.maximum(jnp.abs(spot), 1.0))
        up = price_fn(spot + h, tau, strike, rate, q_hat, params)
        down = price_fn(spot - h, tau, strike, rate, q_hat, params)
        return (up - down) / (2 * h)
    return delta


def anchor_implied_vol(episodes: EpisodeBatch) -> jax.Array:
    """Black-76 implied vol of each episode's premium (its ``C_eur``) on the start day's F,
    tau and DF = exp(-r tau): the simplest BS surface-delta vol, (n,). NaN where the premium
    is outside the no-arbitrage bounds (see ``implied_vol_black76``)."""
    return _anchor_iv(episodes.premium, episodes.forward, episodes.strike, episodes.tau[:, 0],
                      episodes.rate)


@jax.jit
def _anchor_iv(premium, forward, strike, tau0, rate):
    return implied_vol_black76(premium, forward, strike, tau0, jnp.exp(-rate * tau0)).vol


def hedge_ratios(episodes: EpisodeBatch, delta_fn: Callable, params=None,
                 params_axis: int | None = 0) -> jax.Array:
    """Evaluate ``delta_fn`` at every (episode, date): (n, T); padded steps give 0 here
    (the backtest holds the position there anyway).

    ``params_axis=0``: ``params`` leaves carry one entry per episode (calibrated model
    parameters); ``None``: ``params`` is shared by all episodes (a trained policy network in
    "policy mode").
    """
    e = episodes
    return _hedge_ratios(e.spots[:, :-1], e.tau[:, :-1], e.step_mask, e.strike, e.rate,
                         e.q_hat, params, delta_fn, params_axis)


@partial(jax.jit, static_argnums=(7, 8))
def _hedge_ratios(spot, tau, mask, strike, rate, q_hat, params, delta_fn, params_axis):
    # Arrays only (no host metadata) so slices of equal shapes share the compilation.
    per_date = jax.vmap(delta_fn, in_axes=(0, 0, None, None, None, None))
    axis = params_axis if params is not None else None
    per_ep = jax.vmap(per_date, in_axes=(0, 0, 0, 0, 0, axis))
    # Padded dates may sit at tau = 0 (expiry); keep them finite and masked out.
    safe_tau = jnp.where(mask, tau, 1.0)
    u = per_ep(spot, safe_tau, strike, rate, q_hat, params)
    return jnp.where(mask, u, 0.0).astype(spot.dtype)


def _one_episode(spots, dt, mask, positions, premium, strike, rate, q_hat, cost):
    """Ledger run of one episode: spots (T+1,), dt/mask/positions (T,), scalars."""
    params = ledger.LedgerParams(costs=ledger.CostModel(proportional=cost), rate=rate,
                                 div_yield=q_hat, dt=0.0, charge_entry=True,
                                 charge_unwind=False)
    state = ledger.open_account(premium, like=spots)

    def step(state, xs):
        s, s_next, dt_t, m, u = xs
        target = jnp.where(m, u, state.shares)  # padded step: hold (no trade, no cost)
        state = ledger.trade(state, target, s, params)
        state = ledger.accrue(state, s_next, params.replace(dt=dt_t))
        return state, (state.shares, ledger.portfolio_value(state, s_next))

    state, (held, values) = jax.lax.scan(
        step, state, (spots[:-1], spots[1:], dt, mask, positions))
    turnover = state.turnover
    final = ledger.close_out(state, spots[-1], params)
    pnl = final.cash - ledger.payoff(spots[-1], strike)
    values = jnp.concatenate([premium[None], values])
    return pnl, final.cost, turnover, held, values


@jax.jit
def _run(spots, dt, mask, positions, premium, strike, rate, q_hat, n_hedges, cost):
    # Arrays only (no host metadata), so slices of equal shapes share one compilation.
    pnl, tc, turn, held, values = jax.vmap(_one_episode, in_axes=(0,) * 8 + (None,))(
        spots, dt, mask, positions, premium, strike, rate, q_hat, cost)
    return BacktestResult(pnl=pnl, cost=tc, error_before_cost=pnl + tc, turnover=turn,
                          n_hedges=n_hedges, positions=held, values=values)


def backtest(episodes: EpisodeBatch, hedge, cost=DEFAULT_COST, params=None,
             params_axis: int | None = 0) -> BacktestResult:
    """Hedge every episode of ``episodes`` and settle it (rules in the module doc).

    Args:
      episodes: an :class:`EpisodeBatch` (float32 or float64; the result follows it).
      hedge: (n, T) positions, or ``delta_fn`` (see module doc).
      cost: proportional cost eps (METHODS: 4e-3), >= 0.
      params: parameters for ``delta_fn``: per episode (leading axis n, e.g. sigma (n,)) or,
        with ``params_axis=None``, shared by all episodes.
    """
    if isinstance(cost, (int, float)) and not 0 <= cost < 1:
        raise ValueError(f"cost: proportional cost must be in [0, 1), got {cost}")
    dtype = episodes.spots.dtype
    if callable(hedge):
        positions = hedge_ratios(episodes, hedge, params, params_axis)
    else:
        positions = jnp.asarray(hedge, dtype)
        if positions.shape != episodes.step_mask.shape:
            raise ValueError(f"hedge: positions must have shape {episodes.step_mask.shape} "
                             f"(episodes, max rebalances), got {positions.shape}")
    e = episodes
    n, t = e.step_mask.shape
    # Pad to coarse shapes (episodes to a multiple of 64, dates to a multiple of 16) so the
    # 24 slices of a study share a few compilations. Padded dates hold the terminal spot
    # with dt = 0 and mask False; padded episodes are all-False dummies; both are no-ops
    # for the ledger and are sliced off below.
    pn, pt = -n % _EP_BLOCK, -t % _STEP_BLOCK
    spots = jnp.pad(jnp.pad(e.spots, ((0, 0), (0, pt)), mode="edge"), ((0, pn), (0, 0)),
                    constant_values=1.0)
    grid = lambda a, v: jnp.pad(a, ((0, pn), (0, pt)), constant_values=v)
    vec = lambda a, v: jnp.pad(a, (0, pn), constant_values=v)
    res = _run(spots, grid(e.dt, 0.0), grid(e.step_mask, False), grid(positions, 0.0),
               vec(e.premium, 0.0), vec(e.strike, 1.0), vec(e.rate, 0.0), vec(e.q_hat, 0.0),
               vec(e.n_hedges, 1), jnp.asarray(cost, dtype))
    return jax.tree.map(lambda a: a[:n], res).replace(
        positions=res.positions[:n, :t], values=res.values[:n, :t + 1])


def metrics(result: BacktestResult) -> dict[str, float]:
    """Slice metrics of METHODS §5.6 over the episodes of ``result``.

    Keys: rmse sqrt(mean Pi_T^2); avg_cost (mean total cost, entry included);
    shortfall_prob P(Pi_T < 0); es_5, es_10 (ES of SF = max(-Pi_T, 0), worst 5%/10%);
    n_hedges = number of episodes (hedged contracts: the quantity of the METHODS sanity
    counts); mean_rebalances (mean rebalancing dates per episode); mean_pnl;
    rmse_before_cost (RMSE of Pi_T + TC, the cost-risk map's risk axis).
    """
    pnl = result.pnl
    return {
        "rmse": float(risk.rmse(pnl)),
        "avg_cost": float(jnp.mean(result.cost)),
        "shortfall_prob": float(risk.shortfall_probability(pnl)),
        "es_5": float(risk.es_shortfall(pnl, 0.05)),
        "es_10": float(risk.es_shortfall(pnl, 0.10)),
        "n_hedges": int(pnl.shape[0]),
        "mean_rebalances": float(jnp.mean(result.n_hedges.astype(pnl.dtype))),
        "mean_pnl": float(jnp.mean(pnl)),
        "rmse_before_cost": float(risk.rmse(result.error_before_cost)),
    }
