"""RLOP's live-cell evaluation and REINFORCE's score function.

Oracles: the ``lax.scan`` over all N^2 cells (the code path kept for long horizons) for
the unrolled live-cell path, and the closed-form Gaussian score for ``score_sample``.
"""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxhedge import ledger
from jaxhedge.agents import rlop
from jaxhedge.agents.latent_vol import delta_at_vol, score_sample
from jaxhedge.train.jobs import load_job


def tiny(**kw):
    agent, hp = load_job("rlop", "smoke").build()
    base = dict(n_envs=7, n_steps=4, width=8, n_blocks=1, layers_per_block=1, price_width=8,
                baseline_widths=(8,))
    base.update(kw)
    return dataclasses.replace(agent, **base), hp


def test_live_cells_equal_the_full_scan():
    """A hedge that reads the position (so dates are sequential), with aux: every field of
    the replication is the same whether date t sees all N columns or only t..N-1."""
    rng = np.random.default_rng(1)
    spots = jnp.asarray(np.exp(np.cumsum(rng.normal(0, 0.05, (5, 6)), axis=1)), jnp.float32)
    spots = jnp.concatenate([jnp.ones((5, 1)), spots], axis=1)
    prem = jnp.full((5, 6), 0.04)
    seen = []

    def hedge(key, obs):
        seen.append(obs.spot.shape)
        u = 0.7 * delta_at_vol(obs, obs.vol) + 0.2 * obs.position + 0.01 * obs.elapsed
        return u, (u * obs.time_to_maturity, jax.random.uniform(key, obs.spot.shape))

    run = lambda live: rlop.stacked_replication(  # noqa: E731
        spots, prem, 1.0, 0.02, 0.05, ledger.CostModel(proportional=0.003), hedge,
        jax.random.split(jax.random.key(0), 6), vol=0.3, live_only=live)
    full, live = run(False), run(True)
    assert seen[0] == (5, 6)  # the scan traces once at full width
    assert seen[1:] == [(5, 6 - t) for t in range(6)]  # live: (n, N - t) at date t
    for name in ("terminal", "payoff", "hedges", "tau", "active", "cost"):
        np.testing.assert_allclose(np.asarray(getattr(live, name)),
                                   np.asarray(getattr(full, name)), rtol=1e-6, atol=1e-7,
                                   err_msg=name)
    # aux of dead cells is zero-padded, of live cells equal (uniform draws: same key, the
    # live columns of a narrower draw differ, so only the first aux leaf is compared)
    active = np.asarray(full.active)[:, None, :]
    a_full, a_live = np.asarray(full.aux[0]), np.asarray(live.aux[0])
    np.testing.assert_allclose(a_live[np.broadcast_to(active, a_live.shape)],
                               a_full[np.broadcast_to(active, a_full.shape)], rtol=1e-6)
    assert np.all(a_live[~np.broadcast_to(active, a_live.shape)] == 0)


# both slow (~20 s each): test_live_cells_equal_the_full_scan keeps the fast check
@pytest.mark.parametrize("estimator", [pytest.param("reinforce", marks=pytest.mark.slow),
                                       pytest.param("pathwise", marks=pytest.mark.slow)])
def test_rlop_losses_and_gradients_do_not_depend_on_live_cells(monkeypatch, estimator):
    agent, hp = tiny(estimator=estimator)
    state = agent.init(jax.random.key(0), hp)
    key = jax.random.key(4)
    trainable = (state.policy, state.baseline, state.threshold, state.price)

    def grads():
        f = lambda tr: agent.losses(key, state, hp, tr)  # noqa: E731
        return jax.jit(jax.value_and_grad(f, has_aux=True))(trainable)

    monkeypatch.setattr(rlop, "LIVE_CELLS_MIN_CELLS", 0)  # live cells at this small size
    assert rlop.live_cells_default(agent.n_envs, agent.n_steps)
    (loss_live, m_live), g_live = grads()
    monkeypatch.setattr(rlop, "LIVE_CELLS_MAX_DATES", 0)  # force the full scan
    assert not rlop.live_cells_default(agent.n_envs, agent.n_steps)
    (loss_full, m_full), g_full = grads()
    np.testing.assert_allclose(float(loss_live), float(loss_full), rtol=2e-5)
    for k in m_full:
        np.testing.assert_allclose(float(m_live[k]), float(m_full[k]), rtol=2e-5, atol=1e-7,
                                   err_msg=k)
    for a, b in zip(jax.tree.leaves(g_live), jax.tree.leaves(g_full)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-4, atol=1e-6)


def test_score_sample_gradient_is_the_gaussian_score():
    """d log N(vol; m, s) / dm = (vol - m) / s^2 and / ds = (vol - m)^2 / s^3 - 1 / s with the
    sampled vol held fixed; a differentiable sample would give exactly 0 in m."""
    mean, std = jnp.array([0.2, 0.5, 1.1]), jnp.array([0.1, 0.05, 0.3])
    noise = jnp.array([0.7, -1.3, 0.2])
    vol = mean + std * noise

    def logp(m, s):
        return jnp.sum(score_sample(m, s, noise)[1])

    gm, gs = jax.grad(logp, argnums=(0, 1))(mean, std)
    np.testing.assert_allclose(gm, (vol - mean) / std**2, rtol=1e-5)
    np.testing.assert_allclose(gs, (vol - mean) ** 2 / std**3 - 1 / std, rtol=1e-5)
    # the bug this replaces: a differentiable action makes the mean's score vanish
    naive = lambda m, s: jnp.sum(-0.5 * (((m + s * noise) - m) / s) ** 2 - jnp.log(s))  # noqa: E731
    np.testing.assert_allclose(jax.grad(naive)(mean, std), 0.0, atol=1e-6)
