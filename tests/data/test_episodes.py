"""Hedging episodes (METHODS §5.6): sanity counts, an independent per-day replay, rules."""
import numpy as np
import pandas as pd
import pytest

from jaxhedge.data import build_episodes, episodes_from_arrays, load_period

# METHODS §5.6 sanity counts for the 28-day bucket: the number of episodes (hedged
# contracts) of a slice.
SANITY = {("spy", "2020q1"): 23, ("xop", "2020q1"): 23, ("spy", "2025q2"): 62,
          ("xop", "2025q2"): 57}


def _reference(chain, start, end, centre, target):
    """Plain-Python replay of the §5.6 rules, one start day at a time."""
    dates = np.sort(chain["date"].unique())
    spot = chain.groupby("date")["S"].first()
    out = []
    for day, rows in chain[(chain["date"] >= start) & (chain["date"] <= end)].groupby("date"):
        taus = rows.groupby("expiration")["tau_days"].first().sort_index()
        expiry = taus.index[np.argmin(np.abs(taus.to_numpy() - centre))]
        terminal = dates[dates <= expiry][-1]
        if (expiry - terminal).days > 1:
            continue
        a = rows[rows["expiration"] == expiry].sort_values("strike")
        row = a.iloc[np.argmin(np.abs(a["strike"] / a["F"] - target).to_numpy())]
        path = dates[(dates >= day) & (dates <= terminal)]
        q = np.clip(row["r"] - np.log(row["F"] / row["S"]) / row["tau_years"], -0.1, 0.2)
        out.append(dict(day=day, expiry=expiry, strike=row["strike"], premium=row["C_eur"],
                        q=q, r=row["r"], n=len(path) - 1, spots=spot.loc[path].to_numpy(),
                        tau=np.array([(expiry - d).days for d in path]) / 365,
                        n_anchor=len(a)))
    return out


@pytest.mark.parametrize("asset,period", list(SANITY))
def test_sanity_counts_and_independent_replay(data_dir, asset, period, x64):
    pdata = load_period(data_dir, asset, period)
    for target in (1.00, 1.03):
        ep, rep = build_episodes(pdata.chain, start=pdata.start, end=pdata.end, bucket_days=28,
                                 target_km=target, slice_key=(asset, period, 28, target))
        assert ep.n_episodes == SANITY[(asset, period)] == rep.n_out
        assert rep.n_in == rep.n_out + rep.total
        ref = _reference(pdata.chain, pdata.start, pdata.end, 28, target)
        assert len(ref) == ep.n_episodes
        for i, r in enumerate(ref):
            n = r["n"]
            assert ep.start_dates[i] == str(r["day"].date())
            assert ep.expiries[i] == str(r["expiry"].date())
            assert int(ep.n_hedges[i]) == n and int(ep.step_mask[i].sum()) == n
            assert float(ep.strike[i]) == r["strike"] and float(ep.premium[i]) == r["premium"]
            np.testing.assert_allclose(float(ep.q_hat[i]), r["q"], rtol=0, atol=1e-12)
            np.testing.assert_array_equal(np.asarray(ep.spots[i, :n + 1]), r["spots"])
            np.testing.assert_allclose(np.asarray(ep.tau[i, :n + 1]), r["tau"], atol=1e-12)
            assert np.all(np.asarray(ep.spots[i, n:]) == r["spots"][-1])   # padding
            assert np.all(np.asarray(ep.dt[i, n:]) == 0)
            assert int(ep.anchor.mask[i].sum()) == r["n_anchor"]
        # calendar gaps add up to start-to-terminal time: tau_0 - tau_terminal
        tau = np.asarray(ep.tau)
        tau_term = tau[np.arange(ep.n_episodes), np.asarray(ep.n_hedges)]
        np.testing.assert_allclose(np.asarray(ep.dt).sum(1), tau[:, 0] - tau_term, atol=1e-12)
        if period == "2020q1":   # about every other trading day: 10-13 rebalances
            assert 10 <= int(ep.n_hedges.min()) and int(ep.n_hedges.max()) <= 13


def _chain(dates, expiries):
    """A tiny chain: each date quotes every expiry at strikes 95, 100, 105 (F = S = 100)."""
    rows = []
    for d in map(pd.Timestamp, dates):
        for e in map(pd.Timestamp, expiries):
            tau = (e - d).days
            if 3 <= tau <= 70:
                for k in (95.0, 100.0, 105.0):
                    rows.append(dict(date=d, expiration=e, strike=k, tau_days=tau,
                                     tau_years=tau / 365, S=100.0 + (d - pd.Timestamp(dates[0])).days,
                                     r=0.02, DF=1.0, F=101.0, C_eur=k / 50))
    return pd.DataFrame(rows)


def test_terminal_gap_rule_and_ties():
    # expiry 01-20 (a Monday) with the last file date 01-17 (Fri, 3 days before): skipped;
    # expiry 01-31 with last file date 01-30 (1 day before): kept.
    dates = ["2025-01-02", "2025-01-06", "2025-01-09", "2025-01-13", "2025-01-17",
             "2025-01-30"]
    chain = _chain(dates, ["2025-01-20", "2025-01-31", "2025-02-28"])  # 02-28 keeps 01-30 a file date
    ep, rep = build_episodes(chain, start="2025-01-01", end="2025-01-17", bucket_days=14,
                             target_km=1.0)
    # 01-02: taus 18 / 29 -> 01-20, skipped; 01-06: 14 / 25 -> 01-20 skipped;
    # 01-09: 11 / 22 -> 01-20 skipped; 01-13: 7 / 18 -> 01-31; 01-17: 3 / 14 -> 01-31.
    assert rep.counts == {"terminal date > 1 calendar day before expiry": 3}
    assert ep.start_dates == ("2025-01-13", "2025-01-17") and ep.expiries == ("2025-01-31",) * 2
    assert ep.terminal_dates == ("2025-01-30",) * 2
    np.testing.assert_array_equal(np.asarray(ep.n_hedges), [2, 1])
    # K/F closest to 1.0 with F = 101 is 100; to 1.03 (103.03) is 105
    assert float(ep.strike[0]) == 100.0
    ep2, _ = build_episodes(chain, start="2025-01-13", end="2025-01-13", bucket_days=14,
                            target_km=1.03)
    assert float(ep2.strike[0]) == 105.0
    # tie in tau distance goes to the shorter expiry: centre 21 between taus 14 and 28
    tie = _chain(["2025-03-03", "2025-03-17", "2025-03-31"], ["2025-03-17", "2025-03-31"])
    ept, _ = build_episodes(tie, start="2025-03-03", end="2025-03-03", bucket_days=21,
                            target_km=1.0)
    assert ept.expiries == ("2025-03-17",)


def test_q_hat_clipped_and_errors():
    chain = _chain(["2025-01-02", "2025-01-16", "2025-01-30"], ["2025-01-30", "2025-03-10"])
    chain["F"] = 80.0   # log(F/S) / tau very negative -> q_hat clipped at 0.20
    ep, _ = build_episodes(chain, start="2025-01-02", end="2025-01-02", bucket_days=28,
                           target_km=1.0)
    assert float(ep.q_hat[0]) == pytest.approx(0.20)
    with pytest.raises(ValueError, match=r"missing columns \['C_eur'\]"):
        build_episodes(chain.drop(columns="C_eur"), start="2025-01-02", end="2025-01-02",
                       bucket_days=28, target_km=1.0)
    with pytest.raises(ValueError, match="no quotes between"):
        build_episodes(chain, start="2026-01-01", end="2026-02-01", bucket_days=28,
                       target_km=1.0)
    with pytest.raises(ValueError, match="n_hedges"):
        episodes_from_arrays(np.ones((1, 3)), np.zeros((1, 3)), [1.0], 1.0, 1.0, 0.0, 0.0,
                             n_hedges=[3])
