"""Deep hedging: it learns the BS delta without costs, its band beats delta with costs, and the
update is a pure, jittable, scannable, deterministic function.

Setup (Buehler et al.'s units): GBM s0 = K = 100, sigma = 0.2, mu = r = 0, T = 30/252,
10 rebalancing dates, entropic risk aversion lambda = 1 per unit of money (P&L std ~0.7, so
the risk term is not negligible next to the Monte-Carlo noise of the mean; with s0 = 1 one
would use lambda ~ 100). Held-out evaluation always uses a key not used in training and the
same key for every hedger compared (common random numbers).
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxhedge import ledger, risk
from jaxhedge.agents import DeltaHedger
from jaxhedge.agents.deep_hedging import (DeepHedger, DeepHedging, DeepHedgingHParams,
                                          DeepHedgingState)
from jaxhedge.contracts import Contract, same_contract
from jaxhedge.env import EnvConfig
from jaxhedge.markets import GBMParams
from jaxhedge.rollout import rollout

N_STEPS = 10
MARKET = GBMParams(s0=100.0, mu=0.0, sigma=0.2)
HELD_OUT = jax.random.key(2024)


def make(cost=0.0, n_paths=2000, lr=3e-3, **kw):
    agent = DeepHedging(EnvConfig(market="gbm", n_steps=N_STEPS), n_paths=n_paths, **kw)
    hp = agent.default_hparams(MARKET, costs=ledger.CostModel(cost)).replace(learning_rate=lr)
    return agent, hp


@functools.partial(jax.jit, static_argnames=("agent", "n_iters"))
def train(agent, hp, key, n_iters):
    """The local training loop: init, then lax.scan over update (one compiled program)."""
    k_init, k_train = jax.random.split(key)
    state = agent.init(k_init, hp)
    return jax.lax.scan(lambda s, k: agent.update(k, s, hp), state,
                        jax.random.split(k_train, n_iters))


@pytest.fixture(scope="module")
def zero_cost():
    agent, hp = make(cost=0.0)
    state, metrics = train(agent, hp, jax.random.key(0), 300)
    return agent, hp, state, metrics


def test_learns_bs_delta_at_zero_cost(zero_cost):
    """300 Adam steps x 2000 paths: mean |u_net - delta| over held-out paths < 0.05.

    Measured ~0.026 (the untrained net is ~0.5 away). 0.05 leaves room for seed noise while
    being far below any wrong answer (a hedge off by a constant 0.05 share, a stale delta one
    step late ~0.06, the untrained net ~0.5). Under mu = r = 0 and no cost the entropic-optimal
    discrete hedge is the BS delta up to O(dt) corrections much smaller than this.
    """
    agent, hp, state, metrics = zero_cost
    env = agent.hedging_env
    net = rollout(HELD_OUT, env, hp.env, agent.hedger(state, hp), 4000)
    delta = rollout(HELD_OUT, env, hp.env, DeltaHedger(), 4000)
    np.testing.assert_array_equal(net.spot, delta.spot)  # common random numbers
    gap = float(jnp.mean(jnp.abs(net.positions - delta.positions)))
    assert gap < 0.05, gap
    # and it hedges as well as delta: P&L std within 10 % of the delta hedge's
    assert float(jnp.std(net.pnl)) < 1.1 * float(jnp.std(delta.pnl))
    # learning happened: the loss fell by an order of magnitude from the untrained network
    assert float(jnp.mean(metrics["loss"][-20:])) < 0.1 * float(metrics["loss"][0])


def test_band_network_beats_delta_at_one_percent_cost():
    """eps = 1 %: trained band net < BS delta on the entropic risk (held-out, CRN).

    Measured (20k held-out paths): band net ~2.0, BS delta ~2.6, untrained band net ~2.3.
    """
    agent, hp = make(cost=0.01, band=True)
    state, _ = train(agent, hp, jax.random.key(1), 300)
    init_state = jax.jit(agent.init)(jax.random.key(7), hp)
    env = agent.hedging_env
    n = 8000

    def entropic(hedger):
        out = rollout(HELD_OUT, env, hp.env, hedger, n)
        return float(risk.entropic_risk(out.pnl, hp.risk_aversion)), out

    rho_net, net = entropic(agent.hedger(state, hp))
    rho_delta, delta = entropic(DeltaHedger())
    rho_init, _ = entropic(agent.hedger(init_state, hp))
    assert rho_net < rho_delta - 0.2, (rho_net, rho_delta)
    assert rho_net < rho_init - 0.1, (rho_net, rho_init)  # the training did it, not the init
    assert float(jnp.mean(net.turnover)) < float(jnp.mean(delta.turnover))  # it trades less
    # the hedge is clip(previous position, band): no trade inside, the nearest edge outside
    hedger = agent.hedger(state, hp)
    assert isinstance(hedger, DeepHedger) and hedger.band
    obs, _ = env.reset(HELD_OUT, hp.env)
    lower, upper = hedger.band_edges(obs)
    delta = DeltaHedger()(obs)
    assert float(lower) < float(delta) < float(upper)
    for u_prev, expected in [(-1.0, lower), (2.0, upper), (float(delta), delta)]:
        np.testing.assert_allclose(hedger(obs.replace(position=jnp.float32(u_prev))), expected,
                                   rtol=1e-6)


def test_update_jits_scans_deterministic_and_loss_decreases():
    agent, hp = make(cost=0.0, n_paths=256, lr=1e-2)
    key = jax.random.key(3)
    s1, m1 = train(agent, hp, key, 40)
    s2, m2 = train(agent, hp, key, 40)
    s3, _ = train(agent, hp, jax.random.key(4), 40)
    for a, b in zip(jax.tree.leaves(s1.params), jax.tree.leaves(s2.params)):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b)
               for a, b in zip(jax.tree.leaves(s1.params), jax.tree.leaves(s3.params)))
    assert set(m1) >= {"loss", "mean_pnl", "std_pnl", "mean_cost"}
    assert all(v.shape == (40,) for v in m1.values())
    loss = np.asarray(m1["loss"])
    assert np.all(np.isfinite(loss))
    assert loss[-10:].mean() < 0.5 * loss[:5].mean(), loss
    assert int(s1.step) == 40

    # one eager update of a jitted function is a plain pytree -> pytree map
    state = agent.init(jax.random.key(0), hp)
    new_state, metrics = jax.jit(agent.update)(jax.random.key(1), state, hp)
    assert isinstance(new_state, DeepHedgingState)
    assert jax.tree.structure(new_state) == jax.tree.structure(state)
    assert metrics["loss"].shape == ()


def test_vmap_over_seeds_and_learning_rates():
    """hparams are dynamic: one compiled update vmaps over keys and learning rates (lr=0 frozen)."""
    agent, hp = make(cost=0.0, n_paths=128)
    lrs = jnp.array([0.0, 1e-2])
    hps = jax.tree.map(lambda x: jnp.broadcast_to(jnp.asarray(x), (2,)), hp)
    hps = hps.replace(learning_rate=lrs)
    keys = jax.random.split(jax.random.key(5), 2)
    states = jax.vmap(agent.init)(keys, hps)
    new, metrics = jax.jit(jax.vmap(agent.update))(keys, states, hps)
    assert metrics["loss"].shape == (2,)
    changed = [not np.array_equal(a[i], b[i])
               for a, b in zip(jax.tree.leaves(states.params), jax.tree.leaves(new.params))
               for i in range(2)]
    frozen, moved = changed[0::2], changed[1::2]
    assert not any(frozen) and all(moved)


@pytest.mark.parametrize("objective", ["es", "oce"])
def test_threshold_objectives(objective):
    agent, hp = make(cost=0.005, n_paths=512, objective=objective, alpha=0.1)
    key = jax.random.key(6)
    state = agent.init(key, hp)
    # init puts the threshold at its optimum for the initial network, on init's own paths
    pnl = agent.simulate(jax.random.split(key)[1], agent.hedger(state), hp).pnl
    w = float(state.threshold) * MARKET.s0
    if objective == "es":
        np.testing.assert_allclose(w, float(risk.value_at_risk(-pnl, 0.1)), rtol=1e-5)
        # RU objective at the VaR = exact empirical ES
        np.testing.assert_allclose(float(agent.risk_objective(pnl, state.threshold, hp)),
                                   float(risk.expected_shortfall(-pnl, 0.1)), rtol=1e-4)
    else:
        # exponential OCE at w* = rho is the entropic risk itself
        rho = float(risk.entropic_risk(pnl, hp.risk_aversion))
        np.testing.assert_allclose(w, rho, rtol=1e-5)
        np.testing.assert_allclose(float(agent.risk_objective(pnl, state.threshold, hp)),
                                   rho, rtol=1e-3)
    state, metrics = train(agent, hp.replace(learning_rate=1e-2), key, 40)
    loss = np.asarray(metrics["loss"])
    assert np.all(np.isfinite(loss)) and loss[-10:].mean() < loss[:5].mean()
    assert np.isfinite(float(agent.price(state, hp, n_paths=512)))


def test_price_is_premium_plus_risk_of_fresh_paths(zero_cost):
    agent, hp, state, _ = zero_cost
    key = jax.random.key(11)
    price = float(agent.price(state, hp, key=key, n_paths=4000))
    out = rollout(key, agent.hedging_env, hp.env, agent.hedger(state, hp), 4000)
    expected = float(hp.env.premium + risk.entropic_risk(out.pnl, hp.risk_aversion))
    np.testing.assert_allclose(price, expected, rtol=1e-4)
    # zero cost, near-perfect hedge: BS premium plus a small risk loading (~lambda var / 2)
    premium = float(hp.env.premium)
    assert premium < price < premium + 0.5, (premium, price)
    with pytest.raises(TypeError, match=r"deep_hedging\.price: contract must be a"):
        agent.price(state, hp, object())


def test_price_of_the_evaluation_contract_is_the_trained_price(zero_cost):
    """The protocol's price(state, hp, evaluation_contract(hp)) is the old price(state, hp)."""
    agent, hp, state, _ = zero_cost
    c = agent.evaluation_contract(hp)
    assert same_contract(c, Contract(s0=100.0, strike=100.0, maturity=30 / 252, sigma=0.2,
                                     cost=0.0, n_steps=N_STEPS))
    old = float(agent.price(state, hp))
    new = float(agent.price(state, hp, c))
    np.testing.assert_allclose(new, old, rtol=1e-6)
    # jittable with the contract's numbers traced
    jitted = jax.jit(lambda c: agent.price(state, hp, c))(jax.tree.map(jnp.asarray, c))
    np.testing.assert_allclose(float(jitted), old, rtol=1e-5)


def test_price_of_another_contract_is_premium_plus_risk_on_its_own_market(zero_cost):
    """Oracle: the contract's own env (Contract.env(), built independently of the agent),
    hedged by the trained network on the same key: premium + entropic risk of that P&L."""
    agent, hp, state, _ = zero_cost
    key, n = jax.random.key(5), 3000
    c = Contract(s0=110.0, strike=105.0, maturity=20 / 252, sigma=0.25, mu=0.05, rate=0.01,
                 cost=0.002, n_steps=8)
    env, params = c.env()
    out = rollout(key, env, params, agent.hedger(state, hp), n)
    expected = float(c.premium() + risk.entropic_risk(out.pnl, hp.risk_aversion))
    np.testing.assert_allclose(float(agent.price(state, hp, c, key=key, n_paths=n)), expected,
                               rtol=1e-5)
    # a batch of contracts is priced contract by contract
    strikes = jnp.asarray([95.0, 105.0, 115.0])
    batch = agent.price(state, hp, c.replace(strike=strikes), key=key, n_paths=n)
    singles = [float(agent.price(state, hp, c.replace(strike=k), key=key, n_paths=n))
               for k in (95.0, 105.0, 115.0)]
    assert batch.shape == (3,)
    np.testing.assert_allclose(np.asarray(batch), singles, rtol=1e-5)
    assert singles[0] > singles[1] > singles[2]  # a near-delta-hedged call: premium falls in K


@pytest.mark.parametrize("market", ["gbm", "heston", "merton", "regime"])
def test_contract_env_puts_the_contract_in_the_training_market(market):
    """Round trip: Contract.from_env of the market with the contract in it is the contract;
    the market keeps its kind and its other parameters."""
    agent = DeepHedging(EnvConfig(market=market, n_steps=12), n_paths=8)
    hp = agent.default_hparams()
    c = Contract(s0=80.0, strike=90.0, maturity=0.5, sigma=0.3, mu=0.02, rate=0.01,
                 div_yield=0.005, cost=0.004, n_steps=6, option="put")
    config, params = agent.contract_env(hp, c)
    assert (config.market, config.n_steps, config.option) == (market, 6, "put")
    assert type(params.market) is type(hp.env.market)
    assert same_contract(Contract.from_env(config, params), c, rtol=1e-5)
    np.testing.assert_allclose(float(params.premium), float(c.premium()), rtol=1e-6)
    if market == "heston":  # the vol of vol and mean reversion are the agent's
        assert (params.market.xi, params.market.kappa) == (hp.env.market.xi,
                                                           hp.env.market.kappa)


def test_float64(x64):
    agent, hp = make(cost=0.01, n_paths=64, band=True)
    state, metrics = train(agent, hp, jax.random.key(0), 3)
    assert all(leaf.dtype == jnp.float64 for leaf in jax.tree.leaves(state.params))
    assert metrics["loss"].dtype == jnp.float64 and bool(jnp.all(jnp.isfinite(metrics["loss"])))


def test_config_validation():
    with pytest.raises(ValueError, match="objective"):
        DeepHedging(objective="mse")
    with pytest.raises(ValueError, match="n_paths"):
        DeepHedging(n_paths=1)
    with pytest.raises(ValueError, match="alpha"):
        DeepHedging(alpha=0.0)
    with pytest.raises(ValueError, match=r"deep_hedging\.path_sampler: must be None or callable"):
        DeepHedging(path_sampler="mixture")
    hp = DeepHedging().default_hparams()
    assert isinstance(hp, DeepHedgingHParams)
    assert float(hp.env.strike) == float(hp.env.market.s0) and float(hp.env.premium) > 0
