"""Bounded Levenberg–Marquardt: box transform, known-parameter recovery, scipy oracle."""
import jax
import jax.numpy as jnp
import numpy as np
from scipy.optimize import least_squares

from jaxhedge.calibrate.least_squares import from_box, solve_box, to_box


def test_box_transform_roundtrip_and_range(x64):
    lo, hi = jnp.array([-0.999, 1e-4]), jnp.array([0.0, 3.0])
    x = jnp.array([[-0.5, 0.2], [-0.9, 2.5]])
    np.testing.assert_allclose(to_box(from_box(x, lo, hi), lo, hi), x, rtol=1e-12)
    z = jnp.linspace(-50, 50, 11)[:, None] * jnp.ones(2)
    y = to_box(z, lo, hi)
    assert bool(jnp.all((y > lo) & (y < hi)))


def _model(x, t):
    return x[0] * jnp.exp(-x[1] * t) + x[2]


def test_recovers_parameters_of_exponential_decay_in_one_vmapped_call(x64):
    t = jnp.linspace(0, 4, 30)
    truth = jnp.array([[2.0, 1.3, 0.5], [0.7, 0.2, -0.3], [5.0, 3.0, 1.0]])
    lo, hi = jnp.array([0.0, 0.01, -2.0]), jnp.array([10.0, 5.0, 2.0])
    starts = jnp.array([[1.0, 1.0, 0.0], [3.0, 0.1, 0.0]])

    def fit(y):
        return solve_box(lambda x: _model(x, t) - y, starts, lo, hi, 60)

    ys = jax.vmap(lambda x: _model(x, t))(truth)
    res = jax.jit(jax.vmap(fit))(ys)
    np.testing.assert_allclose(res.x, truth, rtol=1e-6, atol=1e-8)
    assert bool(jnp.all(res.loss < 1e-16))


def test_matches_scipy_least_squares_with_noise_and_active_bound(x64):
    rng = np.random.default_rng(0)
    t = np.linspace(0, 4, 40)
    y = np.asarray(_model(jnp.array([2.0, 1.3, 0.5]), t)) + 0.05 * rng.standard_normal(40)
    # the upper bound on the offset (0.3) binds
    lo, hi = np.array([0.0, 0.01, -2.0]), np.array([10.0, 5.0, 0.3])
    res = solve_box(lambda x: _model(x, t) - y, jnp.array([[1.0, 1.0, 0.0]]), lo, hi, 100)
    ref = least_squares(lambda x: np.asarray(_model(jnp.asarray(x), t)) - y, [1.0, 1.0, 0.0],
                        bounds=(lo, hi), xtol=1e-14, ftol=1e-14, gtol=1e-14)
    # scipy's cost is ½ SSE; the sigmoid reaches a bound to ~1e-5 of the box width only
    assert float(res.loss) <= 2 * ref.cost * (1 + 1e-3)
    np.testing.assert_allclose(res.x[:2], ref.x[:2], rtol=1e-4)
    assert abs(float(res.x[2]) - 0.3) < 1e-4  # sits on the bound like the oracle


def test_masked_residuals_are_ignored(x64):
    t = jnp.linspace(0, 4, 20)
    y = _model(jnp.array([2.0, 1.3, 0.5]), t)
    mask = jnp.arange(20) < 12
    y_bad = jnp.where(mask, y, 1e6)  # garbage in the padded slots
    res = solve_box(lambda x: jnp.where(mask, _model(x, t) - y_bad, 0.0),
                    jnp.array([[1.0, 1.0, 0.0]]), jnp.array([0.0, 0.01, -2.0]),
                    jnp.array([10.0, 5.0, 2.0]), 60)
    np.testing.assert_allclose(res.x, [2.0, 1.3, 0.5], rtol=1e-6)
