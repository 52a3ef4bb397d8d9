"""Static implied-vol fit study: IVRMSE ×10³ per period × asset × bucket × group × model
(METHODS §5.5).

Per (day, bucket) slice s and moneyness group g, with Q(s, g) the slice's real quotes in g
whose market AND model IVs are finite:

    ivrmse(s, g) = 1000 · sqrt(mean_{i ∈ Q(s, g)} (σ_model,i − σ_mkt,i)²).

The table reports, per (period, asset, bucket, group, model), the equal-day average of
ivrmse(s, g) over the slices (= days, one slice per day and bucket) that have that bucket
and at least one quote in the group (a day with an empty group has no error to average,
not a zero error); ``n_days`` counts them. Market IVs that are NaN (quotes outside the
no-arbitrage bounds or needing σ > 10) are excluded for every model alike, so all models
of a cell are compared on the same quotes (unless a model IV itself is NaN, which the
model inversion avoids by clipping onto the bounds, see calibrate.iv).

The per-slice sums are vectorised over (n_slices, n_max) with masks; only the final
equal-day average (a few hundred numbers) is a pandas groupby.
"""
from __future__ import annotations

from typing import Callable, Mapping

import numpy as np
import pandas as pd

__all__ = ["GROUPS", "slice_ivrmse", "ivrmse_table"]

#: moneyness groups on K/F (METHODS §5.3)
GROUPS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "all": lambda m: np.ones_like(m, bool),
    "K/F<1": lambda m: m < 1.0,
    "K/F>1": lambda m: m > 1.0,
    "K/F>1.03": lambda m: m > 1.03,
}

_COLUMNS = ["period", "asset", "bucket_days", "group", "model", "ivrmse_x1e3", "n_days"]


def slice_ivrmse(model_iv, market_iv, mask, in_group):
    """Per-slice IVRMSE ×10³ and quote counts, all arrays (n_slices, n_max) -> (n_slices,).

    NaN where the slice has no usable quote in the group.
    """
    model_iv = np.asarray(model_iv, np.float64)
    market_iv = np.asarray(market_iv, np.float64)
    use = np.asarray(mask, bool) & np.asarray(in_group, bool)
    use &= np.isfinite(model_iv) & np.isfinite(market_iv)
    err2 = np.where(use, (model_iv - market_iv) ** 2, 0.0)
    n = use.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = 1000.0 * np.sqrt(err2.sum(axis=-1) / n)
    return np.where(n > 0, out, np.nan), n


def ivrmse_table(batch, model_ivs: Mapping[str, object], market_iv, groups=None,
                 key_names=("date", "bucket_days"), period=None, asset=None) -> pd.DataFrame:
    """Equal-day-average IVRMSE table of one batch of (day, bucket) slices.

    Args:
      batch: SliceBatch whose ``keys`` are tuples named by ``key_names``; they must include
        "date" and "bucket_days" and may include "period" and "asset" (else pass them).
      model_ivs: {model name: (n_slices, n_max) model IVs} (e.g. ``calibrate.model_iv``).
      market_iv: (n_slices, n_max) market IVs (``calibrate.market_iv``).
      groups: {name: predicate on K/F (n_slices, n_max) -> bool}; default :data:`GROUPS`.
      key_names: names of the entries of each key tuple.
      period, asset: labels used when the keys do not carry them.

    Returns:
      DataFrame with columns period, asset, bucket_days, group, model, ivrmse_x1e3, n_days.
    """
    groups = GROUPS if groups is None else groups
    key_names = tuple(key_names)
    if not {"date", "bucket_days"} <= set(key_names):
        raise ValueError(f"key_names: must include 'date' and 'bucket_days', got {key_names}")
    mask = np.asarray(batch.mask, bool)
    if len(batch.keys) != mask.shape[0] or any(len(k) != len(key_names) for k in batch.keys):
        raise ValueError(f"batch.keys: need one tuple of {len(key_names)} entries "
                         f"{key_names} per slice")
    market_iv = np.asarray(market_iv, np.float64)
    if market_iv.shape != mask.shape:
        raise ValueError(f"market_iv: shape {market_iv.shape} must equal {mask.shape}")
    keys = pd.DataFrame(list(batch.keys), columns=list(key_names))
    for name, label in (("period", period), ("asset", asset)):
        if name not in keys:
            keys[name] = label
    money = np.asarray(batch.strike, np.float64) / np.asarray(batch.forward, np.float64)
    rows = []
    for model, iv in model_ivs.items():
        iv = np.asarray(iv, np.float64)
        if iv.shape != mask.shape:
            raise ValueError(f"model_ivs[{model!r}]: shape {iv.shape} must equal {mask.shape}")
        for gname, pred in groups.items():
            val, _ = slice_ivrmse(iv, market_iv, mask, pred(money))
            part = keys[["period", "asset", "bucket_days"]].copy()
            part["group"], part["model"], part["v"] = gname, model, val
            rows.append(part)
    df = pd.concat(rows, ignore_index=True).dropna(subset=["v"])
    out = (df.groupby(["period", "asset", "bucket_days", "group", "model"], sort=False,
                      dropna=False)["v"].agg(["mean", "size"]).reset_index()
           .rename(columns={"mean": "ivrmse_x1e3", "size": "n_days"}))
    return out[_COLUMNS]
