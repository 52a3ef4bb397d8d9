"""Heston: QuantLib AnalyticHestonEngine, parity, ξ → 0 limit, Monte Carlo, jit/vmap/grad."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxhedge.pricing import bs_price, heston_price, heston_price_black76

PARAMS = [  # (kappa, theta, xi, rho, v0)
    (2.0, 0.04, 0.5, -0.7, 0.04),
    (5.0, 0.02, 0.3, -0.3, 0.05),
    (3.0, 0.01, 0.2, 0.0, 0.01),
    (1.0, 0.09, 1.0, -0.9, 0.01),
    (0.5, 0.5, 2.0, -0.5, 0.5),
]
heston_jit = jax.jit(heston_price, static_argnames=("is_call", "n_quad"))
STRIKES = [80.0, 90.0, 95.0, 100.0, 105.0, 110.0, 125.0]


def _ql_prices(ql, days, p, call, s=100.0, r=0.03, q=0.01):
    today = ql.Date(15, 3, 2024)
    ql.Settings.instance().evaluationDate = today
    dc = ql.Actual365Fixed()
    kappa, theta, xi, rho, v0 = p
    proc = ql.HestonProcess(ql.YieldTermStructureHandle(ql.FlatForward(today, r, dc)),
                            ql.YieldTermStructureHandle(ql.FlatForward(today, q, dc)),
                            ql.QuoteHandle(ql.SimpleQuote(s)), v0, kappa, theta, xi, rho)
    engine = ql.AnalyticHestonEngine(ql.HestonModel(proc), 1e-13, 1_000_000)
    out = []
    for k in STRIKES:
        opt = ql.VanillaOption(ql.PlainVanillaPayoff(ql.Option.Call if call else ql.Option.Put, k),
                               ql.EuropeanExercise(today + days))
        opt.setPricingEngine(engine)
        out.append(opt.NPV())
    return np.array(out)


@pytest.mark.parametrize("days", [7, 30, 182, 730])
def test_matches_quantlib(x64, days):
    ql = pytest.importorskip("QuantLib")
    k = jnp.asarray(STRIKES)
    for p in PARAMS:
        for call in (True, False):
            ref = _ql_prices(ql, days, p, call)
            ours = np.asarray(heston_jit(100.0, k, days / 365.0, 0.03, *p, div_yield=0.01,
                                         is_call=call))
            # ~1e-6 relative on non-negligible prices (absolute floor for the tiny ones)
            np.testing.assert_allclose(ours, ref, rtol=1e-6, atol=2e-7 * 100,
                                       err_msg=f"{days} {p} {call}")


def test_fixed_u_max_matches_for_long_maturity(x64):
    """METHODS' fixed cut u_max = 100 is fine once the CF has decayed by u = 100."""
    k = jnp.asarray(STRIKES)
    auto = heston_price(100.0, k, 1.0, 0.03, *PARAMS[0])
    fixed = heston_price(100.0, k, 1.0, 0.03, *PARAMS[0], u_max=100.0)
    np.testing.assert_allclose(fixed, auto, rtol=1e-8, atol=1e-10)


def test_put_call_parity(x64):
    fwd, df, t = 103.0, 0.97, 0.4
    k = jnp.linspace(50.0, 200.0, 16)
    c = heston_price_black76(fwd, k, t, df, *PARAMS[3], is_call=True)
    p = heston_price_black76(fwd, k, t, df, *PARAMS[3], is_call=False)
    np.testing.assert_allclose(c - p, df * (fwd - k), atol=1e-10)
    # no-arbitrage lower bound up to the documented ~1e-9·F quadrature error for ξ = 1
    assert bool((c >= df * jnp.maximum(fwd - k, 0) - 1e-9 * fwd).all())


@pytest.mark.parametrize("use_x64", [False, True])
def test_small_vol_of_vol_is_black_scholes(use_x64):
    with jax.enable_x64(use_x64):
        k = jnp.asarray(STRIKES)
        for t in (0.05, 1.0):
            # price correction is first order in ρξ: ξ = 1e-8 leaves ~1e-9
            h = heston_price(100.0, k, t, 0.02, 1.5, 0.09, 1e-8, -0.5, 0.09, div_yield=0.01)
            b = bs_price(100.0, k, t, 0.02, 0.3, 0.01)
            assert h.dtype == (jnp.float64 if use_x64 else jnp.float32)
            np.testing.assert_allclose(h, b, atol=1e-7 if use_x64 else 2e-4)


def test_monte_carlo_full_truncation_euler(x64):
    """Independent check: full-truncation Euler in numpy (log-Euler for S), fixed seed."""
    kappa, theta, xi, rho, v0 = PARAMS[0]
    s0, r, t, n_paths, n_steps = 100.0, 0.03, 0.5, 100_000, 100
    dt = t / n_steps
    rng = np.random.default_rng(1234)
    log_s = np.full(n_paths, np.log(s0))
    v = np.full(n_paths, v0)
    for _ in range(n_steps):
        z1 = rng.standard_normal(n_paths)
        z2 = rho * z1 + np.sqrt(1 - rho * rho) * rng.standard_normal(n_paths)
        vp = np.maximum(v, 0.0)
        log_s += (r - 0.5 * vp) * dt + np.sqrt(vp * dt) * z1
        v += kappa * (theta - vp) * dt + xi * np.sqrt(vp * dt) * z2
    st = np.exp(log_s)
    for k in (85.0, 100.0, 115.0):
        for call in (True, False):
            pay = np.exp(-r * t) * np.maximum((st - k) if call else (k - st), 0.0)
            mc, se = pay.mean(), pay.std() / np.sqrt(n_paths)
            ours = float(heston_jit(s0, k, t, r, kappa, theta, xi, rho, v0, is_call=call))
            assert abs(ours - mc) < 3 * se, (k, call, ours, mc, se)


def test_float32_vmap_over_parameter_sets_and_grad():
    params = jnp.asarray(PARAMS, jnp.float32)
    k = jnp.asarray(STRIKES, jnp.float32)
    f = jax.jit(jax.vmap(lambda p: heston_price_black76(100.0, k, 0.1, 0.99, *p)))
    out = f(params)
    assert out.shape == (len(PARAMS), len(STRIKES)) and out.dtype == jnp.float32
    assert bool(jnp.isfinite(out).all())
    with jax.enable_x64(True):
        ref = jnp.stack([heston_price_black76(100.0, jnp.asarray(STRIKES), 0.1, 0.99, *p)
                         for p in PARAMS])
    np.testing.assert_allclose(out, ref, atol=5e-4)
    # calibration needs finite gradients in every parameter
    g = jax.grad(lambda p: heston_price_black76(100.0, k, 0.1, 0.99, *p).sum())(params[0])
    assert bool(jnp.isfinite(g).all())
