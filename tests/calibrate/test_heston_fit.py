"""Heston fit: recovery from self-generated noisy prices (slow: the Lewis-integral
Jacobians compile and run for ~30 s on 2 busy cores) and a fast BS-nesting check."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxhedge import calibrate as cal
from jaxhedge.calibrate import HestonFit
from jaxhedge.pricing import black76_price


def _rms_iv_error(fit, truth, batch):
    a = np.asarray(cal.model_iv(fit, batch))
    b = np.asarray(cal.model_iv(truth, batch))
    m = np.asarray(batch.mask)
    return float(np.sqrt(np.nanmean((a[m] - b[m]) ** 2)))


def test_heston_nests_bs_and_respects_bounds(x64, synth):
    make, with_prices = synth
    batch = make(2, n_quotes=(8, 10), seed=6)
    p = black76_price(batch.forward, batch.strike, batch.tau, batch.discount,
                      np.array([[0.2], [0.45]]))
    batch = with_prices(batch, p)
    fit = cal.fit_heston(batch, n_iter=10, dtype="float64")
    bs = cal.fit_bs(batch, dtype="float64")
    # the BS-like start (ξ = 0.01) alone almost reproduces flat-vol prices
    assert np.all(np.asarray(fit.sse) <= np.asarray(bs.sse) + 1e-6 * np.max(batch.forward) ** 2)
    np.testing.assert_allclose(np.sqrt(np.asarray(fit.v0)), [0.2, 0.45], rtol=0.02)
    for name, (lo, hi) in cal.HESTON_BOUNDS.items():
        v = np.asarray(getattr(fit, name))
        assert np.all((v >= lo) & (v <= hi)), name


HESTON_TRUE = dict(kappa=np.array([2.0, 1.0, 4.0, 3.0]), theta=np.array([0.04, 0.09, 0.02, 0.06]),
                   xi=np.array([0.5, 0.8, 0.3, 1.2]), rho=np.array([-0.7, -0.5, -0.3, -0.8]),
                   v0=np.array([0.03, 0.12, 0.02, 0.05]))


@pytest.mark.slow
def test_heston_recovers_prices_and_identifiable_parameters(x64, synth):
    make, with_prices = synth
    batch = make(4, n_quotes=(14, 18), seed=2, lo=0.8, hi=1.15, taus=(14, 56))
    truth = HestonFit(**{k: jnp.asarray(v) for k, v in HESTON_TRUE.items()},
                      sse=jnp.zeros(4), n_quotes=jnp.zeros(4, int))
    p = cal.slice_prices(truth, batch, dtype="float64")
    noisy = with_prices(batch, p, noise=3e-5)
    fit = cal.fit_heston(noisy, dtype="float64")
    sse_true = np.sum(np.where(batch.mask, (np.asarray(p) - noisy.price) ** 2, 0.0), axis=1)
    assert np.all(np.asarray(fit.sse) <= sse_true * 1.01 + 1e-10)
    assert _rms_iv_error(fit, truth, batch) < 3e-3
    # identifiable: the expected variance over the slice's horizon (≈ v0 for short τ,
    # ATM level) to 15%, and the sign/size of the skew ρξ to 35%
    for name, (lo, hi) in cal.HESTON_BOUNDS.items():
        v = np.asarray(getattr(fit, name))
        assert np.all((v >= lo) & (v <= hi)), name
    ev = lambda k, th, v0, t: th + (v0 - th) * (1 - np.exp(-k * t)) / (k * t)
    t = 28 / 365
    got = ev(np.asarray(fit.kappa), np.asarray(fit.theta), np.asarray(fit.v0), t)
    want = ev(HESTON_TRUE["kappa"], HESTON_TRUE["theta"], HESTON_TRUE["v0"], t)
    np.testing.assert_allclose(got, want, rtol=0.15)
    skew = np.asarray(fit.rho * fit.xi)
    np.testing.assert_allclose(skew, HESTON_TRUE["rho"] * HESTON_TRUE["xi"], rtol=0.35)


def test_heston_fd_delta_matches_autodiff_and_is_a_call_delta(x64):
    s, k, tau, r, q = jnp.linspace(80, 120, 9), 100.0, 30 / 365, 0.03, 0.01
    # FD delta vs autodiff of the same price function, and within [0, e^{-qτ}]
    hf = HestonFit(kappa=jnp.asarray(2.0), theta=jnp.asarray(0.05), xi=jnp.asarray(0.6),
                   rho=jnp.asarray(-0.7), v0=jnp.asarray(0.04), sse=jnp.asarray(0.0),
                   n_quotes=jnp.asarray(0))
    d = np.asarray(cal.model_delta(hf, s, k, tau, r, q))
    price_s = lambda x: cal.model_price(hf, x * jnp.exp((r - q) * tau), k, tau,
                                        jnp.exp(-r * tau))
    ad = np.asarray(jax.vmap(jax.grad(price_s))(s))
    np.testing.assert_allclose(d, ad, atol=3e-5)  # O(h²) central-difference error, h = 0.1
    assert np.all((d >= 0) & (d <= np.exp(-q * tau))) and np.all(np.diff(d) > 0)
