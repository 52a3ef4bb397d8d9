"""Maturity buckets, moneyness groups, static (date, bucket) slices (METHODS §5.3)."""
import numpy as np
import pandas as pd
import pytest

from jaxhedge.data import assign_buckets, bucket_of, group_masks, load_period, static_slices


def test_bucket_of_nearest_centre_ties_to_shorter():
    t = np.arange(3, 71)
    expect = np.where(t <= 21, 14, np.where(t <= 42, 28, 56))  # 21 and 42 are ties
    np.testing.assert_array_equal(bucket_of(t), expect)
    np.testing.assert_array_equal(bucket_of([[13, 29], [50, 70]]), [[14, 28], [56, 56]])


def test_group_masks_match_numpy():
    rng = np.random.default_rng(1)
    km = rng.uniform(0.8, 1.2, (4, 9))
    km[0, 0], km[0, 1] = 1.0, 1.03
    mask = rng.uniform(size=km.shape) < 0.8
    g = group_masks(km, mask)
    assert g["all"].sum() == mask.sum()
    assert g["K/F<1"].sum() == (mask & (km < 1)).sum()
    assert g["K/F>1"].sum() == (mask & (km > 1)).sum()
    assert g["K/F>1.03"].sum() == (mask & (km > 1.03)).sum()
    assert not g["K/F>1"][0, 0] and not g["K/F<1"][0, 0] and not g["K/F>1.03"][0, 1]


def test_static_slices_synthetic():
    d = pd.Timestamp("2025-01-02")
    df = pd.DataFrame({"date": [d] * 5 + [d + pd.Timedelta(days=1)] * 2,
                       "tau_days": [14, 14, 30, 30, 30, 13, 60], "strike": np.arange(7.0) + 90,
                       "tau_years": 0.1, "F": 100.0, "DF": 0.99, "C_eur": 1.0, "S": 100.0,
                       "r": 0.01})
    b = static_slices(df)
    assert b.keys == ((d, 14), (d, 28), (d + pd.Timedelta(days=1), 14),
                      (d + pd.Timedelta(days=1), 56))
    np.testing.assert_array_equal(b.mask.sum(1), [2, 3, 1, 1])
    np.testing.assert_array_equal(b.strike[1], [92, 93, 94])
    assert static_slices(df, bucket=28).n_slices == 1
    with pytest.raises(ValueError, match="bucket: 7 has no quotes"):
        static_slices(df, bucket=7)


def test_static_slices_shared_spy_2020(data_dir):
    q = assign_buckets(load_period(data_dir, "spy", "2020q1").quotes)
    # the file holds three expiries a day, one near each centre
    per_day = q.groupby("date")["bucket"].nunique()
    assert (per_day == 3).all()
    for c in (14, 28, 56):
        b = static_slices(q, bucket=c, dtype=np.float32)
        sub = q[q["bucket"] == c]
        assert b.n_slices == sub["date"].nunique() == 35
        assert int(b.mask.sum()) == len(sub) and b.strike.dtype == np.float32
        np.testing.assert_allclose(np.asarray(b.moneyness)[b.mask],
                                   (sub["strike"] / sub["F"]).to_numpy(), rtol=1e-6)
