"""Merton jump-diffusion: QuantLib, λ=0 → BS, parity, E[S_T] = F, exact Monte Carlo."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxhedge.pricing import bs_price, merton_price, merton_price_black76

S, R, Q, SIG, LAM, MU, DEL = 100.0, 0.03, 0.01, 0.2, 0.8, -0.12, 0.25
STRIKES = np.array([60.0, 80.0, 95.0, 100.0, 105.0, 120.0, 160.0])


def test_lambda_zero_is_black_scholes(x64):
    for call in (True, False):
        np.testing.assert_allclose(
            merton_price(S, STRIKES, 0.7, R, SIG, 0.0, MU, DEL, Q, call),
            bs_price(S, STRIKES, 0.7, R, SIG, Q, call), rtol=1e-13, atol=1e-13)


def test_put_call_parity_and_forward(x64):
    fwd, df, t = 105.0, 0.96, 1.3
    kk = jnp.linspace(30.0, 300.0, 28)
    c = merton_price_black76(fwd, kk, t, df, SIG, LAM, MU, DEL, True)
    p = merton_price_black76(fwd, kk, t, df, SIG, LAM, MU, DEL, False)
    np.testing.assert_allclose(c - p, df * (fwd - kk), atol=1e-11)
    # strike → 0: call → DF·E[S_T] = DF·F (fails with METHODS' F_n = F_adj e^{nμ_J})
    np.testing.assert_allclose(merton_price_black76(fwd, 1e-8, t, df, SIG, LAM, MU, DEL),
                               df * fwd, rtol=1e-10)


def test_matches_quantlib(x64):
    ql = pytest.importorskip("QuantLib")
    today = ql.Date(15, 3, 2024)
    ql.Settings.instance().evaluationDate = today
    dc = ql.Actual365Fixed()
    # The Python bindings ship no JumpDiffusionEngine; Bates (Heston + Merton jumps) with
    # constant variance (v0 = θ = σ², vol-of-vol → 0) is Merton76.
    for days in (30, 365):
        t = days / 365.0
        proc = ql.BatesProcess(
            ql.YieldTermStructureHandle(ql.FlatForward(today, R, dc)),
            ql.YieldTermStructureHandle(ql.FlatForward(today, Q, dc)),
            ql.QuoteHandle(ql.SimpleQuote(S)), SIG**2, 1.0, SIG**2, 1e-4, 0.0, LAM, MU, DEL)
        engine = ql.BatesEngine(ql.BatesModel(proc), 1e-12, 100000)
        for call in (True, False):
            ours = merton_price(S, STRIKES, t, R, SIG, LAM, MU, DEL, Q, call)
            for k, o in zip(STRIKES, np.asarray(ours)):
                opt = ql.VanillaOption(
                    ql.PlainVanillaPayoff(ql.Option.Call if call else ql.Option.Put, float(k)),
                    ql.EuropeanExercise(today + days))
                opt.setPricingEngine(engine)
                assert o == pytest.approx(opt.NPV(), rel=1e-6, abs=1e-8), (days, call, k)


def test_monte_carlo_exact_simulation(x64):
    rng = np.random.default_rng(7)
    n, t = 400_000, 0.5
    fwd, df = S * np.exp((R - Q) * t), np.exp(-R * t)
    k_comp = np.exp(MU + 0.5 * DEL**2) - 1.0
    nj = rng.poisson(LAM * t, n)
    log_st = (np.log(fwd) - 0.5 * SIG**2 * t - LAM * k_comp * t
              + SIG * np.sqrt(t) * rng.standard_normal(n)
              + nj * MU + np.sqrt(nj) * DEL * rng.standard_normal(n))
    st = np.exp(log_st)
    for k in (80.0, 100.0, 120.0):
        for call in (True, False):
            pay = df * np.maximum((st - k) if call else (k - st), 0.0)
            mc, se = pay.mean(), pay.std() / np.sqrt(n)
            ours = float(merton_price(S, k, t, R, SIG, LAM, MU, DEL, Q, call))
            assert abs(ours - mc) < 3 * se, (k, call, ours, mc, se)


def test_float32_jit_vmap_and_grad():
    params = jnp.array([[0.2, 0.5, -0.1, 0.2], [0.3, 2.0, 0.05, 0.1], [0.1, 0.0, 0.0, 0.3]],
                       jnp.float32)
    f = jax.jit(jax.vmap(lambda p: merton_price_black76(100.0, jnp.array([90.0, 110.0]), 0.25,
                                                        0.99, p[0], p[1], p[2], p[3])))
    out = f(params)
    assert out.shape == (3, 2) and out.dtype == jnp.float32 and bool(jnp.isfinite(out).all())
    # gradient w.r.t. λ is finite at λ = 0 (the calibration lower bound) and matches FD
    with jax.enable_x64(True):
        g = jax.grad(lambda lam: merton_price_black76(100.0, 100.0, 0.5, 0.99, 0.2, lam, -0.1, 0.2))
        h = 1e-6
        fd = (merton_price_black76(100.0, 100.0, 0.5, 0.99, 0.2, h, -0.1, 0.2)
              - merton_price_black76(100.0, 100.0, 0.5, 0.99, 0.2, 0.0, -0.1, 0.2)) / h
        assert float(g(0.0)) == pytest.approx(float(fd), rel=1e-4)
