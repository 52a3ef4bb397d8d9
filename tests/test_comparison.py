"""Paired block bootstrap and directional slope against plain-numpy references."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxhedge import comparison, risk


def numpy_stats(pnl, cost):
    """RMSE, mean cost, P(shortfall), ES 5% of the shortfall: written from METHODS §6 alone
    on an explicitly resampled (repeated) sample."""
    pnl, cost = np.asarray(pnl, np.float64), np.asarray(cost, np.float64)
    sf = np.sort(np.maximum(-pnl, 0.0))[::-1]
    m = 0.05 * sf.size
    w = np.clip(m - np.arange(sf.size), 0.0, 1.0) / m
    return np.array([np.sqrt(np.mean(pnl**2)), cost.mean(), np.mean(pnl < 0), w @ sf])


def numpy_block_draw(rng, n_days, block):
    n_blocks = -(-n_days // block)
    starts = rng.integers(0, n_days, n_blocks)
    return ((starts[:, None] + np.arange(block)) % n_days).ravel()[:n_days]


@pytest.fixture(scope="module")
def episodes():
    rng = np.random.default_rng(7)
    n_days, per_day = 40, 3
    day = np.repeat(np.arange(n_days), per_day)
    ret = np.repeat(rng.normal(0, 0.03, n_days), per_day) + rng.normal(0, 0.005, day.size)
    pnl_b = rng.normal(-0.5, 1.0, day.size)
    pnl_a = pnl_b + 0.2 + 8.0 * ret  # a = b plus a directional position
    cost_b = rng.uniform(0.1, 0.3, day.size)
    cost_a = cost_b * 1.5
    return day, ret, pnl_a, cost_a, pnl_b, cost_b


def test_each_replicate_equals_numpy_on_the_resampled_episodes(episodes, x64):
    day, _, pnl_a, cost_a, pnl_b, cost_b = episodes
    n_days = int(day.max()) + 1
    counts = np.asarray(comparison.block_counts(jax.random.key(3), n_days, 5, 20))
    reps = np.asarray(comparison._replicates(
        *(jnp.asarray(x, jnp.float64) for x in (pnl_a, cost_a, pnl_b, cost_b)),
        jnp.asarray(day), jnp.asarray(counts), n_days))
    for r, c in zip(reps, counts):
        # explicit resampling: each episode repeated as often as its start day was drawn
        idx = np.concatenate([np.flatnonzero(day == d).repeat(c[d]) for d in range(n_days)])
        want = numpy_stats(pnl_a[idx], cost_a[idx]) - numpy_stats(pnl_b[idx], cost_b[idx])
        np.testing.assert_allclose(r, want, rtol=1e-10, atol=1e-12)


def test_equal_weights_match_risk_module():
    rng = np.random.default_rng(0)
    pnl, cost = rng.normal(size=257), rng.uniform(size=257)
    got = np.asarray(comparison.weighted_stats(jnp.asarray(pnl, jnp.float32),
                                               jnp.asarray(cost, jnp.float32), jnp.ones(257)))
    m = risk.hedge_metrics(jnp.asarray(pnl, jnp.float32), jnp.asarray(cost, jnp.float32))
    want = [float(m[k]) for k in comparison.PAIRED_METRICS]
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-6)


# every example is a new (n_days, block) shape, i.e. a compile: few examples, derandomized
@settings(max_examples=8, deadline=None, derandomize=True)
@given(n_days=st.integers(1, 60), block=st.integers(1, 12), seed=st.integers(0, 2**31 - 1))
def test_block_counts_are_contiguous_circular_blocks(n_days, block, seed):
    counts = np.asarray(comparison.block_counts(jax.random.key(seed), n_days, block, 3))
    assert (counts.sum(axis=1) == n_days).all()
    assert (counts >= 0).all()
    b = min(block, n_days)
    if b == n_days:  # one block covers every day once
        assert (counts == 1).all()


def test_block_counts_distribution_matches_numpy_sampler():
    n_days, block, n = 30, 5, 4000
    counts = np.asarray(comparison.block_counts(jax.random.key(11), n_days, block, n))
    rng = np.random.default_rng(11)
    ref = np.stack([np.bincount(numpy_block_draw(rng, n_days, block), minlength=n_days)
                    for _ in range(n)])
    # circular MBB: every day has expected count 1; the variance of a day's count is the
    # same for both samplers (compare within Monte Carlo error)
    np.testing.assert_allclose(counts.mean(axis=0), 1.0, atol=0.08)
    np.testing.assert_allclose(counts.var(axis=0).mean(), ref.var(axis=0).mean(), rtol=0.06)


def test_paired_ci_covers_the_difference_and_excludes_zero_for_cost(episodes):
    day, _, pnl_a, cost_a, pnl_b, cost_b = episodes
    out = comparison.paired_bootstrap(pnl_a, cost_a, pnl_b, cost_b, day, jax.random.key(0),
                                      n_boot=1000, block=5)
    assert list(out) == list(comparison.PAIRED_METRICS)
    for v in out.values():
        assert v["lo"] <= v["diff"] <= v["hi"]
    # a's cost is 1.5x b's on every episode: the interval is strictly positive
    assert out["mean_cost"]["lo"] > 0
    # same key, same interval
    again = comparison.paired_bootstrap(pnl_a, cost_a, pnl_b, cost_b, day, jax.random.key(0),
                                        n_boot=1000, block=5)
    assert again == out


def test_identical_hedgers_have_a_zero_width_interval(episodes):
    day, _, _, _, pnl_b, cost_b = episodes
    out = comparison.paired_bootstrap(pnl_b, cost_b, pnl_b, cost_b, day, jax.random.key(1),
                                      n_boot=200)
    for v in out.values():
        assert v["diff"] == v["lo"] == v["hi"] == 0.0


def test_directional_slope_finds_the_bet(episodes):
    day, ret, pnl_a, _, pnl_b, _ = episodes
    a, b = comparison.directional_slope(pnl_a, ret), comparison.directional_slope(pnl_b, ret)
    x, y = ret - ret.mean(), pnl_a - pnl_a.mean()
    assert a["slope"] == pytest.approx(np.polyfit(ret, pnl_a, 1)[0], rel=1e-9)
    assert a["r2"] == pytest.approx((x @ y) ** 2 / ((x @ x) * (y @ y)), rel=1e-9)
    # within 4 OLS standard errors of the true exposures 8 and 0
    se = np.sqrt(np.var(pnl_b - pnl_b.mean(), ddof=2) * pnl_b.size / (x @ x))
    assert abs(a["slope"] - 8.0) < 4 * se and abs(b["slope"]) < 4 * se


def test_bad_shapes_are_one_line_errors():
    with pytest.raises(ValueError, match="share one non-empty shape"):
        comparison.paired_bootstrap([1.0], [1.0], [1.0, 2.0], [1.0, 2.0], [0, 1],
                                    jax.random.key(0))
    with pytest.raises(ValueError, match="n >= 2"):
        comparison.directional_slope([1.0], [1.0])
