r"""American -> synthetic European call prices, METHODS §5.2.

For each (date, expiration) with time to expiry tau (years), rate r, spot S and present
value of dividends PV_div:

    DF = exp(-r tau),   F = (S - PV_div) / DF,   mid = (bid + ask)/2.

Early-exercise premium (per date and expiration): over near-ATM strikes, K/F in
[0.97, 1.03] (inclusive), that have both a call and a put mid, with at least 5 such pairs,

    alpha_hat = median_K [ (C_mid - P_mid) - DF (F - K) ]      (0 with fewer than 5 pairs;
                                                                 numpy median: the mean of
                                                                 the two middle values
                                                                 for an even count).

European call, for every call quote:

    alpha_used = alpha_hat on calls inside the band, 0 outside
    C_eur_pre  = mid - max(alpha_used, 0)            (subtracted only when alpha_hat > 0)
    lower      = max(DF (F - K), 0)
    upper_put  = DF (F - K) + P_A                    (P_A = ask of the put at that strike)
    upper      = min(mid, upper_put)  if upper_put >= lower  else  mid
    upper      = max(upper, lower)
    C_eur      = clip(C_eur_pre, lower, upper).

Two conventions are not spelt out in METHODS and were read off the shared files, which
this module reproduces exactly (max |diff| = 0 on all four files, tested):
  * ``C_A`` in "min(C_A, DF(F-K)+P_A)" is the American call *mid*, not its ask;
  * a put bound below the lower bound (a stale put ask, seen on deep-OTM calls) is ignored
    rather than allowed to cross the bounds; when mid < lower the interval collapses to
    lower (so such quotes sit exactly on the no-arbitrage bound);
  * the stored ``alpha_used`` is alpha_hat on the band rows even when negative; what is
    subtracted is max(alpha_used, 0).

Residual differences. The shared files store ``alpha_hat``, ``P_A``, ``S``, ``r`` and ``PV_div``
but not the put *mids* the alpha estimate needs, nor the dividend schedule behind PV_div, so
on those files :func:`convert_calls` starts from the stored alpha_hat and F; from a raw chain
:func:`to_european` estimates alpha_hat itself (tested on a synthetic chain with a known
premium) and takes PV_div from the caller (default 0: F = S/DF). A raw chain converted with
a different PV_div or rate than the preprocessing used gives a different F and hence a
different band, alpha and bounds; that is the only source of residual difference.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from jaxhedge.data.report import DropReport

__all__ = ["ATM_BAND", "MIN_PAIRS", "estimate_alpha", "convert_calls", "to_european"]

ATM_BAND = (0.97, 1.03)
MIN_PAIRS = 5
_KEY = ["date", "expiration"]


def estimate_alpha(calls: pd.DataFrame, puts: pd.DataFrame, band=ATM_BAND,
                   min_pairs: int = MIN_PAIRS) -> pd.DataFrame:
    """alpha_hat and the pair count per (date, expiration).

    Args:
      calls: columns date, expiration, strike, mid, F, DF.
      puts: columns date, expiration, strike, mid.

    Returns: frame with columns date, expiration, n_pairs_atm (int), alpha_hat (float), one
    row per (date, expiration) of ``calls``.
    """
    pairs = calls[_KEY + ["strike", "mid", "F", "DF"]].merge(
        puts[_KEY + ["strike", "mid"]], on=_KEY + ["strike"], suffixes=("_c", "_p"))
    km = pairs["strike"] / pairs["F"]
    pairs = pairs[(km >= band[0]) & (km <= band[1])].copy()
    pairs["gap"] = (pairs["mid_c"] - pairs["mid_p"]) - pairs["DF"] * (pairs["F"] - pairs["strike"])
    agg = pairs.groupby(_KEY)["gap"].agg(n_pairs_atm="size", alpha_hat="median")
    out = calls[_KEY].drop_duplicates().merge(agg.reset_index(), on=_KEY, how="left")
    out["n_pairs_atm"] = out["n_pairs_atm"].fillna(0).astype(int)
    out["alpha_hat"] = np.where(out["n_pairs_atm"] >= min_pairs, out["alpha_hat"], 0.0)
    return out


def convert_calls(calls: pd.DataFrame, band=ATM_BAND) -> pd.DataFrame:
    """The call-side conversion (formulas in the module doc), row-wise and vectorised.

    Args:
      calls: columns strike, mid, F, DF, P_A (NaN: no matching put, upper bound = mid),
        alpha_hat (per row, the estimate of its (date, expiration)).

    Returns: a copy with moneyness_F, alpha_used, C_eur_pre, lower_bound, upper_from_put,
    upper_bound, C_eur added (overwritten if present).
    """
    missing = [c for c in ("strike", "mid", "F", "DF", "P_A", "alpha_hat") if c not in calls]
    if missing:
        raise ValueError(f"convert_calls: missing columns {missing}")
    out = calls.copy()
    k, mid, f, df = (out[c].to_numpy(float) for c in ("strike", "mid", "F", "DF"))
    put_ask, alpha = out["P_A"].to_numpy(float), out["alpha_hat"].to_numpy(float)
    km = k / f
    in_band = (km >= band[0]) & (km <= band[1])
    alpha_used = np.where(in_band, alpha, 0.0)
    pre = mid - np.maximum(alpha_used, 0.0)
    intrinsic = df * (f - k)
    lower = np.maximum(intrinsic, 0.0)
    upper_put = intrinsic + put_ask
    # NaN put ask (no matching put) compares False: the bound falls back to the call mid.
    upper = np.where(upper_put >= lower, np.minimum(mid, upper_put), mid)
    upper = np.maximum(upper, lower)
    out["moneyness_F"] = km
    out["alpha_used"] = alpha_used
    out["C_eur_pre"] = pre
    out["lower_bound"] = lower
    out["upper_from_put"] = upper_put
    out["upper_bound"] = upper
    out["C_eur"] = np.clip(pre, lower, upper)
    return out


def _attach(frame: pd.DataFrame, value, name: str) -> pd.Series:
    """Align a scalar / date-indexed / (date, expiration)-indexed Series / column name."""
    if isinstance(value, str):
        return frame[value].astype(float)
    if isinstance(value, pd.Series):
        if isinstance(value.index, pd.MultiIndex):
            idx = pd.MultiIndex.from_frame(frame[_KEY])
        else:
            idx = pd.DatetimeIndex(frame["date"])
            value = value.copy()
            value.index = pd.DatetimeIndex(pd.to_datetime(value.index)).normalize()
        return pd.Series(value.reindex(idx).to_numpy(float), index=frame.index, name=name)
    return pd.Series(float(value), index=frame.index, name=name)


def to_european(calls: pd.DataFrame, puts: pd.DataFrame | None = None, *, spot, rate,
                pv_div=0.0, band=ATM_BAND, min_pairs: int = MIN_PAIRS
                ) -> tuple[pd.DataFrame, DropReport]:
    """Convert a cleaned raw chain's American calls to synthetic European prices.

    Args:
      calls: cleaned rows (``jaxhedge.data.clean``) with date, expiration, strike, bid, ask,
        mid, tau_years; if ``puts`` is None, a chain with ``call_put`` that is split here.
      puts: cleaned put rows (same columns) or None.
      spot, rate, pv_div: S, r (decimal, continuously compounded), PV of dividends: each a
        scalar, a Series indexed by date, a Series indexed by (date, expiration), or the name
        of a column of ``calls``.
      band, min_pairs: the alpha estimate's near-ATM band and minimum pair count.

    Returns:
      (calls with S, r, PV_div, DF, F, P_A, n_pairs_atm, alpha_hat and the columns of
      :func:`convert_calls`; DropReport counting calls without spot or rate). Calls with no
      put at their strike are kept (upper bound = mid); their number is in
      ``frame.attrs["n_without_put"]``.
    """
    if puts is None:
        if "call_put" not in calls.columns:
            raise ValueError("to_european: puts=None needs a call_put column in calls")
        puts = calls[calls["call_put"] == "Put"]
        calls = calls[calls["call_put"] == "Call"]
    need = ["date", "expiration", "strike", "mid", "tau_years"]
    for name, fr in (("calls", calls), ("puts", puts)):
        missing = [c for c in need if c not in fr.columns]
        if missing:
            raise ValueError(f"to_european: {name} missing columns {missing}")
    out = calls.reset_index(drop=True).copy()
    report = DropReport(n_in=len(out))
    out["S"] = _attach(out, spot, "S")
    out["r"] = _attach(out, rate, "r")
    out["PV_div"] = _attach(out, pv_div, "PV_div")
    bad_s = ~(np.isfinite(out["S"]) & (out["S"] > 0))
    report.add("no spot for date", int(bad_s.sum()))
    bad_r = ~np.isfinite(out["r"]) & ~bad_s
    report.add("no rate for date", int(bad_r.sum()))
    bad_d = ~np.isfinite(out["PV_div"]) & ~bad_s & ~bad_r
    report.add("no PV_div for date", int(bad_d.sum()))
    out = out[~(bad_s | bad_r | bad_d)].reset_index(drop=True)
    out["DF"] = np.exp(-out["r"] * out["tau_years"])
    out["F"] = (out["S"] - out["PV_div"]) / out["DF"]
    put_ask = puts[_KEY + ["strike", "ask"]].rename(columns={"ask": "P_A"})
    out = out.drop(columns=[c for c in ("P_A", "n_pairs_atm", "alpha_hat") if c in out])
    out = out.merge(put_ask, on=_KEY + ["strike"], how="left")
    out = out.merge(estimate_alpha(out, puts, band, min_pairs), on=_KEY, how="left")
    out = convert_calls(out, band)
    out.attrs["n_without_put"] = int(out["P_A"].isna().sum())
    report.n_out = len(out)
    return out, report
