"""A synthetic chain in the shared-file layout, priced by Black-76 at a known vol."""
import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm


def black76_call(F, K, tau, DF, vol):
    s = vol * np.sqrt(tau)
    d1 = (np.log(F / K) + 0.5 * s * s) / s
    return DF * (F * norm.cdf(d1) - K * norm.cdf(d1 - s))


def synthetic_chain(vol=0.25, r=0.015, seed=0, start="2020-01-02", end="2020-04-30",
                    symbol="SPY"):
    """Every other business day; Friday expiries 5..70 days out; 7 strikes around F.

    The spot follows a GBM at ``vol``; every price is Black-76 at ``vol`` on the file's F.
    """
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range(start, end)[::2]
    spot = 300 * np.exp(np.cumsum(rng.normal(0, vol * np.sqrt(2 / 252), len(dates))))
    fridays = pd.date_range("2020-01-03", "2020-07-31", freq="W-FRI")
    rows = []
    for d, S in zip(dates, spot):
        for e in fridays:
            days = (e - d).days
            if not 5 <= days <= 70:
                continue
            tau = days / 365
            DF = np.exp(-r * tau)
            F = S / DF
            for m in (0.9, 0.95, 0.98, 1.0, 1.02, 1.05, 1.1):
                K = round(F * m)
                C = black76_call(F, K, tau, DF, vol)
                rows.append(dict(date=d.strftime("%Y-%m-%d"), act_symbol=symbol,
                                 expiration=e.strftime("%Y-%m-%d"), strike=float(K),
                                 bid=C * 0.99, ask=C * 1.01, mid=C, tau_days=days,
                                 tau_years=tau, S=S, r=r, DF=DF, PV_div=0.0, F=F,
                                 alpha_hat=0.0, alpha_used=0.0, C_eur=C, moneyness_F=K / F,
                                 P_A=C - DF * (F - K) + 0.01))
    return pd.DataFrame(rows).drop_duplicates(["date", "expiration", "strike"])


@pytest.fixture(scope="session")
def synthetic_data_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("options")
    synthetic_chain().to_csv(d / "spy_preprocessed_calls_20q1.csv", index=False)
    return d
