"""Real SPY chain (shared data): BS / JD / SV IVRMSE on SPY 2020Q1, first 5 days, 28-day
bucket. Skipped when ../shared/data/options is absent."""
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from jaxhedge import calibrate as cal
from jaxhedge.calibrate.static import ivrmse_table
from jaxhedge.data import pad_slices


def _data_dir() -> Path:
    env = os.environ.get("JAXHEDGE_DATA_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3] / "shared" / "data" / "options"


def _spy_2020q1_28d(n_days=5):
    path = _data_dir() / "spy_preprocessed_calls_20q1.csv"
    if not path.exists():
        pytest.skip(f"shared option data not found at {path} (set JAXHEDGE_DATA_DIR)")
    d = pd.read_csv(path)
    d = d[(d.tau_days >= 3) & (d.tau_days <= 70)].copy()
    c = np.array([14, 28, 56])
    d["bucket_days"] = c[np.abs(d.tau_days.to_numpy()[:, None] - c).argmin(1)]
    days = sorted(d.date.unique())[:n_days]
    return pad_slices(d[d.date.isin(days) & (d.bucket_days == 28)], ("date", "bucket_days"))


def test_real_bs_fit_and_market_ivs(x64):
    batch = _spy_2020q1_28d()
    assert batch.mask.shape[0] == 5
    fit = cal.fit_bs(batch, dtype="float64")
    mkt = np.asarray(cal.market_iv(batch, dtype="float64"))
    # every real quote inverts (on-bound ones included), none of the padding does
    assert np.isfinite(mkt[batch.mask]).all() and np.isnan(mkt[~batch.mask]).all()
    # calm January 2020: ATM vols ~ 10-15%; the fitted σ sits there
    assert np.all((np.asarray(fit.sigma) > 0.07) & (np.asarray(fit.sigma) < 0.2))
    table = ivrmse_table(batch, {"BS": cal.model_iv(fit, batch)}, mkt, period="2020Q1",
                         asset="SPY")
    assert set(table.group) == {"all", "K/F<1", "K/F>1", "K/F>1.03"}
    v = table.set_index("group").ivrmse_x1e3
    assert 10 < v["all"] < 150 and (table.n_days == 5).all()


@pytest.mark.slow
def test_real_jd_and_sv_nest_bs(x64):
    batch = _spy_2020q1_28d()
    fits = {"BS": cal.fit_bs(batch, dtype="float64"),
            "JD": cal.fit_merton(batch, dtype="float64"),
            "SV": cal.fit_heston(batch, dtype="float64")}
    # price SSE: the nesting models never fit worse than BS (BS-like start)
    for m in ("JD", "SV"):
        assert np.all(np.asarray(fits[m].sse) <= np.asarray(fits["BS"].sse) * 1.001)
    mkt = cal.market_iv(batch, dtype="float64")
    table = ivrmse_table(batch, {m: cal.model_iv(f, batch, dtype="float64")
                                 for m, f in fits.items()}, mkt, period="2020Q1", asset="SPY")
    print("\n" + table.pivot_table(index="group", columns="model",
                                   values="ivrmse_x1e3").round(1).to_string())
    allg = table[table.group == "all"].set_index("model").ivrmse_x1e3
    # skew models beat flat vol on the equal-day average (IVs, not just prices)
    assert allg["JD"] <= allg["BS"] + 1.0 and allg["SV"] <= allg["BS"] + 1.0
    assert allg["SV"] < 0.7 * allg["BS"]
