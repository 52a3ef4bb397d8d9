"""American -> European conversion (METHODS §5.2): the shared C_eur and a synthetic alpha."""
import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from jaxhedge.data import clean, convert_calls, estimate_alpha, load_chain, to_european

FILES = ["spy_preprocessed_calls_20q1.csv", "xop_preprocessed_calls_20q1.csv",
         "spy_preprocessed_calls_25.csv", "xop_preprocessed_calls_25.csv"]


@pytest.mark.parametrize("name", FILES)
def test_reproduces_shared_c_eur_from_raw_columns(data_dir, name):
    raw = pd.read_csv(data_dir / name)
    # Rebuild every input from the raw/primary columns only: bid, ask, S, r, PV_div, dates,
    # P_A and the stored alpha_hat (the files do not hold the put mids alpha needs).
    tau = (pd.to_datetime(raw["expiration"]) - pd.to_datetime(raw["date"])).dt.days / 365
    df = np.exp(-raw["r"] * tau)
    calls = pd.DataFrame({"strike": raw["strike"], "mid": (raw["bid"] + raw["ask"]) / 2,
                          "DF": df, "F": (raw["S"] - raw["PV_div"]) / df, "P_A": raw["P_A"],
                          "alpha_hat": raw["alpha_hat"]})
    out = convert_calls(calls)
    diff = np.abs(out["C_eur"] - raw["C_eur"]).max()
    print(f"{name}: max |C_eur - shared C_eur| = {diff:.3g} over {len(raw)} rows")
    assert diff < 1e-9
    for col in ("lower_bound", "upper_bound", "upper_from_put", "C_eur_pre", "alpha_used",
                "moneyness_F"):
        np.testing.assert_allclose(out[col], raw[col], rtol=0, atol=1e-9, err_msg=col)


def _b76_call(f, k, tau, df, vol):
    s = vol * np.sqrt(tau)
    d1 = np.log(f / k) / s + s / 2
    return df * (f * norm.cdf(d1) - k * norm.cdf(d1 - s))


def _synthetic_chain(alpha_call=0.30, alpha_put=0.05, n_atm=7, seed=0):
    """One day, two expiries; European prices from Black-76 at a smile, American = European
    + a known premium on calls (alpha_call) and puts (alpha_put) near the money."""
    rng = np.random.default_rng(seed)
    s, r, pv = 100.0, 0.04, 0.5
    rows = []
    for exp_days in (21, 49):
        tau = exp_days / 365
        df = np.exp(-r * tau)
        f = (s - pv) / df
        atm = f * np.linspace(0.975, 1.025, n_atm)
        wings = f * np.array([0.85, 0.9, 0.95, 1.06, 1.1, 1.2])
        for k in np.round(np.r_[atm, wings], 2):
            vol = 0.2 + 0.3 * np.log(k / f) ** 2
            c = _b76_call(f, k, tau, df, vol)
            p = c - df * (f - k)
            near = 0.97 <= k / f <= 1.03
            ca, pa = c + (alpha_call if near else 0.0), p + (alpha_put if near else 0.0)
            for cp, m in (("Call", ca), ("Put", pa)):
                half = min(rng.uniform(0.01, 0.05), m / 2)  # keeps bid >= 0, mid exact
                rows.append(dict(date="2025-05-01", act_symbol="ABC",
                                 expiration=str((pd.Timestamp("2025-05-01")
                                                 + pd.Timedelta(days=exp_days)).date()),
                                 strike=k, call_put=cp, bid=m - half, ask=m + half))
    return pd.DataFrame(rows), dict(s=s, r=r, pv=pv)


def test_alpha_estimator_recovers_known_premium():
    chain, m = _synthetic_chain(alpha_call=0.30, alpha_put=0.05)
    frame, rep = load_chain(chain)
    frame, rep2 = clean(frame)
    assert rep.total == rep2.total == 0
    spot = pd.Series({pd.Timestamp("2025-05-01"): m["s"]})
    out, rep3 = to_european(frame, spot=spot, rate=m["r"], pv_div=m["pv"])
    assert rep3.total == 0 and out.attrs["n_without_put"] == 0
    # (C_A - P_A) - DF(F - K) = alpha_call - alpha_put on every near-ATM pair
    np.testing.assert_allclose(out["alpha_hat"], 0.25, atol=1e-9)
    assert (out["n_pairs_atm"] == 7).all()
    # The pair estimate is the *net* premium alpha_C - alpha_P (parity cannot separate
    # them), so in the band the European call is recovered up to the put's premium.
    f, k, tau, df = (out[c].to_numpy() for c in ("F", "strike", "tau_years", "DF"))
    euro = _b76_call(f, k, tau, df, 0.2 + 0.3 * np.log(k / f) ** 2)
    band = (k / f >= 0.97) & (k / f <= 1.03)
    np.testing.assert_allclose(out["C_eur"][band], euro[band] + 0.05, atol=1e-9)
    np.testing.assert_allclose(out["C_eur"][~band], np.maximum(euro[~band], out["lower_bound"][~band]),
                               atol=1e-9)
    np.testing.assert_allclose(out["F"], (m["s"] - m["pv"]) / out["DF"], rtol=1e-14)
    assert np.all(out["C_eur"] >= out["lower_bound"]) and np.all(out["C_eur"] <= out["upper_bound"])


def test_alpha_median_is_robust_and_needs_five_pairs():
    chain, m = _synthetic_chain(alpha_call=0.2, alpha_put=0.0, n_atm=5)
    # corrupt one near-ATM call mid of the first expiry: the median ignores it
    calls = chain["call_put"] == "Call"
    first = calls & (chain["expiration"] == chain["expiration"].min())
    k = chain.loc[first, "strike"].to_numpy()
    i = chain.index[first][np.argsort(np.abs(k / 100.2 - 1))[0]]
    chain.loc[i, ["bid", "ask"]] += 3.0
    frame, _ = clean(load_chain(chain)[0])
    out, _ = to_european(frame, spot=m["s"], rate=m["r"], pv_div=m["pv"])
    np.testing.assert_allclose(out["alpha_hat"], 0.2, atol=1e-9)
    # independent estimate with numpy for each expiry
    for e, g in out.groupby("expiration"):
        puts = frame[(frame["call_put"] == "Put") & (frame["expiration"] == e)].set_index("strike")
        km = g["strike"] / g["F"]
        sel = g[(km >= 0.97) & (km <= 1.03)]
        gaps = sel["mid"].to_numpy() - puts.loc[sel["strike"], "mid"].to_numpy() \
            - sel["DF"].to_numpy() * (sel["F"].to_numpy() - sel["strike"].to_numpy())
        assert len(gaps) == 5 and np.isclose(g["alpha_hat"].iloc[0], np.median(gaps))
    # four pairs only -> no premium removed
    chain4, m = _synthetic_chain(alpha_call=0.2, alpha_put=0.0, n_atm=4)
    out4, _ = to_european(clean(load_chain(chain4)[0])[0], spot=m["s"], rate=m["r"],
                          pv_div=m["pv"])
    assert (out4["alpha_hat"] == 0).all() and (out4["n_pairs_atm"] == 4).all()


def test_negative_alpha_is_not_added_and_missing_put_or_spot_counted():
    chain, m = _synthetic_chain(alpha_call=0.0, alpha_put=0.3)   # alpha_hat = -0.3
    chain = chain.drop(chain.index[(chain["call_put"] == "Put")][-1])  # a wing call loses its put
    frame, _ = clean(load_chain(chain)[0])
    spot = pd.Series({pd.Timestamp("2025-05-01"): m["s"]})
    out, rep = to_european(frame, spot=spot, rate=m["r"], pv_div=m["pv"])
    np.testing.assert_allclose(out["alpha_hat"], -0.3, atol=1e-9)
    band = (out["moneyness_F"] >= 0.97) & (out["moneyness_F"] <= 1.03)
    np.testing.assert_allclose(out["alpha_used"][band], -0.3, atol=1e-9)
    np.testing.assert_allclose(out["C_eur_pre"], out["mid"])        # nothing subtracted
    assert out.attrs["n_without_put"] == 1
    lone = out[out["P_A"].isna()]
    assert np.allclose(lone["upper_bound"], np.maximum(lone["mid"], lone["lower_bound"]))
    # a date without spot is dropped and counted, not a crash
    other = frame.copy()
    other["date"] = pd.Timestamp("2025-05-02")
    out2, rep2 = to_european(pd.concat([frame, other]), spot=spot, rate=m["r"], pv_div=m["pv"])
    assert rep2.counts == {"no spot for date": int((other["call_put"] == "Call").sum())}
    assert len(out2) == len(out) and rep2.n_out == len(out)


def test_estimate_alpha_direct_frame():
    calls = pd.DataFrame({"date": 1, "expiration": 2, "strike": [98., 99., 100., 101., 102., 130.],
                          "mid": [3., 2.5, 2., 1.5, 1., 0.1], "F": 100.0, "DF": 1.0})
    puts = calls[["date", "expiration", "strike"]].assign(mid=[1., 1.5, 2., 2.5, 3., 30.])
    a = estimate_alpha(calls, puts)
    # gaps: (C-P) - (F-K) = [0, 0, 0, 0, 0] ... the 130 strike is outside the band
    assert a["n_pairs_atm"].tolist() == [5] and a["alpha_hat"].tolist() == [0.0]
