"""Adaptive-QLBS (METHODS §4.2): the reward formula against an independent numpy computation,
a pure/jittable/scannable/deterministic update with no Python loop over steps or
continuations, robustness (finite everything) on the paper's contract distribution, the
price head, the presets, and Proposition 1 (price non-decreasing in lambda).
"""
import functools
import pathlib

import chex
import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import pytest

from jaxhedge.agents.adaptive_qlbs import (PRESETS, AdaptiveQLBS, load_preset,
                                           make_contracts, portfolio_values, presets,
                                           step_reward)
from jaxhedge.agents.latent_vol import LatentVolPolicy
from jaxhedge.env import EnvConfig, HedgingEnv, Observation
from jaxhedge.markets import GBMParams
from jaxhedge.pricing import bs_price
from jaxhedge.rollout import rollout

PRESET_DIR = pathlib.Path(__file__).resolve().parents[2] / "experiments" / "adaptive_qlbs"


def tiny(**kw):
    base = dict(n_envs=16, n_steps=4, n_continuations=4, width=8, n_blocks=1,
                layers_per_block=1, baseline_width=8)
    base.update(kw)
    agent = AdaptiveQLBS(**base)
    _, paper_hp = AdaptiveQLBS.preset("paper")
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


def test_rollout_reward_is_step_reward_on_its_continuations():
    """Zero vol: continuations are deterministic, so r_t is known in closed form.

    With sigma ~ 0 and mu = r = 0, eps = 0 every continuation stays at S_t, Pi_t = h(S_t)
    for any hedge, std = 0, and r_t = (1 - (t+1)/N) h - (1 - t/N) h = -h/N.
    """
    agent, hp = tiny()
    hp = hp.replace(mu_std=0.0, sigma_lo=1e-6, sigma_hi=2e-6, cost_hi=0.0,
                    s0_lo=1.2, s0_hi=1.2, strike_lo=1.0, strike_hi=1.0)
    st = agent.init(jax.random.key(0), hp)
    c = agent.sample_contracts(jax.random.key(1), hp)
    ep = jax.jit(lambda k, p: agent.episode(k, p, st, hp, c))(jax.random.key(2),
                                                               st.params["policy"])
    assert ep["reward"].shape == (agent.n_envs, agent.n_steps)
    np.testing.assert_allclose(np.asarray(ep["reward"]), -0.2 / agent.n_steps, atol=2e-5)


def test_continuations_fix_u_t_then_follow_policy_mean():
    """Zero vol with costs: each continuation stays at S_t, so the reward depends only on the
    hedges; rebuild them independently (u_t from the episode, then the policy mean with the
    previous hedge as position) and recompute r_t in numpy."""
    agent, hp = tiny(n_envs=6)
    hp = hp.replace(mu_std=0.0, sigma_lo=1e-6, sigma_hi=2e-6, cost_lo=0.05, cost_hi=0.05,
                    s0_lo=0.8, s0_hi=1.2, strike_lo=1.0, strike_hi=1.0, rate=0.05)
    st = agent.init(jax.random.key(0), hp)
    c = agent.sample_contracts(jax.random.key(1), hp)
    ep = jax.jit(lambda k, p: agent.episode(k, p, st, hp, c))(jax.random.key(2),
                                                               st.params["policy"])
    hedger = agent.hedger(st, hp)
    n, dt = agent.n_steps, float(hp.dt)
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


def test_paper_distribution_finite_seeds_0_19():
    """Paper preset networks and contract distribution (sigma down to 0.01, K/S0 in
    [0.3, 1.7], mu ~ N(0, 1)), reduced n_envs/RS; also 10x the paper learning rate."""
    agent, hp = AdaptiveQLBS.preset("paper")
    agent = AdaptiveQLBS(**{**PRESETS["paper"][0], "n_envs": 64, "n_continuations": 16})
    for lr in (1e-4, 1e-3):
        fm, fp, loss = _finite_sweep(agent, hp.replace(learning_rate=lr), jnp.arange(20), 3)
        assert bool(jnp.all(fm)) and bool(jnp.all(fp)), (lr, np.asarray(loss))


def test_extreme_contracts_finite():
    """The corners the reference diverged on: sigma = 0.01, K/S0 = 0.3/1.7 and 1.7/0.3."""
    agent, hp = tiny()
    for s0, k in ((1.7, 0.3), (0.3, 1.7), (1.0, 1.0)):
        h = hp.replace(sigma_lo=0.01, sigma_hi=0.0100001, s0_lo=s0, s0_hi=s0, strike_lo=k,
                       strike_hi=k, mu_std=3.0)
        fm, fp, _ = _finite_sweep(agent, h.replace(learning_rate=1e-2), jnp.arange(4), 3)
        assert bool(jnp.all(fm)) and bool(jnp.all(fp)), (s0, k)


@pytest.mark.slow
def test_paper_preset_finite_seeds_0_99_full_size():
    """Real paper sizes (2,500 envs x 200 continuations), seeds 0..99, 2 updates each.

    ~9 s per update per seed on 2 CPU cores, i.e. ~30 min: run it on a GPU. Seeds are
    vmapped in groups of 4 (lax.map with batch_size) to bound memory.
    """
    agent, hp = AdaptiveQLBS.preset("paper")

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


def test_price_head_is_bs_at_policy_mean_and_scale_free():
    agent, hp = tiny()
    st = agent.init(jax.random.key(0), hp)
    obs = obs_grid(np.array([[0.9], [1.0], [1.2]]), np.array([0.8, 1.0, 1.1, 1.5]), 0.25)
    p = agent.price(st, hp, obs)
    assert p.shape == (3, 4)
    iv = agent.implied_vol(st, obs)
    np.testing.assert_allclose(np.asarray(p),
                               np.asarray(bs_price(obs.spot, obs.strike, obs.time_to_maturity,
                                                   0.0, iv)), rtol=1e-6)
    # money units: scaling S and K by 100 scales the price by 100
    big = obs.replace(spot=obs.spot * 100, strike=obs.strike * 100)
    np.testing.assert_allclose(np.asarray(agent.price(st, hp, big)), 100 * np.asarray(p),
                               rtol=2e-4, atol=1e-6)


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


def test_presets_and_toml_agree():
    ps = presets()
    assert set(ps) >= {"paper", "smoke"}
    agent, hp = ps["paper"]
    assert (agent.n_envs, agent.n_steps, agent.n_continuations) == (2500, 4, 200)
    np.testing.assert_allclose(agent.n_steps * hp.dt, 28 / 252)
    np.testing.assert_allclose([hp.learning_rate, hp.risk_aversion, hp.sigma_lo, hp.sigma_hi,
                                hp.strike_lo, hp.strike_hi, hp.s0_lo, hp.s0_hi, hp.cost_hi,
                                hp.mu_mean, hp.mu_std],
                               [1e-4, 0.02, 0.01, 1.01, 0.3, 1.7, 0.3, 1.7, 0.01, 0.0, 1.0])
    for name in ("paper", "smoke"):
        pre = load_preset(name)
        a, h = pre.build()
        a2, h2 = AdaptiveQLBS.preset(name)
        assert a == a2
        chex.assert_trees_all_close(h, h2)
        assert pre.train.n_steps >= 1
    pre = load_preset(PRESET_DIR / "paper.toml", ["hparams.risk_aversion=0.5",
                                                  "agent.n_continuations=8"])
    assert pre.hparams.risk_aversion == 0.5 and pre.agent.n_continuations == 8
    with pytest.raises(ValueError, match="n_continuation"):
        load_preset("paper", ["agent.n_continuation=8"])
    with pytest.raises(ValueError, match="unknown"):
        AdaptiveQLBS.preset("nope")


def test_smoke_preset_trains_fast_and_finite():
    agent, hp = AdaptiveQLBS.preset("smoke")

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
    hp = hp.replace(mu_std=0.0, sigma_lo=0.15, sigma_hi=0.35, strike_lo=0.9, strike_hi=1.1,
                    s0_lo=0.95, s0_hi=1.05, cost_hi=0.0)
    contracts = make_contracts(0.0, np.linspace(0.15, 0.35, 64), 1.0, 1.0, 0.0)

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
    hp = agent.default_hparams().replace(
        mu_std=0.0, sigma_lo=0.15, sigma_hi=0.35, strike_lo=0.9, strike_hi=1.1, s0_lo=0.95,
        s0_hi=1.05, cost_lo=0.0, cost_hi=0.0, learning_rate=3e-4)
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
    |sigma_hat - sigma| 0.68 -> 0.055, REINFORCE 0.78 -> 0.68)."""
    ends = {}
    for est in ("pathwise", "reinforce"):
        agent = AdaptiveQLBS(n_envs=128, n_continuations=16, width=16, n_blocks=1,
                             layers_per_block=1, baseline_width=16, estimator=est,
                             step_penalty_dt=False, risk_aversion=1.0)
        hp = agent.default_hparams().replace(
            mu_std=0.0, sigma_lo=0.15, sigma_hi=0.35, strike_lo=0.9, strike_hi=1.1,
            s0_lo=0.95, s0_hi=1.05, cost_lo=0.0, cost_hi=0.0, learning_rate=3e-3)
        _, m = _train(agent, hp, jax.random.key(0), 200)
        assert bool(jnp.all(jnp.isfinite(m["loss"])))
        assert float(jnp.mean(m["mean_vol_err0"][:10])) > 0.4
        ends[est] = float(jnp.mean(m["mean_vol_err0"][-20:]))
    assert ends["pathwise"] < 0.1, ends
    assert ends["pathwise"] < 0.25 * ends["reinforce"], ends


@pytest.mark.slow
@pytest.mark.xfail(reason="not reached: after 1,500 REINFORCE updates the price head is 8-99% "
                   "above BS on this grid (sigma_hat 0.28-0.39, weakly identified by the std "
                   "penalty); the pathwise estimator gets within -2.5% to -15.6% (400 updates, "
                   "mean |sigma_hat - sigma| 0.011): with 4 weekly hedges the variance-optimal "
                   "hedge is not the BS delta at sigma, so its vol is not sigma", strict=False)
def test_price_within_5pct_of_bs(trained):
    agent, hp, st, _ = trained
    sig, K = np.meshgrid([0.2, 0.25, 0.3], [0.95, 1.0, 1.05], indexing="ij")
    obs = obs_grid(1.0, K, sig)
    p = np.asarray(agent.price(st, hp, obs))
    bs = np.asarray(bs_price(1.0, K, 28 / 252, 0.0, sig))
    assert np.max(np.abs(p / bs - 1)) < 0.05, np.abs(p / bs - 1)
