"""Historical market (METHODS §1): a real price series as one path, or many paths made by the
stationary block bootstrap (Politis & Romano 1994) of its log returns.

Vol field (both functions): trailing realised vol over a window of W returns (default
W = 20, about one trading month), not demeaned and annualised by ``dt``:

    vol_t^2 = ( sum_{u = t-W}^{t-1} r_u^2 + max(W - t, 0) * sigma_hat^2 dt ) / (W dt),

i.e. while fewer than W returns have been observed (t < W) the missing ones are filled with the
full-sample variance sigma_hat^2 dt (sigma_hat = sample std of the input log returns / sqrt(dt)),
so vol_0 = sigma_hat and there is never a zero or NaN at the start. It uses only returns up to
t (no look-ahead).

The shared data (``/work/shared/data/options``, see its README): ``spy_eod_and_box_rate.csv``
(columns ``Date, SPY, SOFR_Rate``) or the ``S`` column by ``date`` of the preprocessed chain
files (one row per contract, so dates repeat; the 2020Q1 files hold about every other trading
day — returns there span 1-2 trading days, which the bootstrap treats as i.i.d.-blocked steps).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from flax import struct

from jaxhedge.markets import _common as C
from jaxhedge.markets.base import MarketPaths

DEFAULT_VOL_WINDOW = 20


# --------------------------------------------------------------------------- loading
class SpotSeries(NamedTuple):
    prices: pd.Series  # float64, indexed by a sorted, unique DatetimeIndex
    n_dropped: int  # rows dropped as invalid: unparseable date, NaN / non-positive / non-numeric price
    n_duplicates: int  # rows removed because their date was already present (first kept)


def load_spot_series(
    csv_path: str | Path,
    date_col: str = "Date",
    price_col: str = "SPY",
    *,
    symbol: str | None = None,
    symbol_col: str = "act_symbol",
) -> SpotSeries:
    """Read one spot series from a CSV: deduplicate dates (keep first), sort, drop bad rows.

    Defaults fit ``spy_eod_and_box_rate.csv``; for a preprocessed chain file use
    ``date_col="date", price_col="S"`` (see :func:`load_chain_spot`). ``symbol`` keeps only
    rows whose ``symbol_col`` equals it. Duplicate dates with conflicting prices raise
    ValueError (the chain files repeat one ``S`` per date; disagreement means a bad file).
    """
    df = pd.read_csv(csv_path)
    for col in (date_col, price_col) + ((symbol_col,) if symbol is not None else ()):
        if col not in df.columns:
            raise ValueError(f"load_spot_series: column {col!r} not in {csv_path} (columns: {list(df.columns)})")
    if symbol is not None:
        df = df[df[symbol_col] == symbol]
    dates = pd.to_datetime(df[date_col], errors="coerce")
    prices = pd.to_numeric(df[price_col], errors="coerce")
    ok = dates.notna() & prices.notna() & np.isfinite(prices) & (prices > 0)
    n_dropped = int((~ok).sum())
    s = pd.Series(prices[ok].to_numpy(dtype=float), index=pd.DatetimeIndex(dates[ok]), name=price_col)
    s = s.sort_index(kind="stable")
    spread = s.groupby(level=0).agg(lambda x: x.max() - x.min())
    conflict = spread[spread > 1e-9 * s.abs().max()]
    if len(conflict):
        raise ValueError(
            f"load_spot_series: {len(conflict)} dates carry different prices in {price_col!r} "
            f"(first: {conflict.index[0].date()})"
        )
    dup = s.index.duplicated(keep="first")
    s = s[~dup]
    s.index.name = "date"
    return SpotSeries(s, n_dropped, int(dup.sum()))


def load_chain_spot(csv_path: str | Path, symbol: str | None = None) -> SpotSeries:
    """The underlying close ``S`` by ``date`` from a preprocessed chain file."""
    return load_spot_series(csv_path, date_col="date", price_col="S", symbol=symbol)


def log_returns(prices) -> np.ndarray:
    """Host-side log returns ln(P_{t+1}/P_t), float64 numpy."""
    p = np.asarray(prices, dtype=float)
    return np.diff(np.log(p))


# --------------------------------------------------------------------------- vol
def trailing_realized_vol(returns: jax.Array, dt, window: int, sample_var_per_step) -> jax.Array:
    """vol (n_paths, n_steps + 1) from returns (n_paths, n_steps); see the module docstring."""
    n_paths, n_steps = returns.shape
    dtype = returns.dtype
    c = jnp.concatenate([jnp.zeros((n_paths, 1), dtype), jnp.cumsum(returns**2, axis=1)], axis=1)
    t = jnp.arange(n_steps + 1)
    lo = jnp.maximum(t - window, 0)
    ssq = c - c[:, lo]
    fill = jnp.maximum(window - t, 0).astype(dtype) * sample_var_per_step
    return jnp.sqrt(jnp.maximum(ssq + fill, 0.0) / (window * dt))


def historical_path(
    prices, dt: float = 1.0 / 252.0, vol_window: int = DEFAULT_VOL_WINDOW, dtype=None
) -> MarketPaths:
    """The observed series as one path: ``spot[0] == prices`` (n_paths = 1, n_steps = len-1).

    ``prices`` may be a pandas Series, numpy or jax array; ``dtype`` defaults to the current
    default float (float32, or float64 under x64). cost_multiplier = 1.
    """
    p = np.asarray(prices, dtype=float)
    if p.ndim != 1 or p.size < 2:
        raise ValueError(f"historical.prices: need a 1-D series of >= 2 prices (got shape {p.shape})")
    C.positive("historical.prices", p)
    dtype = dtype or jnp.result_type(float)
    r = log_returns(p)
    spot = jnp.asarray(p, dtype)[None, :]
    var_step = jnp.asarray(r.var(ddof=1) if r.size > 1 else r[0] ** 2, dtype)
    vol = trailing_realized_vol(jnp.asarray(r, dtype)[None, :], jnp.asarray(dt, dtype), vol_window, var_step)
    return MarketPaths(spot=spot, vol=vol, cost_multiplier=jnp.ones_like(spot))


# --------------------------------------------------------------------------- bootstrap
@struct.dataclass
class HistoricalParams:
    """Stationary-bootstrap market. ``log_returns`` is a fixed-length array leaf (n_returns,).

    ``vol_window`` is static (not a pytree leaf); every other field can be vmapped.
    """

    log_returns: jax.Array
    s0: float = 1.0
    mean_block_length: float = 10.0
    vol_window: int = struct.field(pytree_node=False, default=DEFAULT_VOL_WINDOW)

    @classmethod
    def from_prices(cls, prices, s0: float | None = None, mean_block_length: float = 10.0,
                    vol_window: int = DEFAULT_VOL_WINDOW) -> "HistoricalParams":
        """s0 defaults to the first observed price."""
        p = np.asarray(prices, dtype=float)
        return cls(
            log_returns=jnp.asarray(log_returns(p), dtype=float),
            s0=float(p[0]) if s0 is None else s0,
            mean_block_length=mean_block_length,
            vol_window=vol_window,
        )


def validate(params: HistoricalParams) -> HistoricalParams:
    """Host-side check (call before jit); raises ValueError naming the field."""
    r = np.asarray(params.log_returns, dtype=float)
    if r.ndim < 1 or r.shape[-1] < 2:
        raise ValueError(f"historical.log_returns: need >= 2 returns (got shape {r.shape})")
    C.finite("historical.log_returns", r)
    C.positive("historical.s0", params.s0)
    C.check("historical.mean_block_length", params.mean_block_length, lambda a: a >= 1, ">= 1")
    if not isinstance(params.vol_window, int) or params.vol_window < 1:
        raise ValueError(f"historical.vol_window: must be an int >= 1 (got {params.vol_window!r})")
    return params


def bootstrap_indices(key, n_returns: int, mean_block_length, n_paths: int, n_steps: int) -> jax.Array:
    """Stationary-bootstrap indices (n_paths, n_steps) into an array of n_returns returns.

    Step 0 starts a block at a uniform index; each later step starts a new block (uniform
    start) with probability p = 1/mean_block_length, else continues at (previous + 1) mod
    n_returns (wrap-around). Block lengths are therefore Geometric(p), mean 1/p.
    Vectorised: the index is start[last_block_start] + (t - last_block_start) mod n.
    """
    k_b, k_s = jax.random.split(key)
    p = 1.0 / jnp.asarray(mean_block_length, jnp.result_type(float))
    new_block = jax.random.bernoulli(k_b, p, (n_paths, n_steps))
    new_block = new_block.at[:, 0].set(True)
    starts = jax.random.randint(k_s, (n_paths, n_steps), 0, n_returns)
    t = jnp.arange(n_steps)
    last = jax.lax.cummax(jnp.where(new_block, t, 0), axis=1)
    start_val = jnp.take_along_axis(starts, last, axis=1)
    return (start_val + (t - last)) % n_returns


@C.fast_threefry
def simulate_block_bootstrap(key, params: HistoricalParams, n_paths: int, n_steps: int, dt: float) -> MarketPaths:
    """Paths S_t = s0 exp(cumsum of bootstrapped log returns); vol = trailing realised vol.

    ``dt`` is the time step the input returns were sampled at (e.g. 1/252 for daily data); it
    only annualises the vol field.
    """
    dtype = C.float_dtype(params)
    r = C.as_float(params.log_returns, dtype)
    n_returns = r.shape[-1]
    idx = bootstrap_indices(key, n_returns, params.mean_block_length, n_paths, n_steps)
    incr = r[idx]
    s0 = C.as_float(params.s0, dtype)
    dt = C.as_float(dt, dtype)
    var_step = jnp.var(r, ddof=1)
    shape = (n_paths, n_steps + 1)
    return MarketPaths(
        spot=C.spot_from_log_increments(s0, incr),
        vol=trailing_realized_vol(incr, dt, params.vol_window, var_step),
        cost_multiplier=jnp.ones(shape, dtype),
    )


simulate = simulate_block_bootstrap
