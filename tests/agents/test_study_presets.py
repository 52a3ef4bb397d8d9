"""What the study presets rely on: a dt per contract in both agents, inputs read as 0, and
the presets themselves (distribution covering the study's slices, early stopping on)."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxhedge import ledger, pricing
from jaxhedge.agents import rlop
from jaxhedge.agents.adaptive_qlbs import AdaptiveQLBS, AdaptiveQLBSHParams
from jaxhedge.contracts import Contract, ContractBatch, ContractDistribution
from jaxhedge.train.jobs import load_job

DTS = np.array([0.004, 0.02, 0.05], np.float32)


def _batch(dt):
    n = len(DTS)
    return ContractBatch(s0=jnp.array([0.9, 1.0, 1.2]), strike=jnp.ones(n),
                         mu=jnp.zeros(n), sigma=jnp.array([0.2, 0.6, 1.5]),
                         cost=jnp.zeros(n), dt=jnp.asarray(dt, jnp.float32))


def test_adaptive_qlbs_uses_each_contracts_dt():
    # oracle: env j of a mixed batch equals env j of a batch where every env has dt_j
    # (envs are independent given the same keys)
    agent = AdaptiveQLBS(n_envs=3, n_steps=3, n_continuations=4, width=8, n_blocks=1,
                         layers_per_block=1, baseline_width=8, estimator="pathwise")
    hp = AdaptiveQLBSHParams(contracts=ContractDistribution(dt=0.01))
    state = agent.init(jax.random.key(0), hp)
    ep = jax.jit(lambda b: agent.episode(jax.random.key(1), state.params["policy"], state, hp,
                                         b, sample_actions=False))
    mixed = ep(_batch(DTS))
    for j, dt in enumerate(DTS):
        alone = ep(_batch(np.full(3, dt)))
        for k in ("spot", "hedge", "reward"):
            np.testing.assert_allclose(mixed[k][j], alone[k][j], rtol=2e-5, atol=1e-7)
    assert not np.allclose(mixed["reward"][0], ep(_batch(np.full(3, DTS[2])))["reward"][0])


def test_stacked_replication_uses_each_envs_dt():
    spots = jnp.array([[1.0, 1.02, 0.99, 1.05], [1.0, 0.97, 1.01, 1.0], [1.0, 1.1, 1.2, 0.9]])
    prem = jnp.full((3, 3), 0.05)
    costs = ledger.CostModel(proportional=jnp.array([0.0, 0.002, 0.01]))
    hedge = lambda k, o: (0.3 + o.time_to_maturity + 0.1 * o.elapsed, ())  # noqa: E731
    rep = jax.jit(lambda dt: rlop.stacked_replication(spots, prem, 1.0, 0.03, dt, costs, hedge))
    mixed = rep(jnp.asarray(DTS))
    for j, dt in enumerate(DTS):
        alone = rep(jnp.float32(dt))
        np.testing.assert_allclose(mixed.terminal[j], alone.terminal[j], rtol=1e-6)
        np.testing.assert_allclose(mixed.tau[:, j], alone.tau[:, j], rtol=1e-6)


@pytest.mark.parametrize("make", ["aqlbs", "rlop"])
def test_ignored_inputs_do_not_move_the_price(make):
    small = dict(width=8, n_blocks=1, layers_per_block=1)
    if make == "aqlbs":
        def build(**k):
            return AdaptiveQLBS(n_envs=4, n_continuations=2, baseline_width=8, **small, **k)
        hp = AdaptiveQLBSHParams()
    else:
        build = lambda **k: rlop.RLOP(n_envs=4, price_width=8, **small, **k)  # noqa: E731
        hp = rlop.RLOPHParams()
    c = Contract(s0=1.0, strike=1.0, maturity=0.1, sigma=0.3, option="call")
    moved = c.replace(mu=0.7, cost=0.004)
    blind = build(ignored_inputs=("drift", "cost"))
    st = blind.init(jax.random.key(0), hp)
    assert float(blind.price(st, hp, moved)) == float(blind.price(st, hp, c))
    seeing = build()
    st = seeing.init(jax.random.key(0), hp)
    assert float(seeing.price(st, hp, moved)) != float(seeing.price(st, hp, c))
    with pytest.raises(ValueError, match="ignored_inputs"):
        build(ignored_inputs=("spot",))


@pytest.mark.parametrize("agent", ["adaptive-qlbs", "rlop"])
def test_study_presets_cover_the_study(agent):
    job = load_job(agent, "study")
    a, hp = job.build()
    d = hp.contracts
    days = lambda x: 365 * a.n_steps * x  # noqa: E731
    # METHODS §5.1 keeps tau in 3..70 calendar days; the 56-day anchor is 56/252 years
    assert days(d.dt) <= 3 and days(d.dt_hi) >= 70 and a.n_steps * d.dt_hi >= 56 / 252
    assert d.sigma_hi >= 2.0 and d.sigma_lo <= 0.1  # March-2020 XOP ATM vols reach ~2
    assert d.s0_lo / d.strike_hi <= 1 / 1.3 and d.s0_hi / d.strike_lo >= 1 / 0.72  # K/F
    assert d.mu_std == 0 and d.mu_mean == 0 and d.cost_hi == 0 and d.rate == 0
    assert set(a.ignored_inputs) >= {"drift", "cost", "rate"}
    assert a.estimator == "pathwise" and a.lr_decay_steps > 0 and a.vol_max >= 3.0
    assert job.validation.enabled and job.validation.gates
    assert dataclasses.asdict(job.validation)["price_tol"] <= 0.05
    # anchored heads start at BS: the preset must not let the criterion stop them at once
    assert a.anchor_ratio > 1 and job.validation.min_steps >= 5 * job.train.chunk


@pytest.mark.parametrize("make", ["aqlbs", "rlop"])
def test_anchored_heads_start_at_the_contracts_vol(make):
    """Oracle: at init an anchored agent prices at (about) Black-Scholes at the contract's
    own vol on a grid from sigma 0.05 to 2 -- the unanchored one does not -- and an anchored
    head cannot ignore the vol it reads."""
    small = dict(width=8, n_blocks=1, layers_per_block=1)
    if make == "aqlbs":
        build = lambda **k: AdaptiveQLBS(n_envs=4, n_continuations=2,  # noqa: E731
                                         baseline_width=8, **small, **k)
        hp = AdaptiveQLBSHParams()
    else:
        build = lambda **k: rlop.RLOP(n_envs=4, price_width=8, **small, **k)  # noqa: E731
        hp = rlop.RLOPHParams()
    sig = jnp.array([0.05, 0.1, 0.2, 0.5, 1.0, 2.0])
    c = Contract(s0=1.0, strike=1.0, maturity=0.1, sigma=sig, cost=0.0, option="call")
    ivs = {}
    for ratio in (0.0, 4.0):
        a = build(anchor_ratio=ratio)
        st = a.init(jax.random.key(0), hp)
        p = a.price(st, hp, c)
        ivs[ratio] = np.asarray(pricing.implied_vol_bs(p, 1.0, 1.0, 0.1, 0.0, 0.0, True).vol)
    # the start is exactly the anchor; the tolerance is the implied-vol inversion's
    np.testing.assert_allclose(ivs[4.0], sig, rtol=2e-3)
    assert np.max(np.abs(ivs[0.0] / sig - 1)) > 0.5
    with pytest.raises(ValueError, match="anchor_ratio"):
        build(anchor_ratio=4.0, ignored_inputs=("vol",))
    with pytest.raises(ValueError, match="anchor_ratio"):
        build(anchor_ratio=0.9)
