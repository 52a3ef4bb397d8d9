"""GBM: the moments the exact log step promises, each checked within 4 standard errors."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxhedge.markets import gbm
from jaxhedge.markets.gbm import GBMParams

N_PATHS, N_STEPS, T = 40_000, 20, 1.0
DT = T / N_STEPS
PARAMS = GBMParams(s0=1.0, mu=0.1, sigma=0.3)
sim = jax.jit(gbm.simulate, static_argnums=(2, 3))


@pytest.fixture(scope="module")
def paths():
    out = sim(jax.random.key(42), PARAMS, N_PATHS, N_STEPS, DT)
    return np.asarray(out.spot, dtype=np.float64), out


def var_se(x):
    """Sample variance and its standard error sqrt((m4 - s^4)/n)."""
    d = x - x.mean()
    s2 = d.var(ddof=1)
    return s2, np.sqrt((np.mean(d**4) - s2**2) / x.size)


def test_mean_terminal_spot(paths):
    s = paths[0]
    st = s[:, -1]
    target = PARAMS.s0 * np.exp(PARAMS.mu * T)
    se = st.std(ddof=1) / np.sqrt(st.size)
    assert abs(st.mean() - target) < 4 * se, (st.mean(), target, se)


def test_log_variance_and_mean(paths):
    logst = np.log(paths[0][:, -1])
    v, se = var_se(logst)
    assert abs(v - PARAMS.sigma**2 * T) < 4 * se, (v, se)
    m_target = np.log(PARAMS.s0) + (PARAMS.mu - 0.5 * PARAMS.sigma**2) * T
    assert abs(logst.mean() - m_target) < 4 * np.sqrt(v / logst.size)


def test_increments_uncorrelated(paths):
    r = np.diff(np.log(paths[0]), axis=1)
    r = r - r.mean()
    x, y = r[:, :-1].ravel(), r[:, 1:].ravel()
    rho = np.sum(x * y) / np.sqrt(np.sum(x * x) * np.sum(y * y))
    assert abs(rho) < 4 / np.sqrt(x.size), rho
    # per-step variance is sigma^2 dt at every step (no drift in the noise level)
    v_t = r.var(axis=0, ddof=1)
    se = PARAMS.sigma**2 * DT * np.sqrt(2 / (N_PATHS - 1))
    assert np.all(np.abs(v_t - PARAMS.sigma**2 * DT) < 4.5 * se)


def test_vol_and_cost_fields(paths):
    out = paths[1]
    np.testing.assert_allclose(np.asarray(out.vol), PARAMS.sigma, rtol=1e-7)
    np.testing.assert_array_equal(np.asarray(out.cost_multiplier), 1.0)


def test_validate_rejects_bad_sigma_and_s0():
    with pytest.raises(ValueError, match=r"gbm\.sigma: must be > 0"):
        gbm.validate(GBMParams(sigma=-0.1))
    with pytest.raises(ValueError, match=r"gbm\.s0"):
        gbm.validate(GBMParams(s0=0.0))
    with pytest.raises(ValueError, match=r"gbm\.mu"):
        gbm.validate(GBMParams(mu=float("nan")))
    # batched params: first offending value reported
    with pytest.raises(ValueError, match=r"got -0\.5"):
        gbm.validate(GBMParams(sigma=jnp.asarray([0.2, -0.5])))
    gbm.validate(GBMParams())
