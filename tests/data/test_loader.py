"""load_chain / clean / load_period: schema, parsing, counted drops, the shared files."""
import json

import numpy as np
import pandas as pd
import pytest

from jaxhedge.data import DropReport, clean, load_chain, load_period
from jaxhedge.data.loader import REQUIRED_COLUMNS

RAW_HEADER = "date,act_symbol,expiration,strike,call_put,bid,ask,vol,delta,gamma,theta,vega,rho"


def _raw_rows():
    g = "0.2,0.5,0.01,-0.05,0.1,0.02"
    return [
        f"2020-01-06,SPY,2020-01-21,300,Call,1.0,1.2,{g}",      # ok
        f"2020-01-06,SPY,2020-01-21,300,Put,0.5,0.6,{g}",       # ok (put)
        f"2020-01-06,SPY,21/01/2020,305,Call,1.0,1.2,{g}",      # unknown expiry format
        f"2020-01-06,SPY,Jan 21 2020,310,Call,1.0,1.2,{g}",     # unknown expiry format
        f"2020-01-06,SPY,2020-01-21,abc,Call,1.0,1.2,{g}",      # bad strike
        f"2020-01-06,SPY,2020-01-21,315,Straddle,1.0,1.2,{g}",  # unknown call_put
        f"2020-01-06,SPY,2020-01-21,320,call,1.3,1.2,{g}",      # ask < bid (clean)
        f"2020-01-06,SPY,2020-01-21,325,C,,1.2,{g}",            # missing bid (clean)
        f"2020-01-06,SPY,2020-01-21,330,Call,nan,NaN,{g}",      # NaN quotes (clean)
        f"2020-01-06,SPY,2020-01-21,300,Call,1.0,1.2,{g}",      # duplicate of row 0
        f"2020-01-06,XOP,2020-01-21,300,Call,1.0,1.2,{g}",      # other symbol
        f"2020-01-06,SPY,2020-01-08,335,Call,1.0,1.2,{g}",      # tau = 2 days (clean)
        f"2020-01-06,SPY,2020-03-31,340,Call,1.0,1.2,{g}",      # tau = 85 days (clean)
        f"2020-01-06,SPY,2020-01-01,345,Call,1.0,1.2,{g}",      # expiry before date
        f"20200106,SPY,20200121,350,P,0.1,0.2,{g}",             # ok (compact ISO dates)
        f"2020-01-06,SPY,2020-01-21,355,Call,-0.1,0.2,{g}",     # negative bid (clean)
    ]


def test_malformed_raw_file_gives_counted_drops(tmp_path):
    path = tmp_path / "chain.csv"
    path.write_text("\n".join([RAW_HEADER] + _raw_rows()) + "\n")
    frame, rep = load_chain(path, symbol="spy")
    assert rep.counts == {
        "other act_symbol": 1, "unknown expiration format": 2, "unknown call_put": 1,
        "strike missing or <= 0": 1, "expiration before date": 1}
    assert (rep.n_in, rep.n_out) == (16, 10)
    assert set(frame["call_put"]) == {"Call", "Put"}
    assert frame["date"].dtype.kind == "M" and frame["expiration"].dtype.kind == "M"
    cleaned, rep2 = clean(frame)
    assert rep2.counts == {"missing bid/ask": 2, "bid < 0": 1, "ask < bid": 1,
                           "tau < 3 days": 1, "tau > 70 days": 1, "duplicate quote": 1}
    assert rep2.n_out == 3 == len(cleaned)
    assert sorted(cleaned["strike"]) == [300.0, 300.0, 350.0]
    np.testing.assert_allclose(cleaned["mid"], (cleaned["bid"] + cleaned["ask"]) / 2)
    assert (cleaned["tau_days"] == 15).all()
    total = rep + rep2
    assert total.total == 7 + 6 and (total.n_in, total.n_out) == (16, 3)
    back = json.loads(total.to_json())
    assert back["dropped"]["unknown expiration format"] == 2 and back["n_out"] == 3
    assert "unknown expiration format: 2" in str(total)


def test_missing_columns_one_error_naming_them():
    df = pd.DataFrame({"date": ["2020-01-06"], "strike": [1.0], "ask": [1.0]})
    with pytest.raises(ValueError, match=r"missing required columns \['act_symbol', "
                                         r"'expiration', 'bid'\]"):
        load_chain(df)


def test_frame_input_and_preprocessed_layout_defaults_to_calls():
    df = pd.DataFrame({c: ["2020-01-06"] if c in ("date",) else ["2020-02-03"] if c == "expiration"
                       else ["SPY"] if c == "act_symbol" else [1.0] for c in REQUIRED_COLUMNS})
    frame, rep = load_chain(df)
    assert rep.total == 0 and frame["call_put"].tolist() == ["Call"]
    with pytest.raises(FileNotFoundError, match="no_such.csv"):
        load_chain("/nonexistent/no_such.csv")


def test_clean_tau_window_boundaries_kept():
    base = pd.Timestamp("2020-01-01")
    taus = [2, 3, 70, 71]
    df = pd.DataFrame({"date": [base] * 4, "expiration": [base + pd.Timedelta(days=t) for t in taus],
                       "bid": 1.0, "ask": [1.0, 1.0, 2.0, 2.0]})
    out, rep = clean(df)
    assert out["tau_days"].tolist() == [3, 70]
    np.testing.assert_allclose(out["tau_years"], np.array([3, 70]) / 365)
    assert rep.counts == {"tau < 3 days": 1, "tau > 70 days": 1}
    with pytest.raises(ValueError, match="tau_min_days"):
        clean(df, tau_min_days=10, tau_max_days=5)


def test_load_period_bad_choices(tmp_path):
    with pytest.raises(ValueError, match=r"asset: 'aapl' not one of \['spy', 'xop'\]"):
        load_period(tmp_path, "aapl", "2020q1")
    with pytest.raises(ValueError, match=r"period: '2021q3' not one of \['2020q1', '2025q2'\]"):
        load_period(tmp_path, "spy", "2021q3")
    with pytest.raises(FileNotFoundError, match="spy_preprocessed_calls_25.csv"):
        load_period(tmp_path, "spy", "2025q2")


# README: rows and trading days per file; the files are already clean (nothing dropped).
@pytest.mark.parametrize("asset,period,rows,days,q_days", [
    ("spy", "2020q1", 1242, 35, 35), ("xop", "2020q1", 853, 34, 34),
    ("spy", "2025q2", 11101, 184, 62), ("xop", "2025q2", 11042, 183, 61)])
def test_shared_files_load_clean(data_dir, asset, period, rows, days, q_days):
    pdata = load_period(data_dir, asset, period)
    assert pdata.report.total == 0 and len(pdata.chain) == rows
    assert pdata.chain["date"].nunique() == days
    q = pdata.quotes
    assert q["date"].nunique() == q_days
    assert q["date"].min() >= pdata.start and q["date"].max() <= pdata.end
    raw = pd.read_csv(data_dir / f"{asset}_preprocessed_calls_{'20q1' if period == '2020q1' else '25'}.csv")
    # recomputed mid and tau equal the stored ones
    np.testing.assert_allclose(pdata.chain["mid"], raw["mid"], rtol=0, atol=1e-12)
    np.testing.assert_array_equal(pdata.chain["tau_days"], raw["tau_days"])


def test_drop_report_is_ordered_and_addable():
    a = DropReport(n_in=10, n_out=8)
    a.add("x", 1)
    a.add("y", 1)
    a.add("zero", 0)
    b = DropReport(n_in=8, n_out=5)
    b.add("z", 2)
    b.add("x", 1)
    c = a + b
    assert list(c.counts) == ["x", "y", "z"] and c.counts["x"] == 2
    assert (c.n_in, c.n_out, c.total) == (10, 5, 5)


def test_eod_rates_match_shared_2025_columns(data_dir):
    from jaxhedge.data.loader import load_eod_rates
    eod, rep = load_eod_rates(data_dir / "spy_eod_and_box_rate.csv")
    assert rep.total == 0 and len(eod) == 211
    for asset in ("spy", "xop"):
        chain = load_period(data_dir, asset, "2025q2").chain
        per_day = chain.groupby("date")[["S", "r"]].first()
        np.testing.assert_array_equal(per_day["r"], eod["rate"].reindex(per_day.index))
        if asset == "spy":
            np.testing.assert_allclose(per_day["S"], eod["spot"].reindex(per_day.index),
                                       rtol=1e-12)


def test_eod_rates_bad_rows_counted(tmp_path):
    from jaxhedge.data.loader import load_eod_rates
    p = tmp_path / "eod.csv"
    p.write_text("Date,SPY,SOFR_Rate\n2025-01-02,580,4.4\n2025/13/45,1,1\n2025-01-03,,4.3\n"
                 "2025-01-06,590,4.27\n")
    eod, rep = load_eod_rates(p)
    assert rep.counts == {"unparseable Date": 1, "missing or non-positive SPY / SOFR_Rate": 1}
    np.testing.assert_allclose(eod["rate"], [0.044, 0.0427])
    with pytest.raises(ValueError, match=r"missing columns \['SOFR_Rate'\]"):
        (tmp_path / "bad.csv").write_text("Date,SPY\n2025-01-02,1\n")
        load_eod_rates(tmp_path / "bad.csv")


def test_malformed_preprocessed_file_gives_drop_report(tmp_path):
    """A shared-layout file with bad rows loads through load_period with counted drops."""
    cols = ("date,act_symbol,expiration,strike,bid,ask,mid,tau_days,tau_years,S,r,DF,PV_div,F,"
            "C_eur,P_A")
    good = "2020-01-06,SPY,2020-02-03,320,5.0,5.2,5.1,28,0.0767,323.6,0.0155,0.9988,0,324.0,5.3,2.0"
    rows = [good.replace("5.0,5.2", "5.5,5.2"),   # ask < bid, same key as the good row below
            good,
            good.replace(",320,", ",321,").replace("2020-02-03", "02/03/2020"),  # bad expiry
            good.replace(",320,", ",322,").replace(",5.3,2.0", ",nan,2.0"),      # NaN C_eur
            good.replace(",320,", ",323,").replace("5.0,5.2", "5.4,5.2"),        # ask < bid
            good.replace(",320,5.0,", ",324,,"),                                  # missing bid
            good.replace("SPY", "XOP"),                                           # other symbol
            "2020-01-06,SPY,2020-02-03,325",                                      # truncated
            good]                                 # exact duplicate

    (tmp_path / "spy_preprocessed_calls_20q1.csv").write_text("\n".join([cols] + rows) + "\n")
    pdata = load_period(tmp_path, "spy", "2020q1")
    assert pdata.report.counts == {"other act_symbol": 1, "unknown expiration format": 1,
                                   "missing bid/ask": 2, "ask < bid": 2, "non-finite C_eur": 1,
                                   "duplicate quote": 1}
    assert len(pdata.chain) == 1 and pdata.report.n_out == 1 and pdata.report.n_in == 9
    assert pdata.chain["bid"].tolist() == [5.0]   # the first *valid* quote of the key is kept
