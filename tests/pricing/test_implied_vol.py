"""Implied vol: round trip on a wide grid (float64 and float32), bounds, on-bound quotes."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxhedge.pricing import (
    ImpliedVol, black76_price, black76_vega, bs_price, implied_vol_black76, implied_vol_bs,
)

KF = np.linspace(0.5, 2.0, 31)
TAUS = np.array([1 / 365, 7 / 365, 30 / 365, 0.25, 1.0, 2.0])
VOLS = np.array([0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0])
DF = 0.97
iv_b76 = jax.jit(implied_vol_black76)  # one compile per shape/dtype instead of op-by-op


def _grid(dtype):
    k, t, v, c = np.meshgrid(KF, TAUS, VOLS, np.array([True, False]), indexing="ij")
    return (jnp.asarray(k, dtype), jnp.asarray(t, dtype), jnp.asarray(v, dtype), jnp.asarray(c))


def _round_trip(dtype):
    k, t, v, c = _grid(dtype)
    fwd, df = jnp.asarray(1.0, dtype), jnp.asarray(DF, dtype)
    price = black76_price(fwd, k, t, df, v, c)
    iv = jax.jit(implied_vol_black76)(price, fwd, k, t, df, c)
    return k, t, v, c, price, iv, black76_vega(fwd, k, t, df, v)


def test_round_trip_float64(x64):
    k, t, v, c, price, iv, vega = _round_trip(jnp.float64)
    assert iv.vol.dtype == jnp.float64 and bool(iv.valid.all())
    repriced = black76_price(1.0, k, t, DF, iv.vol, c)
    np.testing.assert_allclose(repriced, price, rtol=0, atol=4e-16)
    # vols wherever the price carries vol information (vega not tiny)
    informative = np.asarray(vega > 1e-6)
    assert informative.mean() > 0.6
    err = np.abs(np.asarray(iv.vol - v))[informative]
    tol = 1e-9 * np.asarray(v)[informative] + 50 * 2.2e-16 / np.asarray(vega)[informative]
    assert np.all(err <= tol), err.max()


def test_round_trip_float32():
    k, t, v, c, price, iv, vega = _round_trip(jnp.float32)
    assert iv.vol.dtype == jnp.float32 and bool(iv.valid.all())
    assert bool(jnp.isfinite(iv.vol).all())
    repriced = black76_price(jnp.float32(1.0), k, t, jnp.float32(DF), iv.vol, c)
    np.testing.assert_allclose(repriced, price, rtol=0, atol=5e-7)
    informative = np.asarray(vega > 1e-3)
    err = np.abs(np.asarray(iv.vol - v))[informative]
    tol = 1e-5 * np.asarray(v)[informative] + 8 * 1.2e-7 / np.asarray(vega)[informative]
    assert np.all(err <= tol), (err / tol).max()


def test_outside_bounds_is_nan_and_flagged(x64):
    f, k, t, df = 100.0, jnp.array([80.0, 100.0, 120.0]), 0.5, 0.98
    for call in (True, False):
        intrinsic = df * jnp.maximum((f - k) if call else (k - f), 0.0)
        upper = df * (f if call else k)
        for bad in (intrinsic - 0.01, upper + 0.01, upper, jnp.full(3, -1.0)):
            iv = iv_b76(bad, f, k, t, df, call)
            assert isinstance(iv, ImpliedVol)
            assert not bool(iv.valid.any()) and bool(jnp.isnan(iv.vol).all())
    # needs a vol above the bracket -> NaN, not a silent clamp to `hi`
    p = black76_price(f, 100.0, t, df, 8.0)
    assert not bool(iv_b76(p, f, 100.0, t, df, hi=5.0).valid)
    assert float(iv_b76(p, f, 100.0, t, df).vol) == pytest.approx(8.0, rel=1e-10)
    # degenerate inputs
    for args in [(5.0, f, 100.0, 0.0, df), (5.0, f, 100.0, t, -1.0), (jnp.nan, f, 100.0, t, df)]:
        iv = iv_b76(*args)
        assert not bool(iv.valid) and bool(jnp.isnan(iv.vol))


@pytest.mark.parametrize("use_x64", [False, True])
def test_quote_on_lower_bound(use_x64):
    with jax.enable_x64(use_x64):
        dtype = jnp.float64 if use_x64 else jnp.float32
        f, df, t = jnp.asarray(100.0, dtype), jnp.asarray(0.99, dtype), jnp.asarray(0.05, dtype)
        k = jnp.asarray([60.0, 80.0, 95.0], dtype)
        call_bound = df * (f - k)
        put_bound = jnp.zeros_like(k)  # OTM put with zero value is also on its bound
        for price, call in ((call_bound, True), (put_bound, False)):
            iv = iv_b76(price, f, k, t, df, call)
            assert bool(iv.valid.all()) and bool(jnp.isfinite(iv.vol).all())
            # reproduces the quote, and sits at the edge: twice the vol shows time value
            # (the exact edge depends on how the pricer rounds: METHODS §5.5 "wobble")
            np.testing.assert_allclose(black76_price(f, k, t, df, iv.vol, call), price,
                                       atol=float(8 * jnp.finfo(dtype).eps * 100))
            assert bool((black76_price(f, k, t, df, 2.0 * iv.vol, call) > price).all())
            assert bool((iv.vol > 1e-4).all() & (iv.vol < 0.5).all())


def test_bs_wrapper_and_vmap(x64):
    s, r, q, t = 100.0, 0.04, 0.02, 0.3
    k = jnp.array([80.0, 100.0, 125.0])
    vols = jnp.array([[0.2, 0.3, 0.4], [0.6, 0.5, 0.15]])
    prices = bs_price(s, k, t, r, vols, q, False)
    iv = jax.vmap(lambda p: implied_vol_bs(p, s, k, t, r, q, False))(prices)
    np.testing.assert_allclose(iv.vol, vols, rtol=1e-10)
    assert iv.vol.shape == (2, 3) and iv.valid.dtype == jnp.bool_
