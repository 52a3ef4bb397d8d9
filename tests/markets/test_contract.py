"""Contract tests shared by every simulator: shapes, dtype, determinism, jit, vmap."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxhedge.markets import MARKETS, HistoricalParams, MarketPaths, simulate_block_bootstrap, validate


def _hist_params():
    r = np.random.default_rng(0).normal(0.0, 0.01, 60)
    return HistoricalParams(log_returns=jnp.asarray(r, dtype=float), s0=1.0, mean_block_length=5.0)


CASES = {name: (lambda P=s.params_cls: P(), s.simulate) for name, s in MARKETS.items()}
CASES["historical"] = (_hist_params, simulate_block_bootstrap)
NAMES = sorted(CASES)
NP, NS, DT = 8, 10, 1 / 52  # one shape everywhere so each market compiles once per mode
JIT = {name: jax.jit(sim, static_argnums=(2, 3)) for name, (_, sim) in CASES.items()}


def test_registry_names():
    assert set(MARKETS) == {"gbm", "heston", "merton", "regime"}


@pytest.mark.parametrize("name", NAMES)
def test_shapes_start_and_float32_default(name):
    make, sim = CASES[name]
    params = validate(make())
    out = JIT[name](jax.random.key(0), params, NP, NS, DT)
    assert isinstance(out, MarketPaths)
    for field in (out.spot, out.vol, out.cost_multiplier):
        assert field.shape == (NP, NS + 1)
        assert field.dtype == jnp.float32
        assert bool(jnp.all(jnp.isfinite(field)))
    np.testing.assert_allclose(np.asarray(out.spot[:, 0]), float(params.s0), rtol=1e-6)
    assert bool(jnp.all(out.spot > 0)) and bool(jnp.all(out.vol >= 0))


@pytest.mark.parametrize("name", NAMES)
def test_float64_under_x64(name, x64):
    make, sim = CASES[name]
    params = make()
    out = JIT[name](jax.random.key(0), params, NP, NS, DT)
    for field in (out.spot, out.vol, out.cost_multiplier):
        assert field.dtype == jnp.float64
    assert float(out.spot[0, 0]) == float(params.s0)


@pytest.mark.parametrize("name", NAMES)
def test_same_key_same_paths_different_key_different(name):
    make, sim = CASES[name]
    f = JIT[name]
    params = make()
    a = f(jax.random.key(3), params, NP, NS, DT)
    b = f(jax.random.key(3), params, NP, NS, DT)
    c = f(jax.random.key(4), params, NP, NS, DT)
    np.testing.assert_array_equal(np.asarray(a.spot), np.asarray(b.spot))
    np.testing.assert_array_equal(np.asarray(a.vol), np.asarray(b.vol))
    assert not np.allclose(np.asarray(a.spot[:, 1:]), np.asarray(c.spot[:, 1:]))


# GBM in the quick run; the others compile a batched simulator each (seconds apiece on a
# loaded 2-core box), so they run with the slow set (regime has its own quick vmap test).
VMAP_CASES = [n if n == "gbm" else pytest.param(n, marks=pytest.mark.slow) for n in NAMES]


@pytest.mark.parametrize("name", VMAP_CASES)
def test_vmap_over_params_matches_separate_calls(name):
    make, sim = CASES[name]
    base = make()
    scales = [0.5, 1.0, 2.0]
    batch = [base.replace(s0=base.s0 * s) for s in scales]
    if hasattr(base, "mu"):
        batch = [p.replace(mu=0.03 * i) for i, p in enumerate(batch)]
    keys = jax.random.split(jax.random.key(7), len(batch))
    stacked = jax.tree.map(lambda *xs: jnp.stack([jnp.asarray(x) for x in xs]), *batch)
    out = jax.jit(jax.vmap(sim, in_axes=(0, 0, None, None, None)), static_argnums=(2, 3))(
        keys, stacked, NP, NS, DT
    )
    assert out.spot.shape == (3, NP, NS + 1)
    for i, p in enumerate(batch):
        one = JIT[name](keys[i], p, NP, NS, DT)
        np.testing.assert_allclose(np.asarray(out.spot[i]), np.asarray(one.spot), rtol=2e-5, atol=1e-6)
        np.testing.assert_allclose(np.asarray(out.vol[i]), np.asarray(one.vol), rtol=2e-5, atol=1e-6)
        np.testing.assert_allclose(np.asarray(out.cost_multiplier[i]), np.asarray(one.cost_multiplier), rtol=2e-5, atol=1e-6)


def test_validate_unknown_type():
    with pytest.raises(TypeError):
        validate(object())
