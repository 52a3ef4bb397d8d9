r"""Hedging episodes of the dynamic study (METHODS §5.6) as one padded pytree.

For every start day d in [start, end] and one slice (bucket centre c in days, target K/F):

* anchor expiry  = the expiry of day d whose tau_days is closest to c (ties -> shorter);
* strike         = the anchor strike whose K/F (the file's F) is closest to the target
                   (ties -> lower strike); premium = its ``C_eur``;
* realized path  = the file's ``S`` by date, over *all* file dates (the 2025 files run past
                   June, which late-June episodes need);
* terminal date  = the last file date on or before the expiry; the start day is skipped when
                   that is more than 1 calendar day before the expiry (expiry past the end of
                   the file, or an expiry with no row that day);
* rebalancing    = every file date from d up to the last date before the terminal date;
                   ``n_hedges`` = their number (the terminal date has no trade);
* rate           = the start day's r; q_hat = r - log(F/S)/tau clipped to [-0.10, 0.20] with
                   the anchor's F and tau on the start day.

The METHODS "sanity counts" for the 28-day bucket (23 SPY/XOP 2020Q1, 62 SPY 2025Q2, 57 XOP
2025Q2) are the number of *episodes* (hedged contracts, i.e. start days kept) of a slice,
not rebalances per episode (those are 10-23 there): tests/data/test_episodes.py checks them.

Shapes (n = episodes, T = max rebalances): spots, tau (n, T+1); dt, step_mask (n, T);
strike, premium, rate, q_hat, forward, n_hedges (n,); anchor a SliceBatch (n, n_max).
Padding: after the terminal index the spot and tau repeat their terminal value and dt is 0,
so a padded step is a no-op for the ledger.
"""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pandas as pd
from flax import struct

from jaxhedge.data.report import DropReport
from jaxhedge.data.slices import SliceBatch, pad_slices

__all__ = ["EpisodeBatch", "episodes_from_arrays", "build_episodes", "Q_HAT_BOUNDS"]

Q_HAT_BOUNDS = (-0.10, 0.20)
_NEEDED = ("date", "expiration", "strike", "tau_days", "tau_years", "S", "r", "DF", "F", "C_eur")


@struct.dataclass
class EpisodeBatch:
    """Padded hedging episodes (shape contract in the module doc).

    Host metadata (static): ``start_dates``, ``expiries``, ``terminal_dates`` (ISO strings,
    one per episode) and ``slice_key`` (e.g. ``("spy", "2020q1", 28, 1.0)``).
    """

    spots: jnp.ndarray
    tau: jnp.ndarray
    dt: jnp.ndarray
    step_mask: jnp.ndarray
    strike: jnp.ndarray
    premium: jnp.ndarray
    rate: jnp.ndarray
    q_hat: jnp.ndarray
    forward: jnp.ndarray
    n_hedges: jnp.ndarray
    anchor: SliceBatch | None = None
    start_dates: tuple = struct.field(pytree_node=False, default=())
    expiries: tuple = struct.field(pytree_node=False, default=())
    terminal_dates: tuple = struct.field(pytree_node=False, default=())
    slice_key: tuple = struct.field(pytree_node=False, default=())

    @property
    def n_episodes(self) -> int:
        return int(self.spots.shape[0])

    @property
    def terminal_spot(self) -> jnp.ndarray:
        """S at each episode's terminal date, (n,)."""
        return jnp.take_along_axis(self.spots, self.n_hedges[:, None].astype(int), 1)[:, 0]


def _float_dtype(dtype):
    return jnp.result_type(float) if dtype is None else jnp.dtype(dtype)


def episodes_from_arrays(spots, times, expiry, strike, premium, rate, q_hat, n_hedges=None,
                         forward=None, anchor=None, dtype=None, **meta) -> EpisodeBatch:
    """Build an :class:`EpisodeBatch` from arrays (synthetic paths, tests).

    Args:
      spots, times: (n, T+1) spots and dates in years; entries past ``n_hedges`` are
        ignored (overwritten by the terminal values).
      expiry: (n,) expiry in the same years as ``times``; tau = expiry - times.
      strike, premium, rate, q_hat: (n,).
      n_hedges: (n,) number of rebalances (terminal index); default T for all.
      forward: (n,) anchor forward on the start day (metadata; default NaN).
    """
    dt_ = _float_dtype(dtype)
    spots = np.asarray(spots, np.float64)
    times = np.asarray(times, np.float64)
    if spots.ndim != 2 or spots.shape != times.shape or spots.shape[1] < 2:
        raise ValueError(f"spots/times: need equal shapes (n, T+1) with T >= 1, got "
                         f"{spots.shape} and {times.shape}")
    n, t1 = spots.shape
    nh = np.full(n, t1 - 1) if n_hedges is None else np.asarray(n_hedges, int)
    if np.any(nh < 1) or np.any(nh > t1 - 1):
        raise ValueError(f"n_hedges: must lie in [1, {t1 - 1}], got {nh.min()}..{nh.max()}")
    idx = np.minimum(np.arange(t1)[None, :], nh[:, None])
    spots = np.take_along_axis(spots, idx, 1)
    times = np.take_along_axis(times, idx, 1)
    tau = np.asarray(expiry, np.float64)[:, None] - times
    dt = np.diff(times, axis=1)
    if np.any(dt < 0) or np.any(tau[np.arange(n), nh] < -1e-12):
        raise ValueError("times: must be non-decreasing and end on or before expiry")
    mask = np.arange(t1 - 1)[None, :] < nh[:, None]
    f = np.full(n, np.nan) if forward is None else np.asarray(forward, np.float64)
    as_ = lambda a: jnp.asarray(np.broadcast_to(np.asarray(a, np.float64), (n,)), dt_)
    return EpisodeBatch(
        spots=jnp.asarray(spots, dt_), tau=jnp.asarray(tau, dt_), dt=jnp.asarray(dt, dt_),
        step_mask=jnp.asarray(mask), strike=as_(strike), premium=as_(premium), rate=as_(rate),
        q_hat=as_(q_hat), forward=as_(f), n_hedges=jnp.asarray(nh, jnp.int32), anchor=anchor,
        **meta)


def build_episodes(chain: pd.DataFrame, *, start, end, bucket_days: int, target_km: float,
                   dtype=None, slice_key: tuple = ()) -> tuple[EpisodeBatch, DropReport]:
    """The episodes of one slice (rules in the module doc), start days in [start, end].

    Args:
      chain: a cleaned, converted call chain of one symbol over the whole file (columns
        date, expiration, strike, tau_days, tau_years, S, r, DF, F, C_eur).
      start, end: first and last start day (inclusive).
      bucket_days: bucket centre c (days); target_km: target K/F.

    Returns:
      (EpisodeBatch sorted by start day, DropReport over candidate start days: n_in = days
      in [start, end] with quotes, reasons for the skipped ones).
    """
    missing = [c for c in _NEEDED if c not in chain.columns]
    if missing:
        raise ValueError(f"build_episodes: chain is missing columns {missing}")
    if not bucket_days > 0 or not 0 < target_km < 10:
        raise ValueError(f"bucket_days must be > 0 and target_km in (0, 10), got "
                         f"{bucket_days}, {target_km}")
    calls = chain[chain["call_put"] == "Call"] if "call_put" in chain.columns else chain
    spot_by_date = calls.groupby("date")["S"].agg(["first", "min", "max"])
    bad = spot_by_date["max"] - spot_by_date["min"] > 1e-9 * spot_by_date["max"]
    if bad.any():
        raise ValueError(f"chain: column S differs within {int(bad.sum())} dates (first "
                         f"{spot_by_date.index[bad][0].date()}); S must be one close per date")
    path_dates = spot_by_date.index.to_numpy()  # sorted, unique
    path_spots = spot_by_date["first"].to_numpy(float)
    start, end = pd.Timestamp(start), pd.Timestamp(end)
    day = calls[(calls["date"] >= start) & (calls["date"] <= end)]
    report = DropReport(n_in=int(day["date"].nunique()))
    if day.empty:
        raise ValueError(f"start/end: no quotes between {start.date()} and {end.date()}")

    # Anchor expiry per day: nearest tau to the centre; sort by tau first so idxmin's
    # first-occurrence rule sends ties to the shorter expiry.
    exp = day.groupby(["date", "expiration"], as_index=False)["tau_days"].first()
    exp["dist"] = (exp["tau_days"] - bucket_days).abs()
    exp = exp.sort_values(["date", "dist", "tau_days"], kind="stable")
    anchor = exp.groupby("date", as_index=False).first()[["date", "expiration"]]
    # Terminal date: last file date on or before expiry.
    e = anchor["expiration"].to_numpy()
    term_idx = np.searchsorted(path_dates, e, side="right") - 1
    start_idx = np.searchsorted(path_dates, anchor["date"].to_numpy(), side="left")
    term_date = path_dates[np.maximum(term_idx, 0)]
    gap = (pd.DatetimeIndex(e) - pd.DatetimeIndex(term_date)).days.to_numpy()
    far = gap > 1
    report.add("terminal date > 1 calendar day before expiry", int(far.sum()))
    none = ~far & (term_idx <= start_idx)
    report.add("no rebalancing date before the terminal date", int(none.sum()))
    ok = ~far & ~none
    anchor = anchor[ok].reset_index(drop=True)
    start_idx, term_idx = start_idx[ok], term_idx[ok]
    if anchor.empty:
        raise ValueError(f"slice {slice_key or (bucket_days, target_km)}: no episodes "
                         f"({report})")

    rows = calls.merge(anchor, on=["date", "expiration"])
    rows = rows.assign(dist=(rows["strike"] / rows["F"] - target_km).abs())
    pick = (rows.sort_values(["date", "dist", "strike"], kind="stable")
            .groupby("date", as_index=False).first())
    report.n_out = len(pick)

    n_h = term_idx - start_idx
    t_max = int(n_h.max())
    idx = np.minimum(start_idx[:, None] + np.arange(t_max + 1)[None, :], term_idx[:, None])
    days = (pd.DatetimeIndex(path_dates).to_numpy().astype("datetime64[D]").astype(np.int64))
    times = days[idx].astype(np.float64) / 365.0
    expiry = pick["expiration"].to_numpy().astype("datetime64[D]").astype(np.int64) / 365.0
    r, f, s0, tau0 = (pick[c].to_numpy(float) for c in ("r", "F", "S", "tau_years"))
    q_hat = np.clip(r - np.log(f / s0) / tau0, *Q_HAT_BOUNDS)
    anchors = pad_slices(rows.drop(columns="dist"), by=("date", "expiration"),
                         dtype=_float_dtype(dtype))
    iso = lambda a: tuple(str(pd.Timestamp(x).date()) for x in a)
    batch = episodes_from_arrays(
        path_spots[idx], times, expiry, pick["strike"], pick["C_eur"], r, q_hat, n_hedges=n_h,
        forward=f, anchor=anchors, dtype=dtype, start_dates=iso(pick["date"]),
        expiries=iso(pick["expiration"]), terminal_dates=iso(path_dates[term_idx]),
        slice_key=tuple(slice_key))
    return batch, report
