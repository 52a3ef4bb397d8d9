"""Merton jump-diffusion: compensated drift, jump counts and sizes, log-variance."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxhedge.markets import merton
from jaxhedge.markets.merton import MertonParams

N_PATHS, N_STEPS, T = 40_000, 20, 1.0
DT = T / N_STEPS
PARAMS = MertonParams(s0=1.0, mu=0.05, sigma=0.2, jump_intensity=3.0, jump_mean=-0.1, jump_std=0.15)
sim = jax.jit(merton.simulate_with_jumps, static_argnums=(2, 3))


@pytest.fixture(scope="module")
def result():
    paths, counts, jumps = sim(jax.random.key(11), PARAMS, N_PATHS, N_STEPS, DT)
    return np.asarray(paths.spot, np.float64), np.asarray(counts), np.asarray(jumps, np.float64), paths


def test_mean_terminal_spot(result):
    st = result[0][:, -1]
    se = st.std(ddof=1) / np.sqrt(st.size)
    assert abs(st.mean() - PARAMS.s0 * np.exp(PARAMS.mu * T)) < 4 * se


def test_jump_counts(result):
    counts = result[1]
    assert counts.shape == (N_PATHS, N_STEPS) and counts.dtype == np.int32
    per_path = counts.sum(axis=1)
    lam_t = PARAMS.jump_intensity * T
    se = np.sqrt(lam_t / N_PATHS)  # Poisson: var = mean
    assert abs(per_path.mean() - lam_t) < 4 * se
    # Poisson dispersion: variance of counts equals the mean
    v = per_path.var(ddof=1)
    assert abs(v - lam_t) < 4 * np.sqrt((lam_t + 2 * lam_t**2) / N_PATHS)


def test_jump_sizes(result):
    counts, jumps = result[1], result[2]
    assert np.all(jumps[counts == 0] == 0.0)
    single = jumps[counts == 1]
    m = single.size
    assert m > 1000
    se_mean = single.std(ddof=1) / np.sqrt(m)
    assert abs(single.mean() - PARAMS.jump_mean) < 4 * se_mean
    se_std = PARAMS.jump_std / np.sqrt(2 * (m - 1))
    assert abs(single.std(ddof=1) - PARAMS.jump_std) < 4 * se_std
    # multi-jump steps: sum of n jumps has mean n mu_J
    double = jumps[counts == 2]
    assert abs(double.mean() - 2 * PARAMS.jump_mean) < 4 * double.std(ddof=1) / np.sqrt(double.size)


def test_log_variance(result):
    logst = np.log(result[0][:, -1])
    d = logst - logst.mean()
    v = d.var(ddof=1)
    se = np.sqrt((np.mean(d**4) - v**2) / d.size)
    p = PARAMS
    target = p.sigma**2 * T + p.jump_intensity * T * (p.jump_mean**2 + p.jump_std**2)
    assert abs(v - target) < 4 * se, (v, target, se)


def test_log_returns_decompose(result):
    """Each step's log return = diffusion + the reported jump sum (jumps are in the path)."""
    s, _, jumps, _ = result
    p = PARAMS
    k = np.expm1(p.jump_mean + 0.5 * p.jump_std**2)
    diff = np.diff(np.log(s), axis=1) - jumps - (p.mu - p.jump_intensity * k - 0.5 * p.sigma**2) * DT
    z = diff / (p.sigma * np.sqrt(DT))
    assert abs(z.mean()) < 4 / np.sqrt(z.size)
    assert abs(z.var() - 1) < 4 * np.sqrt(2 / z.size)


def test_zero_intensity_has_no_jumps():
    paths, counts, jumps = sim(jax.random.key(0), PARAMS.replace(jump_intensity=0.0), N_PATHS, N_STEPS, DT)
    assert int(counts.sum()) == 0 and float(jnp.abs(jumps).sum()) == 0.0
    assert bool(jnp.all(paths.vol == jnp.float32(PARAMS.sigma)))


def test_validate():
    merton.validate(PARAMS)
    for bad, field in [
        (PARAMS.replace(jump_intensity=-1.0), "merton.jump_intensity"),
        (PARAMS.replace(jump_std=-0.1), "merton.jump_std"),
        (PARAMS.replace(sigma=0.0), "merton.sigma"),
        (PARAMS.replace(s0=-2.0), "merton.s0"),
    ]:
        with pytest.raises(ValueError, match=field.replace(".", r"\.")):
            merton.validate(bad)
