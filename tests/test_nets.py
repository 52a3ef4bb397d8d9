"""jaxhedge.nets: shapes, residual structure, policy bounds, split/apply, retracing, features."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxhedge import nets
from jaxhedge.env import Observation

F = nets.N_FEATURES


def make_obs(spot=1.0, strike=1.0, tau=0.1, elapsed=0.0, rate=0.0, q=0.0, mu=0.0, vol=0.2,
             cost=0.0, position=0.0):
    a = lambda x: jnp.asarray(x, jnp.result_type(float))
    return Observation(spot=a(spot), strike=a(strike), time_to_maturity=a(tau),
                       elapsed=a(elapsed), rate=a(rate), div_yield=a(q), drift=a(mu),
                       vol=a(vol), cost=a(cost), cost_multiplier=a(1.0), position=a(position))


@pytest.mark.parametrize("batch", [(), (5,), (2, 3)])
def test_shapes(batch):
    x = jnp.ones((*batch, F))
    res = nets.ResidualMLP(F, 3, width=16, rngs=nnx.Rngs(0))
    mlp = nets.MLP(F, 2, widths=(8, 8), rngs=nnx.Rngs(1))
    head = nets.GaussianVolHead(F, width=16, rngs=nnx.Rngs(2))
    assert res(x).shape == (*batch, 3)
    assert mlp(x).shape == (*batch, 2)
    mu, sigma = head(x)
    assert mu.shape == batch and sigma.shape == batch
    assert len(res.blocks) == 3 and all(len(b) == 3 for b in res.blocks)


def test_residual_block_is_identity_with_zero_weights():
    net = nets.ResidualMLP(F, 2, width=16, n_blocks=3, layers_per_block=3, rngs=nnx.Rngs(0))
    h = jax.random.normal(jax.random.key(1), (7, 16))
    assert float(jnp.max(jnp.abs(net.block(1, h)))) > 1e-3  # a live block is not the identity
    for block in net.blocks:
        for layer in block:
            layer.kernel[...] = jnp.zeros_like(layer.kernel[...])
            layer.bias[...] = jnp.zeros_like(layer.bias[...])
    for i in range(3):
        np.testing.assert_array_equal(h + net.block(i, h), h)
    # the whole net reduces to head(act(lift(x)))
    x = jax.random.normal(jax.random.key(2), (7, F))
    np.testing.assert_allclose(net(x), net.head(nnx.elu(net.lift(x))), rtol=1e-6, atol=1e-6)


def test_gaussian_vol_head_bounds():
    head = nets.GaussianVolHead(F, width=16, vol_min=0.01, vol_max=2.0, rngs=nnx.Rngs(0))
    # scales from tiny to huge saturate the sigmoids at both ends
    scales = jnp.array([1e-3, 1.0, 1e3, 1e6])[:, None, None]
    x = jax.random.normal(jax.random.key(3), (4, 256, F)) * scales
    mu, sigma = head(x)
    assert bool(jnp.all(jnp.isfinite(mu))) and bool(jnp.all(jnp.isfinite(sigma)))
    lo, hi = np.float32(0.01), np.float32(0.91)  # the bounds as float32 rounds them
    assert float(sigma.min()) >= lo and float(sigma.max()) <= hi
    assert float(mu.min()) >= lo and float(mu.max()) <= np.float32(2.0)
    # the bounds are reached in saturation (not just never-tested interior values)
    assert float(sigma.max() - sigma.min()) > 0.5 and float(mu.max() - mu.min()) > 1.0
    with pytest.raises(ValueError, match="vol_min"):
        nets.GaussianVolHead(F, vol_min=0.0, rngs=nnx.Rngs(0))


def test_anchored_vol_head_is_a_bounded_ratio_to_the_input_vol():
    head = nets.GaussianVolHead(F, width=16, vol_min=0.01, vol_max=3.0, anchor_ratio=4.0,
                                rngs=nnx.Rngs(0))
    scales = jnp.array([1e-3, 1.0, 1e3])[:, None, None]
    x = jax.random.normal(jax.random.key(3), (3, 256, F)) * scales
    anchor = jax.random.uniform(jax.random.key(4), (3, 256), minval=0.05, maxval=2.2)
    mu, _ = head(x, anchor=anchor)
    # oracle: the trunk's first output through the stated map, in numpy
    z = np.asarray(head.trunk(x)[..., 0], np.float64)
    want = np.clip(np.asarray(anchor, np.float64) * 4.0 ** np.tanh(z), 0.01, 3.0)
    np.testing.assert_allclose(np.asarray(mu), want, rtol=2e-6)
    ratio = np.asarray(mu) / np.asarray(anchor)
    inside = (want > 0.01) & (want < 3.0)
    assert ratio[inside].min() >= 0.25 * (1 - 1e-6) and ratio[inside].max() <= 4.0 * (1 + 1e-6)
    assert ratio[inside].max() / ratio[inside].min() > 4.0  # saturation reached both ways
    # start_at_anchor: the input vol itself (Black-Scholes) for any input; the std untouched
    _, std = head(x, anchor=anchor)
    head.start_at_anchor()
    mu0, std0 = head(x, anchor=anchor)
    np.testing.assert_allclose(mu0, anchor, rtol=1e-6)
    np.testing.assert_array_equal(std0, std)
    with pytest.raises(ValueError, match="not anchored"):
        nets.GaussianVolHead(F, rngs=nnx.Rngs(0)).start_at_anchor()
    with pytest.raises(ValueError, match="needs anchor"):
        head(x)
    for bad in (1.0, 0.5, -2.0, float("inf")):
        with pytest.raises(ValueError, match="anchor_ratio"):
            nets.GaussianVolHead(F, anchor_ratio=bad, rngs=nnx.Rngs(0))


@pytest.mark.parametrize("kind", ["residual", "mlp", "vol"])
def test_split_apply_round_trip(kind):
    rngs = nnx.Rngs(0)
    module = {"residual": lambda: nets.ResidualMLP(F, 2, width=16, rngs=rngs),
              "mlp": lambda: nets.MLP(F, 1, rngs=rngs),
              "vol": lambda: nets.GaussianVolHead(F, width=16, rngs=rngs)}[kind]()
    x = jax.random.normal(jax.random.key(4), (11, F))
    graphdef, params = nets.split(module)
    assert all(isinstance(leaf, jax.Array) for leaf in jax.tree.leaves(params))
    expected, got = module(x), jax.jit(nets.apply, static_argnums=0)(graphdef, params, x)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
                 expected, got)


def test_split_rejects_non_param_state():
    class WithStats(nnx.Module):
        def __init__(self):
            self.stat = nnx.BatchStat(jnp.zeros(3))

    with pytest.raises(ValueError, match="non-Param"):
        nets.split(WithStats())


def test_jit_does_not_retrace_on_new_params():
    graphdef, params = nets.split(nets.MLP(F, 1, rngs=nnx.Rngs(0)))
    traces = []

    @jax.jit
    def f(params, x):
        traces.append(1)
        return nets.apply(graphdef, params, x)

    x = jnp.ones((3, F))
    y0 = f(params, x)
    params2 = jax.tree.map(lambda p: p + 0.5, params)
    y1 = f(params2, x)
    f(params2, x + 1.0)
    assert len(traces) == 1
    assert not np.allclose(y0, y1)


def test_feature_values_and_order():
    obs = make_obs(spot=110.0, strike=100.0, tau=0.25, elapsed=0.05, rate=0.03, q=0.01,
                   mu=0.07, vol=0.2, cost=0.004, position=0.6)
    f = nets.observation_features(obs)
    assert f.shape == (F,) and len(nets.FEATURE_NAMES) == F
    lm = np.log(1.1)
    expected = [lm, (lm + 0.02 * 0.25) / (0.2 * 0.5), 0.25, 0.05, 0.03, 0.07, 0.2, 0.004, 0.6]
    np.testing.assert_allclose(f, expected, rtol=1e-5)
    # batched observations -> (..., F)
    batched = jax.tree.map(lambda a: jnp.broadcast_to(a, (4, 2)), obs)
    assert nets.observation_features(batched).shape == (4, 2, F)


def test_features_finite_and_bounded_for_extreme_inputs():
    cases = [dict(spot=1e3, strike=1.0, tau=1e-6, vol=1e-3),
             dict(spot=1e-3, strike=1.0, tau=1e-6, vol=1e-3),
             dict(spot=1.0 + 1e-4, strike=1.0, tau=1e-6, vol=1e-3),
             dict(spot=1.0, strike=1.0, tau=0.0, vol=0.0),
             dict(spot=2.0, strike=1.0, tau=0.0, vol=0.2),
             dict(spot=0.0, strike=1.0, tau=0.1, vol=0.2)]
    for case in cases:
        f = nets.observation_features(make_obs(**case))
        assert bool(jnp.all(jnp.isfinite(f))), (case, f)
        assert float(jnp.max(jnp.abs(f[:2]))) <= 10.0, (case, f)
    # far from the money with a tiny sigma sqrt(tau) the moneyness is clipped, not exploded
    assert float(nets.observation_features(make_obs(spot=1e3, tau=1e-6, vol=1e-3))[1]) == 10.0
    assert float(nets.observation_features(make_obs(spot=1.0, tau=0.0, vol=0.0))[1]) == 0.0

    # gradients (w.r.t. everything an agent may differentiate) stay finite too
    def total(spot, vol, tau, position):
        return jnp.sum(nets.observation_features(
            make_obs(spot=spot, vol=vol, tau=tau, position=position)))

    for spot, vol, tau in [(1e3, 1e-3, 1e-6), (1.0, 0.0, 0.0), (1.0 + 1e-4, 1e-3, 1e-6)]:
        g = jax.grad(total, argnums=(0, 1, 2, 3))(spot, vol, tau, 0.3)
        assert all(np.isfinite(float(x)) for x in g), (spot, vol, tau, g)


def test_float64(x64):
    assert jnp.result_type(float) == jnp.float64
    net = nets.ResidualMLP(F, 2, width=8, n_blocks=2, rngs=nnx.Rngs(0))
    graphdef, params = nets.split(net)
    assert all(leaf.dtype == jnp.float64 for leaf in jax.tree.leaves(params))
    obs = make_obs(spot=1e3, tau=1e-6, vol=1e-3)
    f = nets.observation_features(obs)
    assert f.dtype == jnp.float64 and bool(jnp.all(jnp.isfinite(f)))
    y = nets.apply(graphdef, params, f)
    assert y.dtype == jnp.float64
    mu, sigma = nets.GaussianVolHead(F, width=8, rngs=nnx.Rngs(1))(f)
    assert mu.dtype == sigma.dtype == jnp.float64
    assert nets.MLP(F, 1, rngs=nnx.Rngs(2))(f).dtype == jnp.float64
