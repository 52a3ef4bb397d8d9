"""A synthetic call chain in the shared-file layout, priced by Black-76 at one known vol.

Every column the pipeline reads is present and consistent (DF = exp(-r tau),
F DF = S - PV_div, C_eur inside [max(DF(F-K), 0), DF F] = [lower_bound, upper_bound]), so
the chain passes every check of :mod:`jaxhedge.data.checks`; tests corrupt it row by row.

>>> chain = black76_chain(end="2020-01-20")
>>> sorted(chain["date"].unique())[:2], int(chain["tau_days"].min()) >= 5
(['2020-01-02', '2020-01-06'], True)
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.special import ndtr

__all__ = ["black76_chain"]

MONEYNESS = (0.9, 0.95, 0.98, 1.0, 1.02, 1.05, 1.1)


def black76_chain(vol: float = 0.25, r: float = 0.015, seed: int = 0, start: str = "2020-01-02",
                  end: str = "2020-04-30", symbol: str = "SPY", s0: float = 300.0) -> pd.DataFrame:
    """Every other business day from ``start`` to ``end``; Friday expiries 5..70 days out;
    7 strikes around F (:data:`MONEYNESS`). The spot is a GBM at ``vol`` (seeded); every
    price is Black-76 at ``vol`` on the file's F; no dividends. Rows sorted like the
    shared files (date, expiration, strike)."""
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range(start, end)[::2]
    spot = s0 * np.exp(np.cumsum(rng.normal(0.0, vol * np.sqrt(2 / 252), len(dates))))
    fridays = pd.date_range(pd.Timestamp(start), pd.Timestamp(end) + pd.Timedelta(days=75),
                            freq="W-FRI")
    rows = []
    for d, S in zip(dates, spot):
        for e in fridays:
            days = (e - d).days
            if not 5 <= days <= 70:
                continue
            tau = days / 365
            DF = float(np.exp(-r * tau))
            F = S / DF
            for K in sorted({float(round(F * m)) for m in MONEYNESS}):
                s = vol * np.sqrt(tau)
                d1 = (np.log(F / K) + 0.5 * s * s) / s
                C = float(DF * (F * ndtr(d1) - K * ndtr(d1 - s)))
                lower = max(DF * (F - K), 0.0)
                C = max(C, lower)
                rows.append(dict(date=d.strftime("%Y-%m-%d"), act_symbol=symbol,
                                 expiration=e.strftime("%Y-%m-%d"), strike=K,
                                 bid=C * 0.99, ask=C * 1.01, mid=C, tau_days=days,
                                 tau_years=tau, S=S, r=r, DF=DF, PV_div=0.0, F=F,
                                 alpha_hat=0.0, alpha_used=0.0, C_eur=C, moneyness_F=K / F,
                                 lower_bound=lower, upper_bound=C,
                                 P_A=C - DF * (F - K) + 0.01))
    return pd.DataFrame(rows)
