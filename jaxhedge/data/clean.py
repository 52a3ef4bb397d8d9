"""Quote cleaning, METHODS §5.1.

Rules, applied in this order (a row is counted under the first rule it fails):

1. bid or ask missing (NaN, non-numeric, +-inf)          -> "missing bid/ask"
2. bid < 0                                               -> "bid < 0"
3. ask < bid                                             -> "ask < bid"
4. tau_days = calendar days (expiration - date) < 3      -> "tau < 3 days"
5. tau_days > 70                                         -> "tau > 70 days"
6. (shared preprocessed layout only) a non-finite derived input the later steps read
   (S, r, DF, F, C_eur, P_A)                             -> "non-finite <column>"
7. (shared layout) range and consistency of S, r, DF, PV_div, F, C_eur (no-arbitrage bounds
   and the file's own lower_bound/upper_bound), P_A, stored tau_days: the checks of
   :mod:`jaxhedge.data.checks`, each with its own reason
8. a second quote of the same (date, expiration, call_put, strike) -> "duplicate quote"
   (checked last, so the first *valid* quote of a key is the one kept)

``mid = (bid + ask)/2`` and ``tau_years = tau_days/365`` are (re)computed on the kept rows
(on the shared files they reproduce the stored columns exactly).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from jaxhedge.data.checks import row_checks
from jaxhedge.data.report import DropReport

__all__ = ["clean", "TAU_MIN_DAYS", "TAU_MAX_DAYS"]

TAU_MIN_DAYS = 3
TAU_MAX_DAYS = 70
_DERIVED_CHECKED = ("S", "r", "DF", "F", "C_eur", "P_A")


def clean(frame: pd.DataFrame, tau_min_days: int = TAU_MIN_DAYS,
          tau_max_days: int = TAU_MAX_DAYS) -> tuple[pd.DataFrame, DropReport]:
    """Apply the §5.1 rules to a frame from :func:`jaxhedge.data.loader.load_chain`.

    Returns (cleaned frame with ``mid``, ``tau_days`` (int), ``tau_years``; DropReport).
    """
    missing = [c for c in ("date", "expiration", "bid", "ask") if c not in frame.columns]
    if missing:
        raise ValueError(f"clean: frame is missing columns {missing}")
    if not 0 <= tau_min_days <= tau_max_days:
        raise ValueError(f"clean: need 0 <= tau_min_days <= tau_max_days, got "
                         f"{tau_min_days}, {tau_max_days}")
    df = frame.reset_index(drop=True)
    report = DropReport(n_in=len(df))
    bid = pd.to_numeric(df["bid"], errors="coerce").to_numpy(float)
    ask = pd.to_numeric(df["ask"], errors="coerce").to_numpy(float)
    tau = (pd.to_datetime(df["expiration"]) - pd.to_datetime(df["date"])).dt.days.to_numpy()
    keep = np.ones(len(df), bool)

    def drop(bad, reason):
        nonlocal keep
        bad = np.asarray(bad, bool) & keep
        report.add(reason, int(bad.sum()))
        keep &= ~bad

    with np.errstate(invalid="ignore"):
        drop(~(np.isfinite(bid) & np.isfinite(ask)), "missing bid/ask")
        drop(bid < 0, "bid < 0")
        drop(ask < bid, "ask < bid")
        drop(tau < tau_min_days, f"tau < {tau_min_days} days")
        drop(tau > tau_max_days, f"tau > {tau_max_days} days")
        for col in _DERIVED_CHECKED:
            if col in df.columns:
                drop(~np.isfinite(pd.to_numeric(df[col], errors="coerce").to_numpy(float)),
                     f"non-finite {col}")
        for reason, test in row_checks(df, tau):
            drop(test(keep), reason)
    key = [c for c in ("date", "expiration", "call_put", "strike") if c in df.columns]
    dup = np.zeros(len(df), bool)
    dup[keep] = df[keep].duplicated(subset=key, keep="first").to_numpy()
    drop(dup, "duplicate quote")
    out = df[keep].copy()
    out["bid"], out["ask"] = bid[keep], ask[keep]
    out["mid"] = (out["bid"] + out["ask"]) / 2.0
    out["tau_days"] = tau[keep].astype(int)
    out["tau_years"] = out["tau_days"] / 365.0
    out = out.reset_index(drop=True)
    report.n_out = len(out)
    return out, report
