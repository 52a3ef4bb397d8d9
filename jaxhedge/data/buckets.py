"""Maturity buckets, moneyness groups and static (date, bucket) slices, METHODS §5.3.

* Each expiry goes to the bucket whose centre (14, 28, 56 days) is nearest its
  ``tau_days``. Ties (tau = 21 or 42 days) go to the *shorter* bucket (first centre in
  ascending order); see docs/data.md.
* Moneyness is K/F with F the file's forward for that expiry (``moneyness_F``).
* IV groups, as boolean masks: ``all``, ``K/F<1``, ``K/F>1``, ``K/F>1.03`` (strict).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from jaxhedge.data.slices import SliceBatch, pad_slices

__all__ = ["BUCKET_CENTRES", "GROUPS", "bucket_of", "assign_buckets", "group_masks",
           "static_slices"]

BUCKET_CENTRES = (14, 28, 56)
GROUPS = ("all", "K/F<1", "K/F>1", "K/F>1.03")


def bucket_of(tau_days, centres=BUCKET_CENTRES) -> np.ndarray:
    """Nearest bucket centre of each ``tau_days`` (ties -> the shorter bucket). Shape kept."""
    c = np.asarray(centres)
    t = np.asarray(tau_days, float)
    return c[np.argmin(np.abs(t[..., None] - c), axis=-1)]


def assign_buckets(frame: pd.DataFrame, centres=BUCKET_CENTRES) -> pd.DataFrame:
    """A copy of ``frame`` with an int ``bucket`` column (the centre in days)."""
    if "tau_days" not in frame.columns:
        raise ValueError("assign_buckets: frame is missing column 'tau_days'")
    out = frame.copy()
    out["bucket"] = bucket_of(out["tau_days"].to_numpy(), centres)
    return out


def group_masks(moneyness, mask=None) -> dict[str, np.ndarray]:
    """Masks of the IV groups for an array of K/F (any shape), ANDed with ``mask``."""
    km = np.asarray(moneyness)
    base = np.ones(km.shape, bool) if mask is None else np.asarray(mask, bool)
    return {"all": base, "K/F<1": base & (km < 1.0), "K/F>1": base & (km > 1.0),
            "K/F>1.03": base & (km > 1.03)}


def static_slices(frame: pd.DataFrame, bucket: int | None = None, dtype=np.float64
                  ) -> SliceBatch:
    """Pad the (date, bucket) slices of a converted chain into one :class:`SliceBatch`.

    ``bucket`` keeps a single bucket (slices then are one per date that has it). Keys are
    ``(date, bucket)``. Shapes: (n_slices, n_max).
    """
    fr = frame if "bucket" in frame.columns else assign_buckets(frame)
    if bucket is not None:
        if bucket not in set(fr["bucket"]):
            raise ValueError(f"bucket: {bucket} has no quotes (buckets present: "
                             f"{sorted(set(fr['bucket']))})")
        fr = fr[fr["bucket"] == bucket]
    return pad_slices(fr, by=("date", "bucket"), dtype=dtype)
