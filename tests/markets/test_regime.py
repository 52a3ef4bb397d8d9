"""Regime-switching chain: transition frequencies, stationary law, per-state vol, costs, validation."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxhedge.markets import regime
from jaxhedge.markets.regime import RegimeParams, stationary_distribution, two_state

sim = jax.jit(regime.simulate_with_states, static_argnums=(2, 3))

P3 = np.array([[0.90, 0.08, 0.02], [0.20, 0.70, 0.10], [0.30, 0.20, 0.50]])
THREE = RegimeParams(
    s0=1.0,
    mu=0.05,
    sigmas=jnp.asarray([0.1, 0.25, 0.6]),
    cost_multipliers=jnp.asarray([1.0, 2.0, 5.0]),
    jump_intensities=jnp.asarray([0.0, 1.0, 6.0]),
    jump_mean=-0.08,
    jump_std=0.1,
    transition=jnp.asarray(P3),
    initial_state=0,
)
N_PATHS, N_STEPS, DT = 2_000, 400, 1 / 252


@pytest.fixture(scope="module")
def three():
    paths, states = sim(jax.random.key(1), THREE, N_PATHS, N_STEPS, DT)
    return paths, np.asarray(states)


def test_transition_frequencies(three):
    _, st = three
    a, b = st[:, :-1].ravel(), st[:, 1:].ravel()
    for i in range(3):
        n_i = np.sum(a == i)
        for j in range(3):
            freq = np.sum((a == i) & (b == j)) / n_i
            se = np.sqrt(P3[i, j] * (1 - P3[i, j]) / n_i)
            assert abs(freq - P3[i, j]) < 4 * se, (i, j, freq, P3[i, j], se)


def test_time_in_state_is_stationary(three):
    _, st = three
    pi = stationary_distribution(P3)
    burn = 50
    for k in range(3):
        per_path = np.mean(st[:, burn:] == k, axis=1)  # paths are independent
        se = per_path.std(ddof=1) / np.sqrt(per_path.size)
        assert abs(per_path.mean() - pi[k]) < 4 * se, (k, per_path.mean(), pi[k], se)


def test_initial_state_and_fields_follow_state(three):
    paths, st = three
    assert np.all(st[:, 0] == 0) and st.shape == (N_PATHS, N_STEPS + 1)
    np.testing.assert_array_equal(np.asarray(paths.vol), np.asarray(THREE.sigmas)[st].astype(np.float32))
    np.testing.assert_array_equal(
        np.asarray(paths.cost_multiplier), np.asarray(THREE.cost_multipliers)[st].astype(np.float32)
    )


def test_mean_terminal_spot_compensated(three):
    st_ = np.asarray(three[0].spot[:, -1], np.float64)
    se = st_.std(ddof=1) / np.sqrt(st_.size)
    assert abs(st_.mean() - np.exp(THREE.mu * N_STEPS * DT)) < 4 * se


def test_realized_vol_per_state():
    """Without jumps, returns over (t, t+1] with state s_t have variance sigma_{s_t}^2 dt."""
    p = two_state(calm_sigma=0.15, stress_sigma=0.6, p_calm_to_stress=0.05, p_stress_to_calm=0.1,
                  stress_cost_multiplier=4.0, stress_jump_intensity=0.0)
    paths, st = sim(jax.random.key(2), p, N_PATHS, N_STEPS, DT)
    st = np.asarray(st)
    r = np.diff(np.log(np.asarray(paths.spot, np.float64)), axis=1)
    for k, sig in enumerate([0.15, 0.6]):
        x = r[st[:, :-1] == k]
        v = x.var(ddof=1) / DT
        se = sig**2 * np.sqrt(2 / (x.size - 1))
        assert abs(v - sig**2) < 4 * se, (k, np.sqrt(v), sig)
    cm = np.asarray(paths.cost_multiplier)
    assert np.all(cm[st == 1] == 4.0) and np.all(cm[st == 0] == 1.0)


def test_stress_jumps_only_in_stress():
    p = two_state(calm_sigma=0.1, stress_sigma=0.1, p_calm_to_stress=0.05, p_stress_to_calm=0.05,
                  stress_jump_intensity=50.0, jump_mean=-0.2, jump_std=0.01)
    paths, st = sim(jax.random.key(3), p, N_PATHS, N_STEPS, DT)
    st = np.asarray(st)
    r = np.diff(np.log(np.asarray(paths.spot, np.float64)), axis=1)
    calm, stress = r[st[:, :-1] == 0], r[st[:, :-1] == 1]
    # a jump of -0.2 is > 30 calm standard deviations: none in calm, many in stress
    assert np.sum(calm < -0.12) == 0
    frac = np.mean(stress < -0.12)
    lam_dt = 50.0 * DT
    assert abs(frac - (1 - np.exp(-lam_dt))) < 4 * np.sqrt(lam_dt / stress.size)


def test_absorbing_and_zero_probability_states():
    p = THREE.replace(transition=jnp.asarray([[1.0, 0.0, 0.0], [0.5, 0.0, 0.5], [0.0, 0.0, 1.0]]), initial_state=1)
    _, st = sim(jax.random.key(4), p, N_PATHS, N_STEPS, DT)
    st = np.asarray(st)
    assert np.all(st[:, 1] != 1) and np.all(st[:, 1:] == st[:, [1]])
    assert 0.4 < np.mean(st[:, 1] == 0) < 0.6


def test_vmap_over_chains():
    ps = [two_state(p_calm_to_stress=q) for q in (0.0, 0.5)]
    stacked = jax.tree.map(lambda *x: jnp.stack([jnp.asarray(v) for v in x]), *ps)
    f = jax.jit(jax.vmap(regime.simulate_with_states, in_axes=(0, 0, None, None, None)), static_argnums=(2, 3))
    _, st = f(jax.random.split(jax.random.key(0), 2), stacked, 200, 50, DT)
    st = np.asarray(st)
    assert np.all(st[0] == 0)  # never leaves calm
    assert np.mean(st[1, :, 1] == 1) > 0.4


def test_two_state_defaults_match_class_defaults():
    a, b = two_state(), RegimeParams()
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert b.n_states == 2


def test_validate_messages():
    regime.validate(THREE)
    regime.validate(two_state())
    with pytest.raises(ValueError, match=r"regime\.transition: rows must sum to 1 \(got 0\.9 in row 0\)"):
        regime.validate(THREE.replace(transition=jnp.asarray([[0.8, 0.08, 0.02], [0.2, 0.7, 0.1], [0.3, 0.2, 0.5]])))
    with pytest.raises(ValueError, match=r"regime\.transition: must be entries in \[0, 1\]"):
        regime.validate(THREE.replace(transition=jnp.asarray([[1.1, -0.1, 0.0], [0.2, 0.7, 0.1], [0.3, 0.2, 0.5]])))
    with pytest.raises(ValueError, match=r"regime\.sigmas: must be > 0 \(got -0\.25\)"):
        regime.validate(THREE.replace(sigmas=jnp.asarray([0.1, -0.25, 0.6])))
    with pytest.raises(ValueError, match=r"regime\.transition: must have shape \(3, 3\)"):
        regime.validate(THREE.replace(transition=jnp.eye(2)))
    with pytest.raises(ValueError, match=r"regime\.cost_multipliers: must have shape"):
        regime.validate(THREE.replace(cost_multipliers=jnp.ones(2)))
    with pytest.raises(ValueError, match=r"regime\.jump_intensities"):
        regime.validate(THREE.replace(jump_intensities=jnp.asarray([0.0, -1.0, 0.0])))
    with pytest.raises(ValueError, match=r"regime\.initial_state"):
        regime.validate(THREE.replace(initial_state=3))
    for msg_check in ["regime.sigmas"]:
        try:
            regime.validate(THREE.replace(sigmas=jnp.asarray([0.1, -0.25, 0.6])))
        except ValueError as e:
            assert "\n" not in str(e) and msg_check in str(e)
