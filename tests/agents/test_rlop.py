"""RLOP (METHODS §4.3): stacked-expiry replication, per-sample REINFORCE, pathwise estimator.

Fast tests check the mechanics against independent numpy code; the learning tests (slow)
check that the hedge approaches the BS delta and the price the BS price at zero cost, that the
shortfall-probability objective lowers the held-out shortfall probability, and that the
pathwise estimator needs fewer samples than REINFORCE. Held-out evaluations use keys never
used in training and the same key for every hedger compared (common random numbers).
"""
import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import norm

from jaxhedge import ledger, risk
from jaxhedge.agents import rlop
from jaxhedge.agents.latent_vol import LatentVolPolicy, delta_at_vol, price_at_vol
from jaxhedge.contracts import Contract, ContractDistribution, same_contract
from jaxhedge.env import EnvConfig, HedgingEnv, Observation
from jaxhedge.markets import GBMParams
from jaxhedge.rollout import rollout
from jaxhedge.train.jobs import load_job
from jaxhedge.train.loop import fit

HELD_OUT = jax.random.key(2024)


def smoke(**agent_overrides):
    """The smoke preset (experiments/rlop/smoke.toml) with agent fields overridden."""
    agent, hp = load_job("rlop", "smoke").build()
    return dataclasses.replace(agent, **agent_overrides), hp


def with_contracts(hp, **fields):
    return hp.replace(contracts=hp.contracts.replace(**fields))


def tiny(**kw):
    """A very small agent (fast compile) on the smoke distribution."""
    base = dict(n_envs=13, n_steps=4, width=8, n_blocks=1, layers_per_block=1, price_width=8,
                baseline_widths=(8,))
    base.update(kw)
    return smoke(**base)


# ------------------------------------------------------------------ numpy references
def np_bs_delta(s, k, tau, r, vol):
    d1 = (np.log(s / k) + (r + 0.5 * vol**2) * tau) / (vol * np.sqrt(tau))
    return norm.cdf(d1)


def np_stacked(spots, premiums, k, r, dt, eps, vol, reverse=False):
    """Independent loop: portfolio i (1..N) hedged at t < i with the BS delta at remaining time
    (i - t) dt (or, with ``reverse``, the published code's reversed pairing), no entry cost,
    unwind charged at expiry; returns Pi_i^(i), shape (n, N)."""
    n, n1 = spots.shape
    big_n = n1 - 1
    out = np.zeros((n, big_n))
    for p in range(n):
        for i in range(1, big_n + 1):
            pi = premiums[p, i - 1]
            u_prev = 0.0
            for t in range(i):
                tau = ((big_n - i + 1 + t) if reverse else (i - t)) * dt
                u = np_bs_delta(spots[p, t], k, tau, r, vol)
                if t > 0:
                    pi -= eps * abs(u - u_prev) * spots[p, t]
                pi = math.exp(r * dt) * (pi - u * spots[p, t]) + u * spots[p, t + 1]
                u_prev = u
            pi -= eps * abs(u_prev) * spots[p, i]  # unwind at expiry
            out[p, i - 1] = pi
    return out


# ------------------------------------------------------------------ mechanics
def test_stacked_replication_pairs_each_portfolio_with_its_own_remaining_time():
    spots = np.array([[1.00, 1.03, 0.98, 1.05, 1.01],
                      [0.90, 0.85, 0.95, 1.10, 1.20]])
    n, big_n = spots.shape[0], spots.shape[1] - 1
    k, r, dt, eps, vol = 1.0, 0.05, 1 / 12, 0.01, 0.3
    premiums = np.array([[0.02, 0.03, 0.04, 0.05], [0.01, 0.02, 0.03, 0.035]])
    rep = rlop.stacked_replication(
        jnp.asarray(spots, jnp.float32), jnp.asarray(premiums, jnp.float32), k, r, dt,
        ledger.CostModel(proportional=eps),
        lambda key, obs: (delta_at_vol(obs, obs.vol), obs.time_to_maturity), vol=vol)
    want = np_stacked(spots, premiums, k, r, dt, eps, vol)
    np.testing.assert_allclose(np.asarray(rep.terminal), want, rtol=0, atol=2e-6)
    # the remaining time each active hedge saw is (i - t) dt
    t = np.arange(big_n)[:, None]
    i = np.arange(1, big_n + 1)[None, :]
    active = i > t
    np.testing.assert_array_equal(np.asarray(rep.active), active)
    tau = np.asarray(rep.tau)  # (N_t, n, N)
    np.testing.assert_allclose(tau[:, 0][active], ((i - t) * dt)[active], rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(rep.hedges)[:, :, :][~np.broadcast_to(
        active[:, None, :], tau.shape)], 0.0)
    np.testing.assert_allclose(np.asarray(rep.payoff), np.maximum(spots[:, 1:] - k, 0), atol=1e-6)
    # the reversed pairing of the published code gives a visibly different answer
    wrong = np_stacked(spots, premiums, k, r, dt, eps, vol, reverse=True)
    assert np.max(np.abs(wrong - want)) > 1e-3


def test_stacked_replication_without_costs_is_discounted_self_financing():
    """eps = 0: Pi_i = e^{r i dt} Pi_0 + sum_t u_t (S_{t+1} - e^{r dt} S_t) e^{r (i-t-1) dt}."""
    rng = np.random.default_rng(0)
    spots = np.exp(np.cumsum(rng.normal(0, 0.05, (3, 4)), axis=1))
    spots = np.concatenate([np.ones((3, 1)), spots], axis=1)
    r, dt = 0.03, 0.25
    rep = rlop.stacked_replication(
        jnp.asarray(spots, jnp.float32), jnp.zeros((3, 4)), 1.0, r, dt, ledger.CostModel(),
        lambda key, obs: (0.5 * jnp.ones_like(obs.spot), ()))
    for i in range(1, 5):
        want = sum(0.5 * (spots[:, t + 1] - math.exp(r * dt) * spots[:, t])
                   * math.exp(r * (i - t - 1) * dt) for t in range(i))
        np.testing.assert_allclose(np.asarray(rep.terminal[:, i - 1]), want, atol=2e-6)
    assert float(jnp.max(rep.cost)) == 0.0


def test_per_sample_advantage_never_broadcasts():
    n = 5
    returns = jnp.arange(n, dtype=jnp.float32)
    baseline = jnp.linspace(0.1, 0.5, n)[:, None]  # a network's (n, 1) output
    adv = rlop.per_sample_advantage(returns, baseline)
    assert adv.shape == (n,)  # the published code's returns - baseline is (n, n)
    assert (returns - baseline).shape == (n, n)
    np.testing.assert_allclose(adv, returns - baseline[:, 0])
    with pytest.raises(ValueError, match="one baseline per sample"):
        rlop.per_sample_advantage(returns, jnp.zeros((n, 2)))


def _all_avals(jaxpr):
    for eqn in jaxpr.eqns:
        for v in eqn.outvars:
            yield v.aval
        for sub in jax.core.subjaxprs(eqn) if hasattr(jax.core, "subjaxprs") else ():
            yield from _all_avals(sub)
        for p in eqn.params.values():
            inner = getattr(p, "jaxpr", None)
            if inner is not None:
                yield from _all_avals(getattr(inner, "jaxpr", inner))


@pytest.mark.parametrize("objective", ["squared", "cvar"])
def test_reinforce_update_has_no_sample_by_sample_intermediate(objective):
    """No array in the traced REINFORCE update has two axes of sample size (n x n broadcast)."""
    agent, hp = tiny(estimator="reinforce", objective=objective, n_envs=37)
    state = agent.init(jax.random.key(0), hp)
    closed = jax.make_jaxpr(lambda k, s: agent.update(k, s, hp))(jax.random.key(1), state)
    n = agent.n_envs
    shapes = [a.shape for a in _all_avals(closed.jaxpr) if hasattr(a, "shape")]
    assert any(n in s for s in shapes)  # the walk does see the per-env arrays
    bad = [s for s in shapes if sum(d >= n for d in s) >= 2]
    assert not bad, bad


def test_reinforce_losses_match_manual_per_sample_formula():
    """The agent's value loss equals mean over active (t, i) of (G - b)^2 computed by hand."""
    agent, hp = tiny(estimator="reinforce")
    state = agent.init(jax.random.key(0), hp)
    key = jax.random.key(3)
    _, metrics = agent.losses(key, state, hp)
    # rebuild the batch by hand from the same key
    k_mkt, k_path, k_act = jax.random.split(key, 3)
    market = hp.contracts.sample(k_mkt, agent.n_envs)
    paths = agent.simulate_paths(k_path, market, hp.contracts.dt)
    prem = agent.premiums(state.price_def, state.price, market, hp, paths.dtype)
    rep = agent.replicate(k_act, state, hp, state.policy, prem, paths, market, "sample")
    reward = np.asarray(-(rep.payoff - rep.terminal) ** 2)  # (n, N), r = 0: gamma = 1
    _, base = rep.aux  # (N_t, n, N)
    base = np.asarray(base)
    sq = [(reward[e, i] - base[t, e, i]) ** 2
          for e in range(agent.n_envs) for i in range(agent.n_steps) for t in range(i + 1)]
    np.testing.assert_allclose(float(metrics["value_loss"]), np.mean(sq), rtol=1e-4)


def test_update_is_jittable_scannable_and_deterministic():
    agent, hp = tiny(estimator="reinforce", objective="shortfall_prob")
    s1, m1 = fit(agent, hp, jax.random.key(5), 3)
    s2, m2 = fit(agent, hp, jax.random.key(5), 3)
    s3, _ = fit(agent, hp, jax.random.key(6), 3)
    leaves = lambda s: jax.tree.leaves((s.policy, s.price, s.baseline))
    for a, b in zip(leaves(s1), leaves(s2)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert any(not np.array_equal(np.asarray(a), np.asarray(b))
               for a, b in zip(leaves(s1), leaves(s3)))
    assert int(s1.step) == 3
    assert {"loss", "price_loss", "value_loss", "mean_error"} <= set(m1)
    for v in m1.values():
        assert v.shape == (3,) and np.all(np.isfinite(np.asarray(v)))


@pytest.mark.parametrize("objective", ["abs", "shortfall", "cvar"])
def test_pathwise_objectives_update_finitely(objective):
    agent, hp = tiny(estimator="pathwise", objective=objective)
    hp = with_contracts(hp, cost_hi=0.01)
    state, m = fit(agent, hp, jax.random.key(0), 2)
    assert all(np.all(np.isfinite(np.asarray(v))) for v in m.values())
    if objective == "cvar":  # the RU threshold is learned
        assert float(state.threshold) != 0.0


def test_terminal_rewards():
    h = jnp.array([0.1, 0.1, 0.0])
    pi = jnp.array([0.05, 0.2, 0.0])  # errors h - pi = 0.05, -0.1, 0
    np.testing.assert_allclose(rlop.terminal_reward("abs", h, pi), [-0.05, -0.1, 0], atol=1e-7)
    np.testing.assert_allclose(rlop.terminal_reward("squared", h, pi), [-0.0025, -0.01, 0],
                               atol=1e-7)
    np.testing.assert_allclose(rlop.terminal_reward("shortfall", h, pi, power=1.0),
                               [-0.05, 0, 0], atol=1e-7)
    np.testing.assert_allclose(rlop.terminal_reward("shortfall_prob", h, pi, k=100.0),
                               -1 / (1 + np.exp(-100 * np.array([0.05, -0.1, 0]))), rtol=1e-5)
    # RU with w = 0.01, alpha = 0.5: w + (SF - w)^+/alpha
    np.testing.assert_allclose(
        rlop.terminal_reward("cvar", h, pi, alpha=0.5, threshold=0.01),
        [-(0.01 + 0.04 / 0.5), -0.01, -0.01], rtol=1e-5)
    agent, _ = tiny(objective="shortfall_prob", k_start=10.0, k_end=1000.0, anneal_steps=100)
    np.testing.assert_allclose([float(agent.temperature_k(s)) for s in (0, 50, 100, 500)],
                               [10.0, 100.0, 1000.0, 1000.0], rtol=1e-5)


def test_hedger_works_with_rollout_and_price_is_bs_at_learned_vol():
    agent, hp = tiny()
    state = agent.init(jax.random.key(0), hp)
    hedger = agent.hedger(state, hp)
    assert isinstance(hedger, LatentVolPolicy)
    env = HedgingEnv(EnvConfig(market="gbm", n_steps=4))
    params = env.default_params(GBMParams(s0=1.0, mu=0.0, sigma=0.2), strike=1.0,
                                maturity=4 * hp.contracts.dt)
    out = rollout(HELD_OUT, env, params, hedger, 64)
    assert out.pnl.shape == (64,) and np.all(np.isfinite(np.asarray(out.pnl)))
    pos = np.asarray(out.positions)
    assert np.all((pos >= 0) & (pos <= 1))
    p = agent.price(state, hp, Contract(s0=1.0, strike=1.0, maturity=0.25, sigma=0.2))
    assert 0.0 < float(p) < 1.0


def test_price_of_a_contract_is_the_premium_head_at_t0():
    """``price(state, hp, contract)`` on a batched Contract equals the premiums the agent
    trains with (column i-1 = expiry i dt) for the same sampled contracts, and a put
    contract is refused by a call agent."""
    agent, hp = tiny()
    hp = with_contracts(hp, cost_hi=0.01, mu_std=1.0, rate=0.02)
    state = agent.init(jax.random.key(0), hp)
    batch = hp.contracts.sample(jax.random.key(1), 11)
    prem = np.asarray(agent.premiums(state.price_def, state.price, batch, hp, jnp.float32))
    for i in range(1, agent.n_steps + 1):
        c = Contract(s0=batch.s0, strike=batch.strike, maturity=i * hp.contracts.dt,
                     sigma=batch.sigma, mu=batch.mu, rate=hp.contracts.rate,
                     cost=batch.cost, n_steps=i)
        got = agent.price(state, hp, c)
        assert got.shape == (11,)
        np.testing.assert_allclose(np.asarray(got), prem[:, i - 1], rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match="contract.option"):
        agent.price(state, hp, Contract(option="put"))


def test_evaluation_contract_is_the_distribution_centre():
    """The Contract at the centre of ``hparams.contracts`` (mid s0, strike, sigma, cost; drift
    mu_mean; N dates of dt); its environment is the GBM one the former
    ``env.distribution_centre`` built (same market, strike, costs, BS premium, flags)."""
    agent, hp = tiny(charge_entry=True, charge_unwind=False)
    hp = with_contracts(hp, cost_lo=0.002, cost_hi=0.006, rate=0.01, mu_mean=0.3)
    c = agent.evaluation_contract(hp)
    assert isinstance(c, Contract)
    d = hp.contracts
    config = EnvConfig(market="gbm", n_steps=agent.n_steps, option=agent.option)
    expected = HedgingEnv(config).default_params(
        GBMParams(s0=1.0, mu=0.3, sigma=0.2), strike=1.0, maturity=agent.n_steps * d.dt,
        rate=0.01, costs=ledger.CostModel(0.004), charge_entry=True, charge_unwind=False)
    assert same_contract(c, Contract.from_env(config, expected))
    assert (c.charge_entry, c.charge_unwind) == (True, False)
    env, params = c.env()
    assert env.config == config
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(expected)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6)


def test_presets_load_from_toml():
    agent, hp = load_job("rlop", "paper").build()
    assert agent == rlop.RLOP(n_envs=1000, n_steps=4)
    assert hp == rlop.RLOPHParams()  # the defaults are the papers'
    assert agent.objective == "squared" and agent.estimator == "reinforce"
    d = hp.contracts
    assert (d.mu_mean, d.mu_std, d.sigma_lo, d.sigma_hi) == (0.0, 2.0, 0.01, 2.01)
    assert (d.s0_lo, d.s0_hi, d.cost_lo, d.cost_hi, d.dt) == (0.3, 1.7, 0.0, 0.01, 1 / 52)
    s_agent, s_hp = load_job("rlop", "smoke").build()
    assert s_agent == rlop.RLOP(n_envs=256, n_steps=4, width=16, n_blocks=1,
                                layers_per_block=1, price_width=16, baseline_widths=(16,),
                                estimator="pathwise")
    assert s_hp == rlop.RLOPHParams(lr_policy=3e-3, lr_price=3e-3, contracts=ContractDistribution(
        dt=1 / 12, mu_std=0.0, sigma_lo=0.15, sigma_hi=0.25, s0_lo=0.9, s0_hi=1.1))
    over = load_job("rlop", "paper", overrides=["agent.objective=shortfall_prob",
                                                "hparams.contracts.cost_hi=0.004"])
    assert over.agent.objective == "shortfall_prob" and over.hparams.contracts.cost_hi == 0.004
    with pytest.raises(ValueError):
        load_job("rlop", "paper", overrides=["agent.objective=nope"])
    with pytest.raises(ValueError, match="hparams.contracts.sigma_lo"):
        load_job("rlop", "paper", overrides=["hparams.contracts.sigma_lo=3.0"])
    with pytest.raises(ValueError, match="eps_hi"):  # the old flat field is gone
        load_job("rlop", "paper", overrides=["hparams.eps_hi=0.01"])


def bs_delta_eval(agent, hp, key, n):
    """Mean squared terminal error of the BS delta (true sigma) from the BS premium, on the
    episodes ``agent.evaluate(key, ..., n)`` uses (same key: common random numbers)."""
    k_mkt, k_path = jax.random.split(key)
    m = hp.contracts.sample(k_mkt, n)
    paths = agent.simulate_paths(k_path, m, hp.contracts.dt)
    obs = agent._start_obs(m, hp, paths.dtype)
    rep = rlop.stacked_replication(paths, price_at_vol(obs, obs.vol), m.strike, hp.contracts.rate,
                                   hp.contracts.dt, ledger.CostModel(m.cost),
                                   lambda k, o: (delta_at_vol(o, o.vol), ()),
                                   drift=m.mu, vol=m.sigma)
    err = rep.payoff - rep.terminal
    return float(jnp.mean(err * err))


def test_smoke_preset_learns():
    # (its training time, ~10-19 s on 2 cores, is a benchmark figure, not a timed test)
    agent, hp = smoke()
    state, metrics = fit(agent, hp, jax.random.key(0), 300)
    ev = agent.evaluate(HELD_OUT, state, hp, 4096, bs_premium=True)
    ref = bs_delta_eval(agent, hp, HELD_OUT, 4096)
    # measured: docs/rlop.md (4 dates, dt = 1/12: the discretisation error dominates)
    assert float(ev["mse"]) < 1.1 * ref
    own = agent.evaluate(HELD_OUT, state, hp, 4096)
    assert abs(float(own["mean_error"])) < 2e-3  # learned price: mean signed error ~ 0


# ------------------------------------------------------------------ learning (slow)
def _traj_hedge_vs_delta(agent, state, hp, key, n):
    """|u - delta| over the (t, i) pairs the mean policy visits on held-out episodes."""
    k_mkt, k_path = jax.random.split(key)
    m = hp.contracts.sample(k_mkt, n)
    paths = agent.simulate_paths(k_path, m, hp.contracts.dt)
    prem = agent.premiums(state.price_def, state.price, m, hp, paths.dtype)
    pol = agent.hedger(state)
    rep = rlop.stacked_replication(paths, prem, m.strike, hp.contracts.rate, hp.contracts.dt,
                                   ledger.CostModel(m.cost),
                                   lambda k, o: (pol(o), delta_at_vol(o, o.vol)),
                                   drift=m.mu, vol=m.sigma)
    act = np.broadcast_to(np.asarray(rep.active)[:, None, :], rep.hedges.shape)
    return np.abs(np.asarray(rep.hedges) - np.asarray(rep.aux))[act]


def _grid_obs(hp):
    s, tau, sig = np.meshgrid(np.linspace(0.9, 1.1, 9), np.arange(1, 5) * hp.contracts.dt,
                              [0.15, 0.2, 0.25], indexing="ij")
    f = lambda x: jnp.asarray(x, jnp.float32)
    z = jnp.zeros(s.shape, jnp.float32)
    return Observation(spot=f(s), strike=z + 1, time_to_maturity=f(tau), elapsed=z, rate=z,
                       div_yield=z, drift=z, vol=f(sig), cost=z, cost_multiplier=z + 1,
                       position=z)


@pytest.mark.slow
def test_zero_cost_hedge_approaches_delta_and_price_approaches_bs():
    """Narrow distribution (sigma in [0.15, 0.25], S0 in [0.9, 1.1], mu = r = eps = 0), pathwise,
    started far from the answer (init_vol = 0.6). With mu = r = 0 the fixed point of the price
    update is E[h] = the BS price; the squared-error hedge at 4 dates is close to the delta
    (not equal: discrete hedging), so tolerances are a few hundredths of a share."""
    agent, hp = smoke(init_vol=0.6, width=32)
    state, _ = fit(agent, hp, jax.random.key(0), 1500)
    err = _traj_hedge_vs_delta(agent, state, hp, HELD_OUT, 4096)
    obs = _grid_obs(hp)
    bs = price_at_vol(obs, obs.vol)
    grid = Contract(s0=obs.spot, strike=obs.strike, maturity=obs.time_to_maturity, sigma=obs.vol,
                    mu=obs.drift, rate=obs.rate, cost=obs.cost)
    rel = np.abs(np.asarray(agent.price(state, hp, grid) - bs)) / np.asarray(bs)
    abs_err = np.abs(np.asarray(agent.price(state, hp, grid) - bs))
    print(f"|u - delta| mean {err.mean():.4f} p95 {np.quantile(err, 0.95):.4f}; "
          f"price rel err median {np.median(rel):.4f} max {rel.max():.4f}; "
          f"abs err max {abs_err.max():.5f} (ATM 1-step bs {float(bs[4, 0, 1]):.4f})")
    assert err.mean() < 0.02
    assert np.quantile(err, 0.95) < 0.06
    assert np.median(rel) < 0.05
    # absolute: grid prices run ~1e-4..0.06 (1-step ATM 0.017..0.029). Measured worst error
    # at key 0 and over other keys: docs/rlop.md (relative error is large only on the
    # cheapest OTM one-step contracts); the price net is small and its target is noisy (one
    # path per env), so we allow 0.004.
    assert abs_err.max() < 0.004


@pytest.mark.slow
def test_shortfall_prob_objective_lowers_held_out_shortfall_probability():
    """eps = 0.4 %, sigma = 0.2, S0 in [0.9, 1.1]. Both agents hedge a 4-date ATM call from the
    SAME premium (the BS price) on the same held-out paths (rollout, common random numbers)."""
    hp = with_contracts(smoke()[1], sigma_lo=0.2, sigma_hi=0.2, cost_lo=0.004, cost_hi=0.004)
    env = HedgingEnv(EnvConfig(market="gbm", n_steps=4))
    mkt = GBMParams(s0=1.0, mu=0.0, sigma=0.2)
    bs = float(price_at_vol(_grid_obs(hp), 0.2)[4, 3, 1])  # S = K = 1, tau = 4 dt
    params = env.default_params(mkt, strike=1.0, maturity=4 * hp.contracts.dt, premium=bs,
                                costs=ledger.CostModel(0.004), charge_entry=False)
    probs = {}
    for objective in ("squared", "shortfall_prob"):
        agent, _ = smoke(objective=objective, k_start=20.0, k_end=300.0, anneal_steps=600)
        state, _ = fit(agent, hp, jax.random.key(0), 800)
        out = rollout(HELD_OUT, env, params, agent.hedger(state, hp), 20_000)
        probs[objective] = float(risk.shortfall_probability(out.pnl))
    print("held-out P(Pi_T < 0):", probs)
    assert probs["shortfall_prob"] < probs["squared"] - 0.02


def _samples_to_threshold(agent, hp, threshold, n_chunks, chunk):
    from jaxhedge.train.loop import make_train
    tr = make_train(agent, chunk)
    run = jax.jit(lambda ts: tr.train_chunk(ts, hp)[0])
    ev = jax.jit(lambda s: agent.evaluate(HELD_OUT, s, hp, 4096, bs_premium=True)["mse"])
    ts = jax.jit(tr.init)(jax.random.key(1), hp)
    curve = []
    for c in range(n_chunks):
        ts = run(ts)
        curve.append(float(ev(ts.agent_state)))
        if curve[-1] <= threshold:
            return (c + 1) * chunk * agent.n_envs, curve
    return math.inf, curve


@pytest.mark.slow
def test_pathwise_needs_fewer_samples_than_reinforce():
    """Samples (paths) until the held-out hedging MSE (BS premium) is within 10 % of the BS
    delta's, both estimators from the same start (init_vol = 0.6), same budget."""
    res = {}
    for est in ("pathwise", "reinforce"):
        agent, hp = smoke(estimator=est, init_vol=0.6)
        ref = bs_delta_eval(agent, hp, HELD_OUT, 4096)
        res[est] = _samples_to_threshold(agent, hp, 1.1 * ref, 40, 25)
    print({k: (v[0], [f"{c:.2e}" for c in v[1][:8]], f"last {v[1][-1]:.2e}")
           for k, v in res.items()}, "delta", ref)
    assert math.isfinite(res["pathwise"][0])
    assert res["pathwise"][0] <= res["reinforce"][0]


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("charge_entry,charge_unwind", [(False, True), (True, False),
                                                        (True, True), (False, False)])
def test_each_expiry_column_is_a_ledger_replay(x64, seed, charge_entry, charge_unwind):
    """Column i-1 of the stacked portfolios = ``ledger.replay`` of its own tape u_0..u_{i-1}
    on S_0..S_i from premium Pi_0^(i): terminal value, pnl and cost, with costs, r != 0,
    random hedges (depending on the observed position) and random per-env markets."""
    rng = np.random.default_rng(seed)
    n, big_n, dt, rate = 9, 5, 1 / 12, 0.04
    spots = np.exp(np.cumsum(rng.normal(0, 0.08, (n, big_n + 1)), axis=1))
    spots *= rng.uniform(0.8, 1.2, (n, 1))
    prem = rng.uniform(0.01, 0.1, (n, big_n))
    strike, eps = rng.uniform(0.9, 1.1, n), rng.uniform(0.001, 0.02, n)
    is_call = bool(seed % 2)

    def hedge(key, obs):
        noise = jax.random.normal(key, obs.spot.shape, obs.spot.dtype)
        return delta_at_vol(obs, obs.vol) + 0.2 * noise + 0.1 * obs.position, ()

    rep = rlop.stacked_replication(
        jnp.asarray(spots), jnp.asarray(prem), strike, rate, dt,
        ledger.CostModel(proportional=eps), hedge, jax.random.split(jax.random.key(seed), big_n),
        vol=rng.uniform(0.1, 0.5, n), is_call=is_call, charge_entry=charge_entry,
        charge_unwind=charge_unwind)
    hedges = np.asarray(rep.hedges)  # (N_t, n, N)
    for i in range(1, big_n + 1):
        params = ledger.LedgerParams(costs=ledger.CostModel(proportional=jnp.asarray(eps)),
                                     rate=rate, dt=dt, charge_entry=charge_entry,
                                     charge_unwind=charge_unwind)
        ref = ledger.replay(spots[:, :i + 1], hedges[:i, :, i - 1].T, prem[:, i - 1], strike,
                            params, is_call)
        np.testing.assert_allclose(rep.terminal[:, i - 1], ref.terminal_value, rtol=0,
                                   atol=1e-13)
        np.testing.assert_allclose(rep.terminal[:, i - 1] - rep.payoff[:, i - 1], ref.pnl,
                                   rtol=0, atol=1e-13)
        np.testing.assert_allclose(rep.cost[:, i - 1], ref.cost, rtol=0, atol=1e-14)
        assert np.all(hedges[i:, :, i - 1] == 0.0)  # frozen after its expiry
    assert float(jnp.max(rep.cost)) > 0.0
