"""Black-Scholes / Black-76: scipy reference, QuantLib, parity, autodiff greeks, expiry."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import norm

from jaxhedge.pricing import (
    black76_delta, black76_price, bs_delta, bs_gamma, bs_price, bs_theta, bs_vega, d1_d2,
)

S, K, T, R, V, Q = 100.0, np.array([70.0, 90.0, 100.0, 110.0, 140.0]), 0.7, 0.03, 0.25, 0.015


def ref_bs(s, k, t, r, v, q, call):
    """Independent numpy/scipy implementation (textbook formulas)."""
    d1 = (np.log(s / k) + (r - q + 0.5 * v * v) * t) / (v * np.sqrt(t))
    d2 = d1 - v * np.sqrt(t)
    if call:
        price = s * np.exp(-q * t) * norm.cdf(d1) - k * np.exp(-r * t) * norm.cdf(d2)
        delta = np.exp(-q * t) * norm.cdf(d1)
        theta = (-s * np.exp(-q * t) * norm.pdf(d1) * v / (2 * np.sqrt(t))
                 - r * k * np.exp(-r * t) * norm.cdf(d2) + q * s * np.exp(-q * t) * norm.cdf(d1))
    else:
        price = k * np.exp(-r * t) * norm.cdf(-d2) - s * np.exp(-q * t) * norm.cdf(-d1)
        delta = -np.exp(-q * t) * norm.cdf(-d1)
        theta = (-s * np.exp(-q * t) * norm.pdf(d1) * v / (2 * np.sqrt(t))
                 + r * k * np.exp(-r * t) * norm.cdf(-d2) - q * s * np.exp(-q * t) * norm.cdf(-d1))
    gamma = np.exp(-q * t) * norm.pdf(d1) / (s * v * np.sqrt(t))
    vega = s * np.exp(-q * t) * norm.pdf(d1) * np.sqrt(t)
    return price, delta, gamma, vega, theta


@pytest.mark.parametrize("call", [True, False])
def test_matches_scipy_reference(x64, call):
    ref = ref_bs(S, K, T, R, V, Q, call)
    ours = [f(S, K, T, R, V, Q, call) for f in (bs_price, bs_delta, bs_gamma, bs_vega, bs_theta)]
    for a, b in zip(ours, ref):
        np.testing.assert_allclose(np.asarray(a), b, rtol=1e-12, atol=1e-12)
    d1, d2 = d1_d2(S, K, T, R, V, Q)
    np.testing.assert_allclose(np.asarray(d1 - d2), V * np.sqrt(T), rtol=1e-13)


@pytest.mark.parametrize("call", [True, False])
def test_matches_quantlib(x64, call):
    ql = pytest.importorskip("QuantLib")
    today = ql.Date(15, 3, 2024)
    ql.Settings.instance().evaluationDate = today
    dc = ql.Actual365Fixed()
    days = 255
    t = days / 365.0
    spot = ql.SimpleQuote(S)
    proc = ql.BlackScholesMertonProcess(
        ql.QuoteHandle(spot),
        ql.YieldTermStructureHandle(ql.FlatForward(today, Q, dc)),
        ql.YieldTermStructureHandle(ql.FlatForward(today, R, dc)),
        ql.BlackVolTermStructureHandle(ql.BlackConstantVol(today, ql.NullCalendar(), V, dc)),
    )
    for k in K:
        opt = ql.VanillaOption(
            ql.PlainVanillaPayoff(ql.Option.Call if call else ql.Option.Put, float(k)),
            ql.EuropeanExercise(today + days),
        )
        opt.setPricingEngine(ql.AnalyticEuropeanEngine(proc))
        args = (S, k, t, R, V, Q, call)
        np.testing.assert_allclose(float(bs_price(*args)), opt.NPV(), rtol=1e-10)
        np.testing.assert_allclose(float(bs_delta(*args)), opt.delta(), rtol=1e-10)
        np.testing.assert_allclose(float(bs_gamma(*args)), opt.gamma(), rtol=1e-10)
        np.testing.assert_allclose(float(bs_vega(*args)), opt.vega(), rtol=1e-10)
        # QuantLib's theta is also dV/dt per year (calendar time passing).
        np.testing.assert_allclose(float(bs_theta(*args)), opt.theta(), rtol=1e-8)


def test_put_call_parity_and_black76(x64):
    kk = jnp.linspace(50.0, 200.0, 31)
    c = bs_price(S, kk, T, R, V, Q, True)
    p = bs_price(S, kk, T, R, V, Q, False)
    np.testing.assert_allclose(c - p, S * np.exp(-Q * T) - kk * np.exp(-R * T), atol=1e-11)
    dc = bs_delta(S, kk, T, R, V, Q, True) - bs_delta(S, kk, T, R, V, Q, False)
    np.testing.assert_allclose(dc, np.exp(-Q * T), atol=1e-14)
    fwd, df = S * np.exp((R - Q) * T), np.exp(-R * T)
    for call in (True, False):
        np.testing.assert_allclose(black76_price(fwd, kk, T, df, V, call),
                                   bs_price(S, kk, T, R, V, Q, call), rtol=1e-12, atol=1e-12)
        # dP/dS = dP/dF · dF/dS
        np.testing.assert_allclose(black76_delta(fwd, kk, T, df, V, call) * fwd / S,
                                   bs_delta(S, kk, T, R, V, Q, call), rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("call", [True, False])
def test_greeks_equal_autodiff(x64, call):
    price = lambda s, t, v: bs_price(s, 95.0, t, R, v, Q, call)  # noqa: E731
    args = (102.0, 0.4, 0.3)
    g = jax.grad(price, argnums=(0, 1, 2))(*args)
    gamma = jax.grad(jax.grad(price))(*args)
    np.testing.assert_allclose(g[0], bs_delta(102.0, 95.0, 0.4, R, 0.3, Q, call), rtol=1e-12)
    np.testing.assert_allclose(-g[1], bs_theta(102.0, 95.0, 0.4, R, 0.3, Q, call), rtol=1e-12)
    np.testing.assert_allclose(g[2], bs_vega(102.0, 95.0, 0.4, R, 0.3, Q, call), rtol=1e-12)
    np.testing.assert_allclose(gamma, bs_gamma(102.0, 95.0, 0.4, R, 0.3, Q, call), rtol=1e-12)


def test_expiry_and_zero_vol_limits(x64):
    s = jnp.array([90.0, 100.0, 110.0])
    for tau, vol in [(0.0, 0.2), (0.5, 0.0), (0.0, 0.0)]:
        fwd = s * np.exp((R - Q) * tau)
        k_df = 100.0 * np.exp(-R * tau)
        c = bs_price(s, 100.0, tau, R, vol, Q, True)
        p = bs_price(s, 100.0, tau, R, vol, Q, False)
        np.testing.assert_allclose(c, np.maximum(s * np.exp(-Q * tau) - k_df, 0), atol=1e-12)
        np.testing.assert_allclose(p, np.maximum(k_df - s * np.exp(-Q * tau), 0), atol=1e-12)
        dc = np.asarray(bs_delta(s, 100.0, tau, R, vol, Q, True))
        dp = np.asarray(bs_delta(s, 100.0, tau, R, vol, Q, False))
        itm = np.asarray(fwd > 100.0, float)
        otm = np.asarray(fwd < 100.0, float)
        # (fwd of s = 100 is off the strike for τ > 0; only the two clear cases are checked)
        assert dc[0] == 0 and dc[2] == pytest.approx(np.exp(-Q * tau))
        assert dp[0] == pytest.approx(-np.exp(-Q * tau)) and dp[2] == 0
        np.testing.assert_allclose(dc[[0, 2]], (itm * np.exp(-Q * tau))[[0, 2]])
        np.testing.assert_allclose(dp[[0, 2]], (-otm * np.exp(-Q * tau))[[0, 2]])
        for f in (bs_gamma, bs_vega):
            np.testing.assert_array_equal(f(s, 100.0, tau, R, vol, Q), 0.0)
        assert np.all(np.isfinite(bs_theta(s, 100.0, tau, R, vol, Q)))
    # Exactly ATM at expiry: the vol → 0 limit N(0) = ½, which keeps delta parity.
    assert float(bs_delta(100.0, 100.0, 0.0, R, 0.2)) == 0.5
    assert float(bs_delta(100.0, 100.0, 0.0, R, 0.2, is_call=False)) == -0.5


@pytest.mark.parametrize("dtype_x64", [False, True])
def test_no_nan_gradients_at_expiry(dtype_x64):
    with jax.enable_x64(dtype_x64):
        fns = (bs_price, bs_delta, bs_gamma, bs_vega, bs_theta)
        for f in fns:
            for s in (90.0, 100.0, 110.0):
                for call in (True, False):
                    g = jax.grad(lambda s_, t_, v_: f(s_, 100.0, t_, R, v_, Q, call),
                                 argnums=(0, 1, 2))(s, 0.0, 0.0)
                    g2 = jax.grad(lambda s_, t_, v_: f(s_, 100.0, t_, R, v_, Q, call),
                                  argnums=(0, 1, 2))(s, 0.0, 0.2)
                    assert all(np.isfinite(x) for x in g + g2), (f.__name__, s, call)
        # tiny but positive τ (one second): finite, and delta already ~ the indicator
        assert np.isfinite(jax.grad(bs_delta)(100.5, 100.0, 1 / 3.15e7, R, 0.2))


def test_float32_default_and_broadcast_with_bool_array():
    s = jnp.linspace(80.0, 120.0, 5, dtype=jnp.float32)[:, None]
    is_call = jnp.array([True, False, True])
    out = bs_price(s, jnp.array([90.0, 100.0, 110.0]), 0.25, 0.02, 0.3, 0.0, is_call)
    assert out.shape == (5, 3) and out.dtype == jnp.float32
    assert np.all(np.isfinite(out))
    for f in (bs_delta, bs_gamma, bs_vega, bs_theta):
        r = f(s, 100.0, 0.25, 0.02, 0.3, 0.0, is_call)
        assert r.dtype == jnp.float32 and np.all(np.isfinite(r))
    np.testing.assert_allclose(out[:, 1], bs_price(s[:, 0], 100.0, 0.25, 0.02, 0.3, 0.0, False),
                               rtol=1e-6)


def test_jit_vmap(x64):
    vols = jnp.array([0.1, 0.2, 0.4])
    f = jax.jit(jax.vmap(lambda v: bs_price(100.0, 100.0, 1.0, 0.0, v)))
    np.testing.assert_allclose(f(vols), [bs_price(100.0, 100.0, 1.0, 0.0, v) for v in vols],
                               rtol=1e-14)
    # ATM, zero rates: C = S(2N(σ√τ/2) − 1)
    np.testing.assert_allclose(f(vols), 100 * (2 * norm.cdf(vols / 2) - 1), rtol=1e-12)
