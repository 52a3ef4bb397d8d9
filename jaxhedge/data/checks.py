"""Range and consistency checks on the derived columns of the shared call files.

Each check is ``(reason, test)``: ``test(keep)`` returns the rows that fail it (a boolean
array), given the rows still kept (the per-date checks compare a row with the *kept* rows
of its date). :func:`jaxhedge.data.clean.clean` applies them in order after the finiteness
rules, so a row is counted under the first check it fails. A check whose columns are
absent is skipped (the raw DoltHub layout has none of them). Ranges and tolerances are
justified in docs/validation.md.

>>> RATE_RANGE, PV_DIV_MAX_FRACTION
((-0.05, 0.25), 0.25)
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd

__all__ = ["RATE_RANGE", "PV_DIV_MAX_FRACTION", "REL_TOL", "ASK_MAX_OVER_S", "row_checks"]

#: plausible risk-free rate (decimal, continuously compounded): negative policy rates went
#: to about -0.8%; US rates have not been above 20% since 1981. 1.55 (percent read as a
#: decimal) fails.
RATE_RANGE = (-0.05, 0.25)
#: dividends paid before expiry (<= 70 days) as a fraction of spot; the shared files reach
#: 0.049 (XOP, March 2020). A PV_div in cents (x100) or of the wrong sign fails.
PV_DIV_MAX_FRACTION = 0.25
#: tolerance of the identities DF = exp(-r tau) (absolute) and F DF = S - PV_div (relative):
#: a file rounded to 4 significant digits passes, a wrong digit in the 4th place fails
#: (the shared files satisfy both to 1e-13).
REL_TOL = 1e-4
#: a call is worth at most S: an ask above twice the spot is a unit or typing error (the
#: shared files reach 1.19 S: a stale XOP quote in March 2020, kept).
ASK_MAX_OVER_S = 2.0
#: tolerance of C_eur against the file's own lower_bound/upper_bound columns (same file,
#: same numbers: only float64 round-off), relative to F.
BOUND_TOL = 1e-9

Check = tuple[str, Callable[[np.ndarray], np.ndarray]]


def _num(df: pd.DataFrame, col: str) -> np.ndarray:
    return pd.to_numeric(df[col], errors="coerce").to_numpy(float)


def _differs_within_date(df: pd.DataFrame, values: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Rows whose value is not the most common value of their date among kept rows."""
    kept = pd.DataFrame({"date": df["date"].to_numpy()[keep], "v": values[keep]})
    mode = kept.dropna().groupby("date")["v"].agg(lambda s: s.value_counts().idxmax())
    ref = pd.Series(df["date"].to_numpy()).map(mode).to_numpy(float)
    with np.errstate(invalid="ignore"):
        return keep & ~np.isclose(values, ref, rtol=1e-12, atol=0.0)


def row_checks(df: pd.DataFrame, tau_days: np.ndarray) -> list[Check]:
    """The checks that apply to ``df`` (columns present), in order. ``tau_days`` are the
    calendar days (expiration - date) computed from the dates."""
    has = set(df.columns).issuperset
    col = {c: _num(df, c) for c in ("tau_days", "S", "r", "DF", "PV_div", "F", "C_eur", "strike",
                                    "lower_bound", "upper_bound", "P_A", "ask", "moneyness_F")
           if c in df.columns}
    S, r, DF, F, pv = (col.get(c) for c in ("S", "r", "DF", "F", "PV_div"))
    tau = tau_days / 365.0
    checks: list[Check] = []
    if "tau_days" in col:
        checks.append(("tau_days != expiration - date",
                       lambda k: ~(col["tau_days"] == tau_days)))
    if S is not None:
        checks.append(("S <= 0", lambda k: ~(S > 0)))
        if has(["date"]):
            checks.append(("S differs from its date's other rows",
                           lambda k: _differs_within_date(df, S, k)))
        if "ask" in col:
            checks.append((f"ask > {ASK_MAX_OVER_S:g} S",
                           lambda k: ~(col["ask"] <= ASK_MAX_OVER_S * S)))
    if r is not None:
        lo, hi = RATE_RANGE
        checks.append((f"r outside [{lo:g}, {hi:g}]", lambda k: ~((r >= lo) & (r <= hi))))
        if has(["date"]):
            checks.append(("r differs from its date's other rows",
                           lambda k: _differs_within_date(df, r, k)))
        if DF is not None:
            checks.append(("DF != exp(-r tau)",
                           lambda k: ~(np.abs(DF - np.exp(-r * tau)) <= REL_TOL)))
    if pv is not None and S is not None:
        checks.append((f"PV_div outside [0, {PV_DIV_MAX_FRACTION:g} S]",
                       lambda k: ~((pv >= 0) & (pv <= PV_DIV_MAX_FRACTION * S))))
    if F is not None and S is not None and DF is not None:
        pv0 = pv if pv is not None else 0.0
        checks.append(("F != (S - PV_div) / DF",
                       lambda k: ~(np.abs(F * DF - (S - pv0)) <= REL_TOL * S)))
    if F is not None and "strike" in col and "moneyness_F" in col:
        checks.append(("moneyness_F != strike / F",
                       lambda k: ~(np.abs(col["moneyness_F"] * F - col["strike"])
                                   <= REL_TOL * col["strike"])))
    if F is not None and DF is not None and "C_eur" in col and "strike" in col:
        C, K = col["C_eur"], col["strike"]
        tol = REL_TOL * np.abs(F)
        checks.append(("C_eur outside [max(DF (F - K), 0), DF F]",
                       lambda k: ~((C >= np.maximum(DF * (F - K), 0.0) - tol)
                                   & (C <= DF * F + tol))))
        if "lower_bound" in col and "upper_bound" in col:
            lb, ub = col["lower_bound"], col["upper_bound"]
            btol = BOUND_TOL * np.abs(F)
            checks.append(("C_eur outside the file's [lower_bound, upper_bound]",
                           lambda k: ~((C >= lb - btol) & (C <= ub + btol))))
    if "P_A" in col:
        checks.append(("P_A < 0", lambda k: ~(col["P_A"] >= 0)))
    return checks
