"""Static IV-fit study: market/model IVs and the IVRMSE table against a numpy reference."""
import numpy as np
import pytest

from jaxhedge import calibrate as cal
from jaxhedge.calibrate import BSFit
from jaxhedge.calibrate.static import GROUPS, ivrmse_table
from jaxhedge.data import SliceBatch
from jaxhedge.pricing import black76_price


def _tiny_batch():
    """3 slices: two days of the 28-day bucket and one of the 14-day bucket."""
    k = np.array([[90.0, 100.0, 102.0, 110.0], [95.0, 99.0, 102.5, 1.0], [98.0, 1.0, 1.0, 1.0]])
    mask = np.array([[1, 1, 1, 1], [1, 1, 1, 0], [1, 0, 0, 0]], bool)
    f = np.where(mask, 100.0, 1.0)
    return SliceBatch(strike=k, tau=np.where(mask, 28 / 365, 0.1), forward=f,
                      discount=np.where(mask, 0.998, 1.0), price=np.zeros_like(k),
                      spot=f, rate=np.zeros_like(k), mask=mask,
                      keys=(("d1", 28), ("d2", 28), ("d1", 14)))


def _reference(batch, model_iv, market_iv):
    """Plain-loop numpy reference of the equal-day-average IVRMSE ×10³."""
    out = {}
    money = batch.strike / batch.forward
    for g, pred in GROUPS.items():
        per_bucket = {}
        for s, (day, bucket) in enumerate(batch.keys):
            errs = [(model_iv[s, j] - market_iv[s, j]) ** 2 for j in range(batch.mask.shape[1])
                    if batch.mask[s, j] and pred(money[s, j])]
            if errs:
                per_bucket.setdefault(bucket, []).append(1000 * np.sqrt(np.mean(errs)))
        for bucket, v in per_bucket.items():
            out[(bucket, g)] = (np.mean(v), len(v))
    return out


def test_ivrmse_table_matches_numpy_reference():
    batch = _tiny_batch()
    rng = np.random.default_rng(0)
    mkt = np.where(batch.mask, 0.2 + 0.05 * rng.standard_normal(batch.mask.shape), np.nan)
    mod = {"A": np.where(batch.mask, 0.21, np.nan),
           "B": np.where(batch.mask, mkt + 0.01 * rng.standard_normal(mkt.shape), np.nan)}
    table = ivrmse_table(batch, mod, mkt, period="2020Q1", asset="SPY")
    assert list(table.columns) == ["period", "asset", "bucket_days", "group", "model",
                                   "ivrmse_x1e3", "n_days"]
    for name, iv in mod.items():
        ref = _reference(batch, iv, mkt)
        got = table[table.model == name]
        assert len(got) == len(ref)
        for (bucket, g), (v, n) in ref.items():
            row = got[(got.bucket_days == bucket) & (got.group == g)]
            assert len(row) == 1 and int(row.n_days.iloc[0]) == n
            assert abs(float(row.ivrmse_x1e3.iloc[0]) - v) < 1e-9
    # K/F > 1.03 exists only on day d1 (K = 110) of the 28-day bucket: n_days = 1
    row = table[(table.model == "A") & (table.group == "K/F>1.03")]
    assert row.n_days.tolist() == [1] and row.bucket_days.tolist() == [28]
    assert (table.period == "2020Q1").all() and (table.asset == "SPY").all()


def test_ivrmse_table_rejects_bad_keys_and_shapes():
    batch = _tiny_batch()
    mkt = np.full(batch.mask.shape, 0.2)
    with pytest.raises(ValueError, match="key_names"):
        ivrmse_table(batch, {"A": mkt}, mkt, key_names=("date",))
    with pytest.raises(ValueError, match="model_ivs"):
        ivrmse_table(batch, {"A": mkt[:, :2]}, mkt)


def test_market_iv_roundtrip_and_on_bound_quotes(x64):
    batch = _tiny_batch()
    sig = np.array([[0.15, 0.2, 0.25, 0.3], [0.5, 0.6, 0.7, 0.1], [2.5, 0.1, 0.1, 0.1]])
    p = np.array(black76_price(batch.forward, batch.strike, batch.tau, batch.discount, sig))
    # slice 0, strike 90: put the quote exactly on the lower bound DF·(F − K)
    p[0, 0] = 0.998 * (100.0 - 90.0)
    b = batch.replace(price=p)
    iv = np.asarray(cal.market_iv(b))
    m = batch.mask.copy()
    m[0, 0] = False
    np.testing.assert_allclose(iv[m], sig[m], rtol=1e-8)
    assert np.isnan(iv[~batch.mask]).all()
    # on-bound: inverted (not dropped, not 0) to the small σ* whose price rounds to the bound
    assert 1e-4 <= iv[0, 0] < 0.15
    back = float(black76_price(100.0, 90.0, 28 / 365, 0.998, iv[0, 0]))
    assert back == pytest.approx(p[0, 0], abs=1e-12)


def test_bs_model_iv_is_the_calibrated_sigma_everywhere(x64):
    batch = _tiny_batch()
    # deep ITM contract whose BS time value underflows: still gets σ, not an inversion
    batch = batch.replace(strike=np.where(batch.mask, batch.strike, 1.0))
    fit = BSFit(sigma=np.array([0.2, 0.3, 0.05]), sse=np.zeros(3), n_quotes=np.zeros(3, int))
    iv = np.asarray(cal.model_iv(fit, batch))
    np.testing.assert_array_equal(iv[batch.mask], np.repeat([0.2, 0.3, 0.05], [4, 3, 1]))


def test_model_iv_of_prices_on_or_below_the_bound_is_treated_like_a_market_quote(x64):
    batch = _tiny_batch()
    lower = batch.discount * np.maximum(batch.forward - batch.strike, 0.0)
    prices = np.where(batch.mask, lower - 1e-13, 1.0)  # quadrature noise below intrinsic
    prices[0, 1:] = np.array(black76_price(100.0, batch.strike[0, 1:], 28 / 365, 0.998, 0.2))
    iv = np.asarray(cal.model_iv(prices, batch))
    assert np.isfinite(iv[batch.mask]).all()
    np.testing.assert_allclose(iv[0, 1:], 0.2, rtol=1e-8)
    # ITM quote below the bound: same σ* as a market quote exactly on the bound
    on = np.asarray(cal.market_iv(batch.replace(price=np.where(batch.mask, lower, 1.0))))
    assert iv[0, 0] == pytest.approx(on[0, 0], rel=1e-6)
