"""BS / Merton / Heston fits: recovery from self-generated noisy prices (8 slices in one
vmapped call), a scipy oracle, no-arbitrage of fitted prices, deltas, bad input."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from scipy.optimize import minimize_scalar

from jaxhedge import calibrate as cal
from jaxhedge.calibrate import BSFit, HestonFit, MertonFit
from jaxhedge.pricing import black76_price, bs_delta, merton_price_black76


def _rms_iv_error(fit, truth, batch):
    """RMS over real quotes of model IV(fit) − model IV(truth) (vol units)."""
    a = np.asarray(cal.model_iv(fit, batch))
    b = np.asarray(cal.model_iv(truth, batch))
    m = np.asarray(batch.mask)
    return float(np.sqrt(np.nanmean((a[m] - b[m]) ** 2)))


def assert_no_arbitrage_on_grid(fit, batch):
    """Fitted call prices of every slice on a K/F grid 0.6..1.6 stay inside
    [DF·max(F − K, 0), DF·F] and are decreasing and convex in K."""
    grid = jnp.linspace(0.6, 1.6, 201)
    for i in range(batch.mask.shape[0]):
        one = jax.tree.map(lambda a: a[i], fit)
        for j in (0, 1):  # both expiries of the slice
            f, df, t = (float(getattr(batch, n)[i, j]) for n in ("forward", "discount", "tau"))
            kk = np.asarray(grid) * f
            c = np.asarray(cal.model_price(one, f, grid * f, t, df))
            tol = 1e-9 * f
            assert np.all(c >= df * np.maximum(f - kk, 0) - tol) and np.all(c <= df * f + tol)
            assert np.all(np.diff(c) <= tol) and np.all(np.diff(c, 2) >= -tol)


def test_bs_recovers_sigma_from_noisy_prices(x64, synth):
    make, with_prices = synth
    batch = make(8, seed=0)
    sigma = np.linspace(0.08, 1.2, 8)
    p = black76_price(batch.forward, batch.strike, batch.tau, batch.discount, sigma[:, None])
    noisy = with_prices(batch, p, noise=2e-4)
    fit = cal.fit_bs(noisy, dtype="float64")
    assert fit.sigma.shape == (8,)
    # noise 2e-4·F per quote against vega ~ 0.1·F·sqrt(τ) on ≥ 10 quotes: σ error ≲ 1e-3
    np.testing.assert_allclose(fit.sigma, sigma, atol=2e-3)
    exact = cal.fit_bs(with_prices(batch, p), dtype="float64")
    np.testing.assert_allclose(exact.sigma, sigma, rtol=1e-7)
    np.testing.assert_array_equal(fit.n_quotes, batch.mask.sum(1))
    assert_no_arbitrage_on_grid(fit, batch)


def test_bs_fit_matches_scipy_oracle_on_a_misspecified_slice(x64, synth):
    make, with_prices = synth
    batch = make(3, seed=3)
    # Merton prices: BS cannot fit them exactly, so the optimum is interior and non-trivial
    p = merton_price_black76(batch.forward, batch.strike, batch.tau, batch.discount, 0.15, 2.0,
                             -0.1, 0.1)
    batch = with_prices(batch, p)
    fit = cal.fit_bs(batch, dtype="float64")
    for i in range(3):
        m = batch.mask[i]
        f, k, t, df, c = (np.asarray(getattr(batch, n)[i][m]) for n in
                          ("forward", "strike", "tau", "discount", "price"))
        sse = lambda s: float(np.sum((np.asarray(black76_price(f, k, t, df, s)) - c) ** 2))
        ref = minimize_scalar(sse, bounds=(0.01, 3.0), method="bounded",
                              options={"xatol": 1e-10})
        assert abs(float(fit.sigma[i]) - ref.x) < 1e-6
        assert float(fit.sse[i]) <= ref.fun * (1 + 1e-9) + 1e-14


def test_bs_float32_default_dtype(synth):
    make, with_prices = synth
    batch = make(4, seed=5)
    p = black76_price(batch.forward, batch.strike, batch.tau, batch.discount, 0.3)
    fit = cal.fit_bs(with_prices(batch, p))
    assert fit.sigma.dtype == jnp.float32
    np.testing.assert_allclose(fit.sigma, 0.3, atol=2e-4)


MERTON_TRUE = dict(sigma=np.array([0.12, 0.2, 0.3, 0.15, 0.25, 0.1, 0.18, 0.4]),
                   lam=np.array([0.5, 1.0, 2.0, 3.0, 0.8, 1.5, 4.0, 0.3]),
                   mu_j=np.array([-0.2, -0.1, -0.05, -0.15, 0.1, -0.3, -0.08, -0.25]),
                   delta_j=np.array([0.15, 0.1, 0.2, 0.1, 0.15, 0.25, 0.05, 0.2]))


def test_merton_recovers_prices_and_beats_the_truth(x64, synth):
    make, with_prices = synth
    batch = make(8, n_quotes=(14, 20), seed=1, lo=0.8, hi=1.2, taus=(14, 56))
    truth = MertonFit(**{k: jnp.asarray(v) for k, v in MERTON_TRUE.items()},
                      sse=jnp.zeros(8), n_quotes=jnp.zeros(8, int))
    p = cal.slice_prices(truth, batch, dtype="float64")
    noise = 5e-5
    noisy = with_prices(batch, p, noise=noise)
    fit = cal.fit_merton(noisy, dtype="float64")
    # Least squares must do at least as well as the data-generating parameters
    sse_true = np.sum(np.where(batch.mask, (np.asarray(p) - noisy.price) ** 2, 0.0), axis=1)
    assert np.all(np.asarray(fit.sse) <= sse_true * 1.01 + 1e-10)
    # ... and reproduce the noiseless prices to the noise level (vol units: < 3 vol bp)
    assert _rms_iv_error(fit, truth, batch) < 3e-3
    # the total variance per year σ² + λ(μ_J² + δ_J²) is identifiable from one slice
    tv = lambda d: d["sigma"] ** 2 + d["lam"] * (d["mu_j"] ** 2 + d["delta_j"] ** 2)
    got = tv({k: np.asarray(getattr(fit, k)) for k in MERTON_TRUE})
    np.testing.assert_allclose(got, tv(MERTON_TRUE), rtol=0.1)
    # bounds of METHODS §5.4
    for name, (lo, hi) in cal.MERTON_BOUNDS.items():
        v = np.asarray(getattr(fit, name))
        assert np.all((v >= lo) & (v <= hi)), name
    assert_no_arbitrage_on_grid(fit, batch)


def _random_fit(draw_kind, u):
    """A fit of each kind with parameters at fractions u ∈ [0, 1] of the METHODS box."""
    bounds = {"bs": cal.BS_BOUNDS, "merton": cal.MERTON_BOUNDS, "heston": cal.HESTON_BOUNDS}
    cls = {"bs": BSFit, "merton": MertonFit, "heston": HestonFit}[draw_kind]
    b = bounds[draw_kind]
    kw = {n: jnp.asarray(lo + (hi - lo) * ui) for (n, (lo, hi)), ui in zip(b.items(), u)}
    return cls(**kw, sse=jnp.asarray(0.0), n_quotes=jnp.asarray(0))


@settings(max_examples=20, deadline=None)
@given(kind=st.sampled_from(["bs", "merton", "heston"]),
       u=st.lists(st.floats(0.02, 0.98), min_size=5, max_size=5),
       tau_days=st.integers(7, 70))
def test_model_prices_respect_no_arbitrage(kind, u, tau_days):
    # the extreme Heston corner (ξ ≈ 3, v0 ≈ 0) is inaccurate in any quadrature: keep the
    # vol of vol moderate relative to the variance level
    if kind == "heston":
        u = [u[0], u[1], min(u[2], 0.4), u[3], max(u[4], 0.01)]
    with jax.enable_x64(True):
        fit = _random_fit(kind, u)
        f, df, tau = 100.0, 0.99, tau_days / 365.0
        k = jnp.linspace(60.0, 160.0, 101)
        c = np.asarray(cal.model_price(fit, f, k, tau, df))
    k = np.asarray(k)
    tol = 1e-7 * f
    assert np.all(c >= df * np.maximum(f - k, 0.0) - tol)
    assert np.all(c <= df * f + tol)
    assert np.all(np.diff(c) <= tol)  # decreasing in K
    assert np.all(np.diff(c, 2) >= -tol)  # convex in K (uniform grid)


def test_model_delta_bs_analytic_and_merton_fd(x64):
    s, k, tau, r, q = jnp.linspace(80, 120, 9), 100.0, 30 / 365, 0.03, 0.01
    bs = BSFit(sigma=jnp.asarray(0.25), sse=jnp.asarray(0.0), n_quotes=jnp.asarray(0))
    np.testing.assert_allclose(cal.model_delta(bs, s, k, tau, r, q),
                               bs_delta(s, k, tau, r, 0.25, q), rtol=1e-12)
    # Merton with λ → 0 is BS: its finite-difference delta matches the analytic one
    mj = MertonFit(sigma=jnp.asarray(0.25), lam=jnp.asarray(1e-12), mu_j=jnp.asarray(-0.1),
                   delta_j=jnp.asarray(0.1), sse=jnp.asarray(0.0), n_quotes=jnp.asarray(0))
    np.testing.assert_allclose(cal.model_delta(mj, s, k, tau, r, q),
                               bs_delta(s, k, tau, r, 0.25, q), atol=3e-5)


def test_model_delta_vmaps_over_episodes_with_their_own_fits(x64):
    fits = MertonFit(sigma=jnp.array([0.2, 0.3]), lam=jnp.array([1.0, 0.5]),
                     mu_j=jnp.array([-0.1, -0.2]), delta_j=jnp.array([0.1, 0.2]),
                     sse=jnp.zeros(2), n_quotes=jnp.zeros(2, int))
    paths = jnp.array([[100.0, 101.0, 99.0], [50.0, 52.0, 51.0]])
    taus = jnp.array([[0.1, 0.09, 0.08], [0.1, 0.09, 0.08]])
    out = jax.jit(jax.vmap(lambda fit, s, t: cal.model_delta(fit, s, 100.0, t, 0.02, 0.0)))(
        fits, paths, taus)
    assert out.shape == (2, 3)
    one = cal.model_delta(jax.tree.map(lambda a: a[1], fits), paths[1], 100.0, taus[1], 0.02)
    np.testing.assert_allclose(out[1], one, rtol=1e-12)


def test_bad_input_is_one_line_value_error(synth):
    make, _ = synth
    batch = make(2)
    with pytest.raises(ValueError, match="dtype"):
        cal.fit_bs(batch, dtype="int32")
    with pytest.raises(ValueError, match="n_iter"):
        cal.fit_bs(batch, n_iter=0)
    with pytest.raises(ValueError, match="batch"):
        cal.fit_merton({"strike": 1})
    with pytest.raises(ValueError, match="batch.tau"):
        cal.fit_bs(batch.replace(tau=np.where(batch.mask, -1.0, 0.1)))
    with pytest.raises(ValueError, match="fit"):
        cal.model_price(object(), 1.0, 1.0, 0.1, 1.0)
    if not jax.config.read("jax_enable_x64"):
        with pytest.raises(ValueError, match="float64"):
            cal.fit_bs(batch, dtype="float64")
