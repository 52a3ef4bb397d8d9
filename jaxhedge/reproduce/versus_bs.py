r"""Each hedger against Black-Scholes on the same episodes: is a "win" a hedge or a bet?

For one hedging slice, beside a model's metrics the study reports

* ``hedge0`` / ``bs_hedge0`` -- mean first-day hedge ratio of the model and of BS (the BS
  delta at the BS fit of the same start day) over the same episodes;
* ``pnl_beta`` / ``bs_pnl_beta`` -- the OLS slope of Pi_T / S_0 on the underlying's return
  S_T / S_0 - 1 over the episode (:func:`jaxhedge.comparison.directional_slope` on the P&L
  in units of the initial spot): the number of shares of directional exposure the P&L
  behaves as if it carried. A hedge's is near BS's; a short call over-hedged by x shares
  shows about +x. ``beta_r2`` is the model's R^2;
* ``d_<metric>``, ``d_<metric>_lo``, ``d_<metric>_hi`` -- model minus BS for RMSE, mean
  cost, shortfall probability and ES 5%, with a paired circular block-bootstrap 95% CI over
  start days (:func:`jaxhedge.comparison.paired_bootstrap`).

Block length (experiments/paper/README.md): an episode spans ``n_hedges`` file dates, so
two episodes whose start days are fewer than that many file dates apart share market moves;
a block of ``median(n_hedges)`` start days keeps that dependence. The block is capped at
``n_days // MIN_BLOCKS`` so every resample is built from at least ``MIN_BLOCKS`` blocks
(a circular block as long as the sample would return the sample itself, and an interval
of width zero). Start days are indexed over every file date of the period, so a day
without an episode in this slice still separates its neighbours.
"""
from __future__ import annotations

import math

import jax
import numpy as np
import pandas as pd

from jaxhedge.comparison import PAIRED_METRICS, directional_slope, paired_bootstrap

__all__ = ["block_length", "start_day_index", "versus_bs", "DIRECTIONAL_COLUMNS",
           "CI_COLUMNS", "METRIC_COLUMN", "N_BOOT", "BOOT_SEED", "MIN_BLOCKS", "LEVEL"]

N_BOOT = 2000
BOOT_SEED = 0
MIN_BLOCKS = 4
LEVEL = 0.95
#: comparison.PAIRED_METRICS name -> hedging-table column
METRIC_COLUMN = {"rmse": "rmse", "mean_cost": "avg_cost", "shortfall_prob": "shortfall_prob",
                 "es_5": "es_5"}
DIRECTIONAL_COLUMNS = ["mean_pnl", "hedge0", "bs_hedge0", "pnl_beta", "bs_pnl_beta", "beta_r2"]
CI_COLUMNS = [f"d_{METRIC_COLUMN[m]}{s}" for m in PAIRED_METRICS for s in ("", "_lo", "_hi")]


def block_length(n_hedges, n_days: int) -> int:
    """``median(n_hedges)`` start days, capped at ``n_days // MIN_BLOCKS`` (module doc).

    >>> block_length([19, 20, 21], 62), block_length([19, 20, 21], 30), block_length([3], 2)
    (15, 7, 1)
    """
    med = math.ceil(float(np.median(np.asarray(n_hedges, float))))
    return int(max(1, min(med, n_days // MIN_BLOCKS)))


def start_day_index(start_dates, period_dates) -> np.ndarray:
    """``(n,)`` position of each episode's start date among the period's file dates."""
    days = pd.DatetimeIndex(sorted(pd.to_datetime(pd.Series(period_dates)).unique()))
    idx = days.get_indexer(pd.to_datetime(pd.Series(list(start_dates))))
    if (idx < 0).any():
        raise ValueError("start_day_index: an episode starts on a date outside the period")
    return idx


def _beta(pnl, s0, ret) -> tuple[float, float]:
    if pnl.size < 2:
        return float("nan"), float("nan")
    d = directional_slope(pnl / s0, ret)
    return d["slope"], d["r2"]


def versus_bs(result, reference, spots0, spots_t, day, block: int, key=None,
              bootstrap: bool = True) -> dict:
    """The columns of the module doc for a model's ``result`` against the BS ``reference``.

    Args:
      result, reference: :class:`jaxhedge.backtest.BacktestResult` of the model and of BS
        on the same episodes, in the same order.
      spots0, spots_t: ``(n,)`` spot on the start day and on the terminal date.
      day: ``(n,)`` start-day index (:func:`start_day_index`).
      block: block length in start days (:func:`block_length`).
      key: PRNG key of the bootstrap (default ``BOOT_SEED``): one key for every model of a
        slice, so all are compared on the same resamples.
      bootstrap: False leaves the ``d_*`` columns NaN (the reference against itself).
    """
    pnl, ref = np.asarray(result.pnl, np.float64), np.asarray(reference.pnl, np.float64)
    s0, st = np.asarray(spots0, np.float64), np.asarray(spots_t, np.float64)
    ret = st / s0 - 1.0
    beta, r2 = _beta(pnl, s0, ret)
    out = {"mean_pnl": float(pnl.mean()),
           "hedge0": float(np.mean(np.asarray(result.positions)[:, 0])),
           "bs_hedge0": float(np.mean(np.asarray(reference.positions)[:, 0])),
           "pnl_beta": beta, "bs_pnl_beta": _beta(ref, s0, ret)[0], "beta_r2": r2}
    if not bootstrap:
        return {**out, **{c: float("nan") for c in CI_COLUMNS}}
    ci = paired_bootstrap(result.pnl, result.cost, reference.pnl, reference.cost, day,
                          jax.random.key(BOOT_SEED) if key is None else key, n_boot=N_BOOT,
                          block=block, level=LEVEL)
    for m in PAIRED_METRICS:
        col = f"d_{METRIC_COLUMN[m]}"
        out.update({col: ci[m]["diff"], f"{col}_lo": ci[m]["lo"], f"{col}_hi": ci[m]["hi"]})
    return out
