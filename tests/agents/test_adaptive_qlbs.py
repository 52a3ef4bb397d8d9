"""Adaptive-QLBS (METHODS §4.2): the reward formula against an independent numpy computation,
a pure/jittable/scannable/deterministic update with no Python loop over steps or
continuations, robustness (finite everything) on the paper's contract distribution, the
price head, the TOML presets, and Proposition 1 (price non-decreasing in lambda).
"""
import functools
import pathlib

import chex
import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as hst

from jaxhedge import ledger
from jaxhedge.agents.adaptive_qlbs import (PAPER_CONTRACTS, AdaptiveQLBS, contract_batch,
                                           portfolio_values, step_reward)
from jaxhedge.agents.latent_vol import LatentVolPolicy
from jaxhedge.contracts import Contract
from jaxhedge.env import EnvConfig, HedgingEnv, Observation
from jaxhedge.markets import GBMParams
from jaxhedge.pricing import bs_price
from jaxhedge.rollout import rollout
from jaxhedge.train.jobs import AdaptiveQLBSJob, load_job

PRESET_DIR = pathlib.Path(__file__).resolve().parents[2] / "experiments" / "adaptive_qlbs"


def with_contracts(hp, **kw):
    """``hp`` with ``learning_rate``/``risk_aversion`` and any ``hp.contracts`` fields replaced."""
    top = {k: kw.pop(k) for k in ("learning_rate", "risk_aversion") if k in kw}
    return hp.replace(contracts=hp.contracts.replace(**kw), **top)


def tiny(**kw):
    base = dict(n_envs=16, n_steps=4, n_continuations=4, width=8, n_blocks=1,
                layers_per_block=1, baseline_width=8)
    base.update(kw)
    agent = AdaptiveQLBS(**base)
    paper_hp = load_job("adaptive-qlbs", "paper").hparams
    return agent, paper_hp.replace(learning_rate=1e-3)


# ----------------------------------------------------------------------------- reward formula
def numpy_reward(spots, hedges, K, eps, gamma, t, lam, dt, use_dt, is_call=True):
    """METHODS §4.2 by the BACKWARD recursion (independent of the closed-form sum).

    spots (RS, N+1), hedges (RS, N) with hedges[:, t] the fixed u_t.
    """
    spots, hedges = np.asarray(spots, np.float64), np.asarray(hedges, np.float64)
    n = hedges.shape[1]
    u = np.concatenate([hedges, np.zeros((hedges.shape[0], 1))], axis=1)  # u_N = 0
    payoff = np.maximum(spots[:, n] - K, 0.0) if is_call else np.maximum(K - spots[:, n], 0.0)
    pi = payoff.copy()  # Pi_N
    for s in range(n - 1, t - 1, -1):
        pi = (gamma * pi - u[:, s] * (gamma * spots[:, s + 1] - spots[:, s])
              + eps * gamma * np.abs(u[:, s + 1] - u[:, s]) * spots[:, s + 1])
    pi_t = pi
    pi_t1 = (pi_t + u[:, t] * (gamma * spots[:, t + 1] - spots[:, t])) / gamma
    pen = lam * np.std(pi_t, ddof=1) * (dt if use_dt else 1.0)
    return gamma * (1 - (t + 1) / n) * pi_t1.mean() - (1 - t / n) * pi_t.mean() - pen


@pytest.mark.parametrize("t", [0, 1, 2])
@pytest.mark.parametrize("use_dt", [True, False])
def test_reward_matches_numpy(t, use_dt, x64):
    """Hand-built case: N = 3, RS = 3 explicit continuations, costs, discounting, a put too."""
    n, dt, r, lam, eps, K = 3, 0.25, 0.08, 0.3, 0.01, 1.0
    gamma = np.exp(-r * dt)
    spots = np.array([[1.00, 1.10, 1.05, 1.20],
                      [1.00, 0.90, 0.95, 0.80],
                      [1.00, 1.00, 1.30, 1.02]])
    hedges = np.array([[0.50, 0.70, 0.60],
                       [0.50, 0.30, 0.45],
                       [0.50, 0.55, 0.90]])
    # continuations branch at t: everything before t equals S_t / u_t is fixed at t
    spots[:, :t + 1] = spots[0, t]
    hedges[:, t] = 0.42
    for is_call in (True, False):
        want = numpy_reward(spots, hedges, K, eps, gamma, t, lam, dt, use_dt, is_call)
        got = step_reward(jnp.asarray(spots), jnp.asarray(hedges), K, eps, gamma, t, lam, dt,
                          is_call, use_dt)
        np.testing.assert_allclose(float(got), want, rtol=1e-12, atol=1e-14)
    # traced t gives the same number (the training scan passes t as a tracer)
    got_traced = jax.jit(lambda tt: step_reward(jnp.asarray(spots), jnp.asarray(hedges), K,
                                                eps, gamma, tt, lam, dt, True, use_dt))(t)
    want = numpy_reward(spots, hedges, K, eps, gamma, t, lam, dt, use_dt, True)
    np.testing.assert_allclose(float(got_traced), want, rtol=1e-12)


def test_portfolio_values_random_batch(x64):
    """Closed form vs backward recursion on a random batch with per-env eps and K."""
    rng = np.random.default_rng(0)
    e, rs, n = 5, 7, 6
    spots = np.exp(np.cumsum(rng.normal(0, 0.1, (e, rs, n + 1)), -1))
    hedges = rng.uniform(0, 1, (e, rs, n))
    eps = rng.uniform(0, 0.02, e)
    K = rng.uniform(0.8, 1.2, e)
    gamma = 0.97
    for t in range(n):
        got = portfolio_values(jnp.asarray(spots), jnp.asarray(hedges), K[:, None],
                               eps[:, None], gamma, t)
        u = np.concatenate([hedges, np.zeros((e, rs, 1))], -1)
        pi = np.maximum(spots[..., n] - K[:, None], 0)
        for s in range(n - 1, t - 1, -1):
            pi = (gamma * pi - u[..., s] * (gamma * spots[..., s + 1] - spots[..., s])
                  + eps[:, None] * gamma * np.abs(u[..., s + 1] - u[..., s]) * spots[..., s + 1])
        np.testing.assert_allclose(np.asarray(got), pi, rtol=1e-12)


def _random_tape(seed, n, t_frac):
    """Random continuations (E envs x RS paths x N+1 dates), hedges (with some zero trades),
    per-env strikes and eps, a rate and dt (gamma = e^{-r dt}) and a date t."""
    rng = np.random.default_rng(seed)
    e, rs = 3, 5
    s0 = rng.uniform(0.3, 1.7, (e, 1, 1))
    spots = s0 * np.exp(np.cumsum(rng.normal(0, 0.15, (e, rs, n + 1)), -1))
    hedges = rng.uniform(-0.5, 1.5, (e, rs, n))
    hedges[:, 0, 1:] = hedges[:, 0, :-1]  # zero trades on one path per env
    strike = rng.uniform(0.3, 1.7, e)
    eps = rng.uniform(0.0, 0.05, e)
    rate, dt = rng.uniform(-0.1, 0.2), rng.uniform(1 / 252, 0.25)
    t = min(int(t_frac * n), n - 1)
    return spots, hedges, strike, eps, rate, dt, t


def _ledger_pi(spots, hedges, strike, eps, rate, dt, t, is_call):
    """Pi_t from ``ledger.replay`` alone: the ledger from date t (METHODS §4.2 conventions:
    no entry cost, unwind charged) is affine in the premium p with slope e^{r (N-t) dt}, so
    the premium that replicates h(S_N) exactly is ``-gamma^{N-t} pnl(p = 0)``. Also returns
    the ledger's value one step later started from that premium, V_{t+1} (values[..., 1])."""
    n = hedges.shape[-1]
    tape = lambda p: _replay_from_t(spots[..., t:], hedges[..., t:], p, strike[:, None],
                                    eps[:, None], rate, dt, is_call)
    pi = -np.exp(-rate * dt * (n - t)) * np.asarray(tape(np.zeros(spots.shape[:-1])).pnl)
    funded = tape(pi)
    return pi, np.asarray(funded.pnl), np.asarray(funded.values[..., 1])


@functools.partial(jax.jit, static_argnames="is_call")
def _replay_from_t(spots, hedges, premium, strike, eps, rate, dt, is_call):
    # jitted with the numbers as arguments so each tape shape compiles once
    params = ledger.LedgerParams(costs=ledger.CostModel(proportional=eps), rate=rate, dt=dt,
                                 charge_entry=False, charge_unwind=True)
    return ledger.replay(spots, hedges, premium, strike, params, is_call)


# jitted (t traced, as in training) so each tape shape compiles once
_jit_pi = jax.jit(portfolio_values, static_argnames="is_call")
_jit_reward = jax.jit(step_reward, static_argnames=("is_call", "step_penalty_dt"))


@settings(max_examples=30, deadline=None)
@given(seed=hst.integers(0, 2**32 - 1), n=hst.integers(1, 5), t_frac=hst.floats(0, 1),
       is_call=hst.booleans(), lam=hst.floats(0, 5), use_dt=hst.booleans())
def test_closed_form_is_the_ledger(seed, n, t_frac, is_call, lam, use_dt):
    """The closed-form ``portfolio_values`` (kept for speed) and ``step_reward`` against
    :func:`jaxhedge.ledger.replay` on random tapes (float64): Pi_t is the premium at which the
    ledger's terminal P&L is 0, and the reward's Pi_{t+1} is the ledger's value at t+1."""
    with jax.enable_x64(True):
        spots, hedges, strike, eps, rate, dt, t = _random_tape(seed, n, t_frac)
        gamma = np.exp(-rate * dt)
        pi_ref, pnl_funded, v_next = _ledger_pi(spots, hedges, strike, eps, rate, dt, t,
                                                is_call)
        scale = np.abs(spots).max()
        np.testing.assert_allclose(pnl_funded, 0.0, atol=1e-12 * scale)
        got = _jit_pi(spots, hedges, strike[:, None], eps[:, None], gamma, t, is_call)
        assert got.dtype == jnp.float64
        np.testing.assert_allclose(np.asarray(got), pi_ref, rtol=1e-12, atol=1e-12 * scale)
        # the reward from ledger quantities (at t = N-1 values[..., 1] is after the unwind,
        # but its weight 1 - (t+1)/N is 0 there)
        want = (gamma * (1 - (t + 1) / n) * v_next.mean(-1) - (1 - t / n) * pi_ref.mean(-1)
                - lam * pi_ref.std(-1, ddof=1) * (dt if use_dt else 1.0))
        r = _jit_reward(spots, hedges, strike, eps, gamma, t, lam, dt, is_call, use_dt)
        np.testing.assert_allclose(np.asarray(r), want, rtol=1e-10, atol=1e-12 * scale)


def test_rao_blackwellised_gain_is_conditional_expectation(x64):
    """``growth`` replaces each gain u_s (gamma S_{s+1} - S_s) by u_s S_s (gamma m - 1): the
    formula on a hand case, and the same mean as the sampled version over many GBM
    continuations with F_s-measurable hedges (unbiasedness)."""
    n, gamma, m, t = 3, 0.99, 1.01, 1
    spots = np.array([[1.0, 1.0, 1.2, 0.9]])
    hedges = np.array([[0.3, 0.5, 0.7]])
    got = portfolio_values(jnp.asarray(spots), jnp.asarray(hedges), 1.0, 0.0, gamma, t,
                           growth=m)
    want = gamma ** (n - t) * 0.0 - (0.5 * 1.0 * (gamma * m - 1)
                                     + 0.7 * gamma * 1.2 * (gamma * m - 1))
    np.testing.assert_allclose(float(got[0]), want, rtol=1e-12)
    # unbiased: hedges a function of the current spot, GBM with e^{mu dt} = m
    rng = np.random.default_rng(1)
    dt, sig = 0.05, 0.3
    mu = np.log(m) / dt
    z = rng.standard_normal((400_000, n))
    paths = np.exp(np.cumsum((mu - sig**2 / 2) * dt + sig * np.sqrt(dt) * z, 1))
    paths = np.concatenate([np.ones((len(z), 1)), paths], 1)
    u = np.clip(paths[:, :n] - 0.5, 0, 1)
    pv = lambda uu, g=None: portfolio_values(jnp.asarray(paths), jnp.asarray(uu), 1.0, 0.0,
                                             gamma, 0, growth=g)
    sampled, rb = pv(u), pv(u, m)
    se = float(jnp.std(sampled)) / np.sqrt(len(z))
    assert abs(float(jnp.mean(sampled) - jnp.mean(rb))) < 4 * se
    # Pi is linear in a hedge scale alpha (u -> alpha u, eps = 0): d Pi / d alpha per path is
    # Pi(u) - Pi(0); its mean is the same, its spread (the gradient noise) far smaller
    d_s, d_rb = sampled - pv(0 * u), rb - pv(0 * u, m)
    assert abs(float(jnp.mean(d_s) - jnp.mean(d_rb))) < 4 * float(jnp.std(d_s)) / np.sqrt(len(z))
    assert float(jnp.std(d_rb)) < 0.2 * float(jnp.std(d_s))
    # step_reward: the std penalty still uses the sampled spread
    r_plain = step_reward(jnp.asarray(paths[:64]), jnp.asarray(u[:64]), 1.0, 0.0, gamma, 0,
                          1.0, dt, step_penalty_dt=False)
    r_rb = step_reward(jnp.asarray(paths[:64]), jnp.asarray(u[:64]), 1.0, 0.0, gamma, 0, 1.0,
                       dt, step_penalty_dt=False, growth=m)
    zero_lam = lambda g: step_reward(jnp.asarray(paths[:64]), jnp.asarray(u[:64]), 1.0, 0.0,
                                     gamma, 0, 0.0, dt, step_penalty_dt=False, growth=g)
    np.testing.assert_allclose(float(r_plain - zero_lam(None)), float(r_rb - zero_lam(m)),
                               rtol=1e-12)


def test_feature_norm_standardises_training_inputs():
    """standardize_features: the state carries (loc, scale); on the training distribution the
    policy's standardised sigma, tau and log-moneyness features have mean ~0 and std ~1;
    without it (RLOP's default) the policy reads the raw features."""
    agent, hp = tiny(n_envs=256, standardize_features=True)
    hp = with_contracts(hp, mu_std=0.0, sigma_lo=0.15, sigma_hi=0.35, strike_lo=0.9,
                        strike_hi=1.1, s0_lo=0.95, s0_hi=1.05, cost_hi=0.0)
    st = agent.init(jax.random.key(0), hp)
    assert st.feature_norm is not None
    c = hp.contracts.sample(jax.random.key(1), agent.n_envs)
    ep = agent.episode(jax.random.key(2), st.params["policy"], st, hp, c)
    t = jnp.arange(agent.n_steps)
    obs = agent._obs(ep["spot"], t[None, :], jax.tree.map(lambda x: x[:, None], c), hp,
                     ep["position"])
    x = np.asarray(agent._policy(st).features(obs)).reshape(-1, 9)
    for i in (0, 2, 3, 6):  # log-moneyness, tau, elapsed, sigma
        assert abs(x[:, i].mean()) < 0.2 and 0.6 < x[:, i].std() < 1.4, (i, x[:, i].mean(),
                                                                         x[:, i].std())
    assert np.all(np.isfinite(x))  # eps range 0 and mu_std 0 hit the scale floors
    raw = tiny()[0]
    st_raw = raw.init(jax.random.key(0), hp)
    assert st_raw.feature_norm is None
    from jaxhedge import nets
    np.testing.assert_array_equal(np.asarray(raw._policy(st_raw).features(obs)),
                                  np.asarray(nets.observation_features(obs)))


def test_learning_rate_decay():
    agent = tiny(lr_decay_steps=100)[0]
    hp = agent.default_hparams().replace(learning_rate=2e-3)
    lr = lambda k: float(agent._learning_rate(hp, jnp.asarray(k, jnp.int32)))
    np.testing.assert_allclose([lr(0), lr(50), lr(100), lr(500)],
                               [2e-3, 1.1e-3, 2e-4, 2e-4], rtol=1e-5)
    assert float(tiny()[0]._learning_rate(hp, jnp.asarray(7))) == pytest.approx(2e-3)
    with pytest.raises(ValueError, match="lr_decay_steps"):
        tiny(lr_decay_steps=-1)


def test_rollout_reward_is_step_reward_on_its_continuations():
    """Zero vol: continuations are deterministic, so r_t is known in closed form.

    With sigma ~ 0 and mu = r = 0, eps = 0 every continuation stays at S_t, Pi_t = h(S_t)
    for any hedge, std = 0, and r_t = (1 - (t+1)/N) h - (1 - t/N) h = -h/N.
    """
    agent, hp = tiny()
    hp = with_contracts(hp, mu_std=0.0, sigma_lo=1e-6, sigma_hi=2e-6, cost_hi=0.0,
                        s0_lo=1.2, s0_hi=1.2, strike_lo=1.0, strike_hi=1.0)
    st = agent.init(jax.random.key(0), hp)
    c = hp.contracts.sample(jax.random.key(1), agent.n_envs)
    ep = jax.jit(lambda k, p: agent.episode(k, p, st, hp, c))(jax.random.key(2),
                                                               st.params["policy"])
    assert ep["reward"].shape == (agent.n_envs, agent.n_steps)
    np.testing.assert_allclose(np.asarray(ep["reward"]), -0.2 / agent.n_steps, atol=2e-5)


def test_continuations_fix_u_t_then_follow_policy_mean():
    """Zero vol with costs: each continuation stays at S_t, so the reward depends only on the
    hedges; rebuild them independently (u_t from the episode, then the policy mean with the
    previous hedge as position) and recompute r_t in numpy."""
    agent, hp = tiny(n_envs=6)
    hp = with_contracts(hp, mu_std=0.0, sigma_lo=1e-6, sigma_hi=2e-6, cost_lo=0.05,
                        cost_hi=0.05, s0_lo=0.8, s0_hi=1.2, strike_lo=1.0, strike_hi=1.0,
                        rate=0.05)
    st = agent.init(jax.random.key(0), hp)
    c = hp.contracts.sample(jax.random.key(1), agent.n_envs)
    ep = jax.jit(lambda k, p: agent.episode(k, p, st, hp, c))(jax.random.key(2),
                                                               st.params["policy"])
    hedger = agent.hedger(st, hp)
    n, dt = agent.n_steps, float(hp.contracts.dt)
    gamma = np.exp(-0.05 * dt)
    for e in range(agent.n_envs):
        spot = float(ep["spot"][e, 0])
        for t in range(n):
            u = [0.0] * n
            u[t] = float(ep["hedge"][e, t])
            for s in range(t + 1, n):
                o = obs_grid(spot, 1.0, float(c.sigma[e]), tau=(n - s) * dt)
                o = o.replace(elapsed=jnp.float32(s * dt), rate=jnp.float32(0.05),
                              cost=jnp.float32(0.05), position=jnp.float32(u[s - 1]))
                u[s] = float(hedger(o))
            spots = np.full((2, n + 1), spot)
            want = numpy_reward(spots, np.array([u, u]), 1.0, 0.05, gamma, t,
                                float(hp.risk_aversion), dt, True)
            np.testing.assert_allclose(float(ep["reward"][e, t]), want, rtol=1e-4, atol=1e-5)


# ----------------------------------------------------------------------------- purity
def test_update_jittable_scannable_deterministic():
    agent, hp = tiny()

    @chex.assert_max_traces(n=1)
    def train(key, hp):
        st = agent.init(jax.random.key(0), hp)
        return jax.lax.scan(lambda s, k: agent.update(k, s, hp), st, jax.random.split(key, 3))

    train = jax.jit(train)
    s1, m1 = train(jax.random.key(1), hp)
    s2, m2 = train(jax.random.key(1), hp.replace(risk_aversion=0.5, learning_rate=3e-3))
    s3, _ = train(jax.random.key(1), hp)  # no retrace for new hparam VALUES (max_traces 1)
    chex.assert_trees_all_equal(s1.params, s3.params)
    assert m1["loss"].shape == (3,)
    assert set(m1) >= {"loss", "policy_loss", "baseline_loss", "mean_reward"}
    assert int(s1.step) == 3
    diff = jax.tree.leaves(jax.tree.map(lambda a, b: jnp.max(jnp.abs(a - b)), s1.params,
                                        s2.params))
    assert max(float(d) for d in diff) > 0  # hparams are live
    s4, _ = train(jax.random.key(2), hp)
    diff = jax.tree.leaves(jax.tree.map(lambda a, b: jnp.max(jnp.abs(a - b)), s1.params,
                                        s4.params))
    assert max(float(d) for d in diff) > 0


def test_update_float64(x64):
    agent, hp = tiny(n_envs=8)
    st = agent.init(jax.random.key(0), hp)
    st, m = jax.jit(agent.update)(jax.random.key(1), st, hp)
    assert m["loss"].dtype == jnp.float64 and bool(jnp.isfinite(m["loss"]))
    assert all(x.dtype == jnp.float64 for x in jax.tree.leaves(st.params))


def _n_eqns(agent, hp):
    st = jax.eval_shape(agent.init, jax.random.key(0), hp)

    def count(jaxpr):
        n = 0
        for eqn in jaxpr.eqns:
            n += 1
            for sub in jax.extend.core.jaxprs_in_params(eqn.params):
                n += count(sub)
        return n

    return count(jax.make_jaxpr(agent.update)(jax.random.key(0), st, hp).jaxpr)


def test_no_python_loop_over_steps_or_continuations():
    """The traced program has the same size for RS = 4 or 64 and for N = 4 or 9."""
    agent, hp = tiny()
    base = _n_eqns(agent, hp)
    assert _n_eqns(tiny(n_continuations=64)[0], hp) == base
    assert _n_eqns(tiny(n_steps=9)[0], hp) == base


# ----------------------------------------------------------------------------- robustness
@functools.partial(jax.jit, static_argnames=("agent", "n_updates"))
def _finite_sweep(agent, hp, seeds, n_updates):
    """init + n_updates per seed, vmapped over seeds: (all losses finite, all params finite).

    ``hp`` is a traced argument, so sweeping hparam values does not recompile.
    """

    def one(seed):
        key = jax.random.key(seed)
        k_init, k_train = jax.random.split(key)
        st = agent.init(k_init, hp)
        st, m = jax.lax.scan(lambda s, k: agent.update(k, s, hp), st,
                             jax.random.split(k_train, n_updates))
        finite_p = jnp.all(jnp.stack([jnp.all(jnp.isfinite(x))
                                      for x in jax.tree.leaves(st.params)]))
        finite_m = jnp.all(jnp.stack([jnp.all(jnp.isfinite(v)) for v in m.values()]))
        return finite_m, finite_p, m["loss"]

    return jax.vmap(one)(seeds)


@pytest.mark.slow  # ~28 s; the fast suite keeps test_extreme_contracts_finite
def test_paper_distribution_finite_seeds_0_19():
    """Paper preset networks and contract distribution (sigma down to 0.01, K/S0 in
    [0.3, 1.7], mu ~ N(0, 1)), reduced n_envs/RS; also 10x the paper learning rate."""
    agent, hp = load_job("adaptive-qlbs", "paper",
                         overrides=["agent.n_envs=64", "agent.n_continuations=16"]).build()
    for lr in (1e-4, 1e-3):
        fm, fp, loss = _finite_sweep(agent, hp.replace(learning_rate=lr), jnp.arange(20), 3)
        assert bool(jnp.all(fm)) and bool(jnp.all(fp)), (lr, np.asarray(loss))


def test_extreme_contracts_finite():
    """The corners the reference diverged on: sigma = 0.01, K/S0 = 0.3/1.7 and 1.7/0.3."""
    agent, hp = tiny()
    for s0, k in ((1.7, 0.3), (0.3, 1.7), (1.0, 1.0)):
        h = with_contracts(hp, sigma_lo=0.01, sigma_hi=0.0100001, s0_lo=s0, s0_hi=s0,
                           strike_lo=k, strike_hi=k, mu_std=3.0)
        fm, fp, _ = _finite_sweep(agent, h.replace(learning_rate=1e-2), jnp.arange(4), 3)
        assert bool(jnp.all(fm)) and bool(jnp.all(fp)), (s0, k)


@pytest.mark.slow
def test_paper_preset_finite_seeds_0_99_full_size():
    """Real paper sizes (2,500 envs x 200 continuations), seeds 0..99, 2 updates each.

    ~9 s per update per seed on 2 CPU cores, i.e. ~30 min: run it on a GPU. Seeds are
    vmapped in groups of 4 (lax.map with batch_size) to bound memory.
    """
    agent, hp = load_job("adaptive-qlbs", "paper").build()

    def one(seed):
        fm, fp, _ = _finite_sweep.__wrapped__(agent, hp, seed[None], 2)
        return fm[0], fp[0]

    fm, fp = jax.jit(lambda s: jax.lax.map(one, s, batch_size=4))(jnp.arange(100))
    assert bool(jnp.all(fm)) and bool(jnp.all(fp))


# ----------------------------------------------------------------------------- API
def obs_grid(spot, strike, sigma, tau=28 / 252):
    spot, strike, sigma = np.broadcast_arrays(*(np.asarray(x, np.float32)
                                                for x in (spot, strike, sigma)))
    f = lambda x: jnp.broadcast_to(jnp.asarray(x, jnp.float32), spot.shape)
    return Observation(spot=f(spot), strike=f(strike), time_to_maturity=f(tau), elapsed=f(0.0),
                       rate=f(0.0), div_yield=f(0.0), drift=f(0.0), vol=f(sigma), cost=f(0.0),
                       cost_multiplier=f(1.0), position=f(0.0))


def contract_grid(s0, strike, sigma, tau=28 / 252, n_steps=4, **kw):
    """A batched Contract (numeric leaves broadcast to one grid), cost 0 unless given."""
    s0, strike, sigma = np.broadcast_arrays(*(np.asarray(x, np.float32)
                                              for x in (s0, strike, sigma)))
    return Contract(s0=s0, strike=strike, maturity=tau, sigma=sigma, cost=kw.pop("cost", 0.0),
                    n_steps=n_steps, **kw)


def test_price_head_is_bs_at_policy_mean_in_strike_units():
    """price(state, hp, contract) = K C_BS(S/K, 1, T, r; sigma_hat) with sigma_hat the policy
    mean read in strike units (as in training); batched leaves; money units scale with (S, K)."""
    agent, hp = tiny()
    st = agent.init(jax.random.key(0), hp)
    spot, strike = np.array([[0.9], [1.0], [1.2]]), np.array([0.8, 1.0, 1.1, 1.5])
    c = contract_grid(spot, strike, 0.25, rate=0.03, mu=0.1, cost=0.004)
    p = agent.price(st, hp, c)
    assert p.shape == (3, 4)
    obs = obs_grid(spot / strike, 1.0, 0.25)
    obs = obs.replace(rate=obs.rate + 0.03, drift=obs.drift + 0.1, cost=obs.cost + 0.004)
    iv = agent.implied_vol(st, obs)
    want = strike * np.asarray(bs_price(spot / strike, 1.0, 28 / 252, 0.03, iv))
    np.testing.assert_allclose(np.asarray(p), want, rtol=1e-5)
    # the policy sees scale-free inputs: a 100x contract is priced 100x (to float32 rounding)
    big = c.replace(s0=c.s0 * 100, strike=c.strike * 100)
    np.testing.assert_allclose(np.asarray(agent.price(st, hp, big)), 100 * np.asarray(p),
                               rtol=1e-5)
    # jittable (contract leaves traced); the option type must be the agent's
    np.testing.assert_allclose(np.asarray(jax.jit(agent.price)(st, hp, c)), np.asarray(p),
                               rtol=1e-6)
    with pytest.raises(ValueError, match="contract.option"):
        agent.price(st, hp, c.replace(option="put"))


def test_evaluation_contract_is_the_distribution_centre():
    """The centre of hp.contracts with this agent's ledger (no entry cost, unwind charged); its
    price is the price head's at that contract."""
    agent, hp = tiny(option="put")
    hp = with_contracts(hp, s0_lo=0.9, s0_hi=1.3, strike_lo=0.8, strike_hi=1.0, sigma_lo=0.1,
                        sigma_hi=0.3, cost_lo=0.0, cost_hi=0.01, rate=0.02, mu_mean=0.05)
    c = agent.evaluation_contract(hp)
    assert isinstance(c, Contract)
    assert (c.n_steps, c.option, c.charge_entry, c.charge_unwind) == (4, "put", False, True)
    np.testing.assert_allclose([c.s0, c.strike, c.sigma, c.cost, c.rate, c.mu, c.maturity],
                               [1.1, 0.9, 0.2, 0.005, 0.02, 0.05, 4 * 7 / 252], rtol=1e-12)
    st = agent.init(jax.random.key(0), hp)
    p = agent.price(st, hp, c)
    direct = agent.price(st, hp, contract_grid(1.1, 0.9, 0.2, 4 * 7 / 252, 4, option="put",
                                               rate=0.02, mu=0.05, cost=0.005))
    assert p.shape == () and np.isfinite(float(p))
    np.testing.assert_allclose(float(p), float(direct), rtol=1e-6)


def test_hedger_works_with_rollout():
    agent, hp = tiny()
    st = agent.init(jax.random.key(0), hp)
    hedger = agent.hedger(st, hp)
    assert isinstance(hedger, LatentVolPolicy)
    env = HedgingEnv(EnvConfig(market="gbm", n_steps=4))
    params = env.default_params(GBMParams(s0=100.0, mu=0.0, sigma=0.2), strike=100.0,
                                maturity=28 / 252)
    out = rollout(jax.random.key(3), env, params, hedger, 64)
    assert out.pnl.shape == (64,) and bool(jnp.all(jnp.isfinite(out.pnl)))


def test_toml_presets():
    """The presets are TOML only (experiments/adaptive_qlbs/*.toml, AdaptiveQLBSJob): the paper
    numbers, the paper distribution is PAPER_CONTRACTS (the hparams default), overrides of
    nested fields, strict keys and the distribution's range checks."""
    paper = load_job("adaptive-qlbs", "paper")
    assert isinstance(paper, AdaptiveQLBSJob)
    agent, hp = paper.build()
    assert (agent.n_envs, agent.n_steps, agent.n_continuations) == (2500, 4, 200)
    d = hp.contracts
    np.testing.assert_allclose(agent.n_steps * d.dt, 28 / 252)
    np.testing.assert_allclose([hp.learning_rate, hp.risk_aversion, d.sigma_lo, d.sigma_hi,
                                d.strike_lo, d.strike_hi, d.s0_lo, d.s0_hi, d.cost_lo, d.cost_hi,
                                d.mu_mean, d.mu_std, d.rate],
                               [1e-4, 0.02, 0.01, 1.01, 0.3, 1.7, 0.3, 1.7, 0.0, 0.01, 0.0, 1.0,
                                0.0])
    chex.assert_trees_all_close(hp, agent.default_hparams())
    chex.assert_trees_all_close(d, PAPER_CONTRACTS)
    assert paper.train.n_steps >= 1
    smoke = load_job("adaptive-qlbs", "smoke")
    assert smoke.agent.n_envs < agent.n_envs and smoke.train.n_steps >= 1
    chex.assert_trees_all_close(smoke.hparams.contracts, PAPER_CONTRACTS)
    over = load_job("adaptive-qlbs", config=PRESET_DIR / "paper.toml",
                    overrides=["hparams.risk_aversion=0.5", "agent.n_continuations=8",
                               "hparams.contracts.sigma_hi=0.5"])
    assert over.hparams.risk_aversion == 0.5 and over.agent.n_continuations == 8
    assert over.hparams.contracts.sigma_hi == 0.5 and over.hparams.contracts.sigma_lo == 0.01
    with pytest.raises(ValueError, match="n_continuation"):
        load_job("adaptive-qlbs", "paper", overrides=["agent.n_continuation=8"])
    with pytest.raises(ValueError, match=r"hparams\.contracts\.cost_hio: unknown key"):
        load_job("adaptive-qlbs", "paper", overrides=["hparams.contracts.cost_hio=0.1"])
    with pytest.raises(ValueError, match="hparams.contracts.sigma_lo"):
        load_job("adaptive-qlbs", "paper", overrides=["hparams.contracts.sigma_lo=2.0"])
    with pytest.raises(ValueError, match="preset"):
        load_job("adaptive-qlbs", "nope")


def test_smoke_preset_trains_fast_and_finite():
    agent, hp = load_job("adaptive-qlbs", "smoke").build()

    @jax.jit
    def train(key):
        st = agent.init(key, hp)
        return jax.lax.scan(lambda s, k: agent.update(k, s, hp), st,
                            jax.random.split(key, 100))

    st, m = train(jax.random.key(0))
    assert bool(jnp.all(jnp.isfinite(m["loss"])))
    # the baseline regression makes progress (the policy signal itself is weak, see module)
    assert float(jnp.mean(m["baseline_loss"][-20:])) < float(jnp.mean(m["baseline_loss"][:5]))


# ----------------------------------------------------------------------------- Proposition 1
def test_mc_value_non_decreasing_in_lambda():
    """Proposition 1 on the Definition-1 value: two agents trained at lambda = 0.02 and 2,
    each evaluated at its own lambda on common random numbers: C(2) >= C(0.02)."""
    agent, hp = tiny(n_envs=64, n_continuations=32, step_penalty_dt=False)
    hp = with_contracts(hp, mu_std=0.0, sigma_lo=0.15, sigma_hi=0.35, strike_lo=0.9,
                        strike_hi=1.1, s0_lo=0.95, s0_hi=1.05, cost_hi=0.0)
    contracts = contract_batch(s0=1.0, strike=1.0, mu=0.0, sigma=np.linspace(0.15, 0.35, 64),
                               cost=0.0)

    @jax.jit
    def train_eval(lam):
        h = hp.replace(risk_aversion=lam)
        st = agent.init(jax.random.key(0), h)
        st, _ = jax.lax.scan(lambda s, k: agent.update(k, s, h), st,
                             jax.random.split(jax.random.key(1), 20))
        return agent.mc_value(jax.random.key(7), st, h, contracts)

    lo, hi = np.asarray(train_eval(0.02)), np.asarray(train_eval(2.0))
    assert np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))
    assert hi.mean() > lo.mean()
    assert np.mean(hi >= lo) > 0.9


def test_mc_value_non_decreasing_in_eps():
    """Proposition 1 in the cost: agents trained at eps = 0, 0.005, 0.01, each evaluated at its
    own eps on common random numbers, price C(eps) = -V_0 non-decreasing. (METHODS says "for
    large enough eps": the cost term eps E[sum |du| S] grows with eps for any policy, while the
    std part may move either way; at these sizes the cost term dominates. Measured mean C:
    0.0917, 0.0951, 0.0986 (BS ~0.04 plus lambda sum std), C(eps) above C(previous eps) on
    every contract.)"""
    agent, hp = tiny(n_envs=64, n_continuations=32, step_penalty_dt=False)
    hp = with_contracts(hp, mu_std=0.0, sigma_lo=0.15, sigma_hi=0.35, strike_lo=0.9,
                        strike_hi=1.1, s0_lo=0.95, s0_hi=1.05, risk_aversion=1.0)
    sig = np.linspace(0.15, 0.35, 64)

    @jax.jit
    def train_eval(eps):
        h = with_contracts(hp, cost_lo=eps, cost_hi=eps)
        st = agent.init(jax.random.key(0), h)
        st, _ = jax.lax.scan(lambda s, k: agent.update(k, s, h), st,
                             jax.random.split(jax.random.key(1), 20))
        return agent.mc_value(jax.random.key(7), st, h,
                              contract_batch(s0=1.0, strike=1.0, mu=0.0, sigma=sig, cost=eps))

    c = [np.asarray(train_eval(e)) for e in (0.0, 0.005, 0.01)]
    assert all(np.all(np.isfinite(x)) for x in c)
    for lo, hi in zip(c[:-1], c[1:]):
        assert hi.mean() > lo.mean(), [x.mean() for x in c]
        assert np.mean(hi >= lo) > 0.9, np.mean(hi >= lo)


# ----------------------------------------------------------------------------- learning
def _learning_setup():
    """Narrow distribution, eps = 0, mu = r = 0: the optimal hedge is ~ the BS delta at sigma,
    so sigma_hat -> sigma and the price head -> BS. The only learning signal at mu = r is the
    std penalty, which is second order in the hedge error; with the paper's lambda dt =
    0.02 * 7/252 it is ~1e-6 per step against ~1e-3 of reward noise and nothing is learned
    (measured: sigma_hat stays ~1.0 after 1,000 updates). Hence lambda = 5 without the dt
    factor here."""
    agent = AdaptiveQLBS(n_envs=512, n_continuations=64, width=32, n_blocks=2,
                         layers_per_block=2, step_penalty_dt=False, risk_aversion=5.0)
    hp = with_contracts(
        agent.default_hparams(), mu_std=0.0, sigma_lo=0.15, sigma_hi=0.35, strike_lo=0.9,
        strike_hi=1.1, s0_lo=0.95, s0_hi=1.05, cost_lo=0.0, cost_hi=0.0, learning_rate=3e-4)
    return agent, hp


def _train(agent, hp, key, n_updates):
    """init, then ``n_updates`` updates under one jitted ``lax.scan``: (state, metrics)."""

    @jax.jit
    def train(key):
        k_init, k_train = jax.random.split(key)
        st = agent.init(k_init, hp)
        return jax.lax.scan(lambda s, k: agent.update(k, s, hp), st,
                            jax.random.split(k_train, n_updates))

    return train(key)


@pytest.fixture(scope="module")
def trained():
    agent, hp = _learning_setup()
    st, m = _train(agent, hp, jax.random.key(0), 1500)
    return agent, hp, st, m


@pytest.mark.slow
def test_learns_toward_bs_vol(trained):
    """1,500 updates (~1.5-3 min on 2 CPU cores): the t = 0 policy-mean vol moves from ~0.6
    mean abs error to < 0.3 and the price-head error vs BS halves (measured 0.073 and 0.0078
    vs ~0.6 and ~0.07 at the start, strike units)."""
    agent, hp, st, m = trained
    assert bool(jnp.all(jnp.isfinite(m["loss"])))
    start_err = float(jnp.mean(m["mean_vol_err0"][:50]))
    end_err = float(jnp.mean(m["mean_vol_err0"][-200:]))
    assert start_err > 0.4 and end_err < 0.3, (start_err, end_err)
    start_p = float(jnp.mean(m["price_mae0"][:50]))
    end_p = float(jnp.mean(m["price_mae0"][-200:]))
    assert end_p < 0.5 * start_p, (start_p, end_p)


def test_pathwise_estimator_learns_the_vol_reinforce_does_not():
    """Same narrow eps = 0 setup, 200 updates each: differentiating -V_0 through the
    continuations (pathwise) moves sigma_hat to the contract's sigma; REINFORCE's
    score-function gradient of the same objective barely moves it (measured: pathwise mean
    |sigma_hat - sigma| 0.68 -> 0.054 (0.055 before Rao-Blackwellisation became the default),
    REINFORCE 0.78 -> 0.68)."""
    ends = {}
    for est in ("pathwise", "reinforce"):
        agent = AdaptiveQLBS(n_envs=128, n_continuations=16, width=16, n_blocks=1,
                             layers_per_block=1, baseline_width=16, estimator=est,
                             step_penalty_dt=False, risk_aversion=1.0)
        hp = with_contracts(
            agent.default_hparams(), mu_std=0.0, sigma_lo=0.15, sigma_hi=0.35, strike_lo=0.9,
            strike_hi=1.1, s0_lo=0.95, s0_hi=1.05, cost_lo=0.0, cost_hi=0.0, learning_rate=3e-3)
        _, m = _train(agent, hp, jax.random.key(0), 200)
        assert bool(jnp.all(jnp.isfinite(m["loss"])))
        assert float(jnp.mean(m["mean_vol_err0"][:10])) > 0.4
        ends[est] = float(jnp.mean(m["mean_vol_err0"][-20:]))
    assert ends["pathwise"] < 0.1, ends
    assert ends["pathwise"] < 0.25 * ends["reinforce"], ends


def _pathwise_price_setup(n_steps=8, n_envs=16, n_updates=3000):
    """The setup of :func:`test_price_within_5pct_of_bs` (docs/adaptive_qlbs.md says why each
    piece): pathwise estimator, standardised policy inputs, RS = 64 continuations (RS = 16
    biases the sample-std objective: sigma_hat 3-6 % low), Rao-Blackwellised mean terms,
    cosine learning-rate decay over the run; N = 8 dates over the paper's T = 28/252 (at the
    paper's N = 4 the std-optimal price itself is +4.2 % off BS at sigma = 0.3, K = 1.05)."""
    agent = AdaptiveQLBS(n_envs=n_envs, n_steps=n_steps, n_continuations=64, width=16,
                         n_blocks=1, layers_per_block=1, baseline_width=16,
                         estimator="pathwise", step_penalty_dt=False, risk_aversion=1.0,
                         rao_blackwell=True, standardize_features=True,
                         lr_decay_steps=n_updates)
    hp = with_contracts(
        agent.default_hparams(), dt=28 / 252 / n_steps, mu_std=0.0, sigma_lo=0.15,
        sigma_hi=0.35, strike_lo=0.9, strike_hi=1.1, s0_lo=0.95, s0_hi=1.05, cost_lo=0.0,
        cost_hi=0.0, learning_rate=3e-3)
    return agent, hp


@pytest.mark.slow
def test_price_within_5pct_of_bs():
    """eps = 0, mu = r = 0: the trained price head C_BS(sigma_hat) is within 5 % of
    Black-Scholes on sigma in {0.2, 0.25, 0.3} x K in {0.95, 1, 1.05} (S = 1, tau = 28/252).

    Why N = 8 and not the paper's 4 weekly dates: the std penalty's optimal hedge is the
    local-risk-minimising one, whose implied vol is not sigma. At N = 4 its BS price is +4.2 %
    off at (0.3, 1.05) (+25 % at the money, where the objective is flat in the vol and sigma_hat
    follows the network's fit instead), so 5 % is within training noise of the optimum: N = 4
    runs of this setup gave max errors 3.4 %, 4.4 %, 9.1 % (keys 0, 1, 2). At N = 8 the optimum
    is within 2.1 % off the money (+12.5 % ATM, flat). docs/adaptive_qlbs.md has the table.

    Setup :func:`_pathwise_price_setup`, 3,000 updates of 16 envs x 64 continuations x 8 dates
    (~110 s on 2 loaded CPU cores, compile included). Measured C/C_BS - 1 (%), rows sigma =
    0.2, 0.25, 0.3, columns K = 0.95, 1, 1.05, this test (key 0): [0.0, -1.1, 2.5],
    [-0.1, 1.2, 2.8], [0.9, 0.1, 0.1]. Keys 1 and 2: max 4.7 % (sigma_hat 4.7 % low ATM at
    sigma = 0.25) and 3.4 %: the bound holds with a margin of about the seed-to-seed spread.
    Before (N = 4; REINFORCE, 1,500 updates): 8-99 %; plain pathwise (raw inputs, RS = 16,
    constant rate): -15.6 % to +7.7 %.

    lambda: with eps = mu = r = 0 and the Rao-Blackwellised mean terms the pathwise loss is
    lambda x (sum of stds), and Adam is invariant to that scale, so lambda = 1 here trains
    like any small lambda (the paper's lambda dt = 5.6e-4 was measured to train the same).
    """
    agent, hp = _pathwise_price_setup()
    st, m = _train(agent, hp, jax.random.key(0), agent.lr_decay_steps)
    assert bool(jnp.all(jnp.isfinite(m["loss"])))
    sig, K = np.meshgrid([0.2, 0.25, 0.3], [0.95, 1.0, 1.05], indexing="ij")
    grid = contract_grid(1.0, K, sig, n_steps=agent.n_steps)
    p = np.asarray(agent.price(st, hp, grid))
    bs = np.asarray(bs_price(1.0, K, 28 / 252, 0.0, sig))
    # it learned: the untrained head (sigma_hat ~ 1) is far off, so the bound is not free
    p0 = np.asarray(agent.price(agent.init(jax.random.split(jax.random.key(0))[0], hp), hp,
                                grid))
    assert np.max(np.abs(p0 / bs - 1)) > 0.5
    assert np.max(np.abs(p / bs - 1)) < 0.05, np.round(100 * (p / bs - 1), 1)
