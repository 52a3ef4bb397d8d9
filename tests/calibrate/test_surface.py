"""RL-surface fit, ``lm`` method (the quotes' own inputs, bounded LM): only (σ, μ) move;
known closed-form surfaces and a real agent plug in. The authors' protocol: test_surface_authors.py."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxhedge.calibrate.surface import agent_price_fn, fit_surface, surface_prices
from jaxhedge.pricing import bs_price


def bs_surface(sigma, mu, spot, strike, tau, rate):
    """Drift-independent closed form (μ is not identifiable, σ is)."""
    del mu
    return bs_price(spot, strike, tau, rate, sigma)


def skew_surface(sigma, mu, spot, strike, tau, rate):
    """BS at a strike-dependent vol σ·exp(μ·log(K/S)): both inputs identifiable."""
    return bs_price(spot, strike, tau, rate, sigma * jnp.exp(mu * jnp.log(strike / spot)))


def _prices(fn, batch, sigma, mu):
    s = batch.discount * batch.forward
    r = -np.log(batch.discount) / batch.tau
    return np.asarray(jax.vmap(fn)(jnp.asarray(sigma), jnp.asarray(mu), s, batch.strike,
                                   batch.tau, r))


def _weighted_loss(model, batch):
    w = batch.forward ** 2 / np.maximum(batch.price, 1.0)
    e = w * (model / batch.forward - batch.price / batch.forward) ** 2
    return np.sum(np.where(batch.mask, e, 0), 1) / batch.mask.sum(1)


def test_recovers_sigma_of_a_drift_free_bs_surface(x64, synth):
    make, with_prices = synth
    batch = make(6, seed=11)
    sigma = np.array([0.1, 0.2, 0.35, 0.6, 1.0, 2.0])
    batch = with_prices(batch, _prices(bs_surface, batch, sigma, np.zeros(6)))
    fit = fit_surface(bs_surface, batch, "lm", dtype="float64")
    np.testing.assert_allclose(fit.sigma, sigma, rtol=1e-6)
    assert np.all(np.asarray(fit.loss) < 1e-14)
    assert np.all(np.abs(np.asarray(fit.mu)) <= 1.0)  # stays in its box


def test_recovers_sigma_and_mu_of_a_skewed_surface_with_noise(x64, synth):
    make, with_prices = synth
    batch = make(6, seed=12, lo=0.8, hi=1.2)
    sigma = np.array([0.15, 0.2, 0.3, 0.25, 0.4, 0.5])
    mu = np.array([-0.8, -0.5, -0.2, 0.0, 0.3, -0.4])
    clean = _prices(skew_surface, batch, sigma, mu)
    noisy = with_prices(batch, clean, noise=2e-5)
    fit = fit_surface(skew_surface, noisy, "lm", dtype="float64")
    np.testing.assert_allclose(fit.sigma, sigma, rtol=5e-3)
    np.testing.assert_allclose(fit.mu, mu, atol=0.05)
    # the reported loss is METHODS' mean(w (Ĉ/F − C/F)²), w = F²/max(C, 1)
    model = np.asarray(surface_prices(skew_surface, fit, noisy, dtype="float64"))
    np.testing.assert_allclose(fit.loss, _weighted_loss(model, noisy), rtol=1e-8)
    # ... and is no worse than the data-generating inputs
    assert np.all(np.asarray(fit.loss) <= _weighted_loss(clean, noisy) * 1.001 + 1e-16)


def test_fit_surface_bad_input(synth):
    make, _ = synth
    batch = make(2)
    with pytest.raises(ValueError, match="price_fn"):
        fit_surface(3.0, batch)
    with pytest.raises(ValueError, match="sigma_bounds"):
        fit_surface(bs_surface, batch, "lm", sigma_bounds=(0.5, 0.1))
    with pytest.raises(ValueError, match="method"):
        fit_surface(bs_surface, batch, "adam")
    with pytest.raises(ValueError, match="anchor_tau"):
        fit_surface(bs_surface, batch, anchor_tau=-1.0)
    with pytest.raises(ValueError, match="lr"):
        fit_surface(bs_surface, batch, lr=0.0)
    with pytest.raises(ValueError, match="agent"):
        agent_price_fn(object(), None)


def test_trained_agent_surface_plugs_in(synth):
    from jaxhedge.train.jobs import load_job

    agent, hp = load_job("rlop", "smoke").build()
    state = agent.init(jax.random.PRNGKey(0), hp)
    fn = agent_price_fn(agent, state)
    make, with_prices = synth
    batch = make(3, seed=13)
    batch = with_prices(batch, _prices(bs_surface, batch, np.array([0.2, 0.3, 0.5]),
                                       np.zeros(3)))
    fit = fit_surface(fn, batch, "lm", n_iter=15)
    model = np.asarray(surface_prices(fn, fit, batch))
    assert np.isfinite(model[batch.mask]).all()
    # price head = BS at a latent vol: fitted prices respect the no-arbitrage bounds
    lower = batch.discount * np.maximum(batch.forward - batch.strike, 0)
    m = batch.mask
    assert np.all(model[m] >= lower[m] - 1e-3 * batch.forward[m])
    assert np.all(model[m] <= (batch.discount * batch.forward)[m] * (1 + 1e-6))
    # the fit is no worse than the agent's surface at the starting inputs (σ, μ) = (0.5, 0)
    start = _prices(fn, batch, np.full(3, 0.5), np.zeros(3))
    assert np.all(np.asarray(fit.loss) <= _weighted_loss(start, batch) * (1 + 1e-5) + 1e-9)
