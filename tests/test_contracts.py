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
