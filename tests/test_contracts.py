"""ContractDistribution: the maturity range (dt per contract) and its reproducibility."""
import jax
import numpy as np
import pytest
from scipy import stats

from jaxhedge.contracts import ContractDistribution

BASE = dict(dt=0.01, sigma_lo=0.1, sigma_hi=0.5, s0_lo=0.8, s0_hi=1.2, strike_lo=0.9,
            strike_hi=1.1, cost_lo=0.0, cost_hi=0.01)


def test_fixed_dt_is_exact_and_the_other_draws_do_not_move():
    key = jax.random.key(7)
    fixed = ContractDistribution(**BASE).sample(key, 500)
    ranged = ContractDistribution(**BASE, dt_hi=0.05).sample(key, 500)
    assert np.all(np.asarray(fixed.dt) == np.float32(0.01))
    # dt has its own key: the five former draws are the same numbers with or without a range
    for name in ("mu", "sigma", "strike", "s0", "cost"):
        np.testing.assert_array_equal(getattr(fixed, name), getattr(ranged, name))


def test_dt_range_is_uniform():
    d = ContractDistribution(**BASE, dt_hi=0.05)
    dt = np.asarray(d.sample(jax.random.key(1), 4000).dt, np.float64)
    assert dt.min() >= 0.01 and dt.max() <= 0.05
    assert stats.kstest(dt, stats.uniform(0.01, 0.04).cdf).pvalue > 1e-3
    # centre: the mid spacing; T = n_steps * dt
    assert np.isclose(d.centre(n_steps=4).maturity, 4 * 0.03)
    assert np.isclose(ContractDistribution(**BASE).centre(n_steps=4).maturity, 4 * 0.01)


def test_dt_range_validation():
    ContractDistribution(**BASE, dt_hi=0.0).validate()
    ContractDistribution(**BASE, dt_hi=0.01).validate()
    with pytest.raises(ValueError, match="contracts.dt_hi"):
        ContractDistribution(**BASE, dt_hi=0.005).validate()


def test_sigma_log_draws_log_uniform_and_zero_keeps_the_former_draw():
    import jax.numpy as jnp

    key, n = jax.random.key(3), 20_000
    d = ContractDistribution(sigma_lo=0.05, sigma_hi=2.2)
    base = d.sample(key, n)
    # oracle for sigma_log = 0: the former draw, uniform from the second of five keys
    former = jax.random.uniform(jax.random.split(key, 5)[1], (n,), jnp.result_type(float),
                                0.05, 2.2)
    np.testing.assert_array_equal(np.asarray(base.sigma), np.asarray(former))
    logd = d.replace(sigma_log=1.0)
    out = logd.sample(key, n)
    sig = np.asarray(out.sigma)
    assert sig.min() >= 0.05 and sig.max() <= 2.2
    # log sigma uniform on [log 0.05, log 2.2]: Kolmogorov-Smirnov against that law
    lo, hi = np.log(0.05), np.log(2.2)
    assert stats.kstest(np.log(sig), stats.uniform(lo, hi - lo).cdf).pvalue > 1e-3
    assert abs(np.mean(sig < 0.2) - np.log(4) / np.log(44)) < 4 * np.sqrt(0.25 / n)
    for f in ("s0", "strike", "mu", "cost", "dt"):  # the other draws do not move
        np.testing.assert_array_equal(np.asarray(getattr(out, f)), np.asarray(getattr(base, f)))
    assert logd.centre(n_steps=4).sigma == pytest.approx(np.sqrt(0.05 * 2.2))
    assert d.centre(n_steps=4).sigma == pytest.approx(1.125)
    with pytest.raises(ValueError, match="sigma_log"):
        d.replace(sigma_log=0.5).validate()


def test_validation_grid_follows_log_sigma():
    from jaxhedge.agents.rlop import RLOP
    from jaxhedge.train.validation import validation_grid

    agent = RLOP(n_envs=4)
    hp = agent.default_hparams()
    hp = hp.replace(contracts=hp.contracts.replace(sigma_lo=0.05, sigma_hi=2.2, sigma_log=1.0))
    sig = np.unique(np.round(np.asarray(validation_grid(agent, hp, n_points=5).sigma), 6))
    want = np.exp(np.log(0.05) + np.log(44) * (np.arange(5) + 0.5) / 5)
    np.testing.assert_allclose(sig, want, rtol=1e-5)
