"""The gymnax-style environment: contract, ledger consistency, determinism, recompiles."""
import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxhedge import agents, ledger
from jaxhedge.env import EnvConfig, HedgingEnv, validate_env_params
from jaxhedge.markets import GBMParams, HestonParams
from jaxhedge.pricing import bs_price
from jaxhedge.rollout import episode, rollout


def gbm_env(n_steps=8, cost=1e-3, **kw):
    env = HedgingEnv(EnvConfig(market="gbm", n_steps=n_steps))
    params = env.default_params(GBMParams(s0=100.0, mu=0.05, sigma=0.2), strike=100.0,
                                maturity=0.25, rate=0.02, costs=ledger.CostModel(cost), **kw)
    return env, params


def test_reset_and_step_contract():
    env, params = gbm_env()
    obs, state = env.reset(jax.random.PRNGKey(0), params)
    assert state.path.spot.shape == (env.n_steps + 1,)
    assert float(obs.spot) == pytest.approx(100.0)
    assert float(obs.time_to_maturity) == pytest.approx(0.25)
    # observations carry the market's parameters
    assert float(obs.vol) == pytest.approx(0.2)
    assert float(obs.drift) == pytest.approx(0.05)
    assert float(obs.cost) == pytest.approx(1e-3)
    total, done = jnp.asarray(params.premium), False
    for t in range(env.n_steps):
        assert not done
        obs, state, reward, done, info = env.step(None, state, 0.5, params)
        total += reward
        assert float(obs.position) == pytest.approx(0.0 if done else 0.5)
    assert bool(done)
    # premium + sum of rewards is the terminal hedging error
    np.testing.assert_allclose(total, info["pnl"], rtol=1e-5, atol=1e-4)


def test_default_premium_is_black_scholes():
    _, params = gbm_env()
    np.testing.assert_allclose(params.premium, bs_price(100.0, 100.0, 0.25, 0.02, 0.2), rtol=1e-6)


@pytest.mark.parametrize("charge_entry,charge_unwind", [(True, True), (False, False)])
def test_rollout_equals_ledger_replay_of_its_own_tape(x64, charge_entry, charge_unwind):
    """The env's step sequencing is the ledger: replaying the env's trades gives the same P&L."""
    env, params = gbm_env(n_steps=12, cost=5e-3, charge_entry=charge_entry,
                          charge_unwind=charge_unwind)
    params = params.replace(div_yield=0.01, costs=ledger.CostModel(5e-3, 1e-3, 0.002))
    hedger = agents.WhalleyWilmottHedger(risk_aversion=0.5)
    out = rollout(jax.random.PRNGKey(3), env, params, hedger, 256)
    replayed = ledger.replay(out.spot, out.positions, params.premium, params.strike,
                             params.ledger_params(env.n_steps), True)
    np.testing.assert_allclose(out.pnl, replayed.pnl, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(out.cost, replayed.cost, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(out.turnover, replayed.turnover, rtol=1e-10, atol=1e-12)


def test_same_key_same_paths_across_hedgers_and_calls():
    env, params = gbm_env()
    key = jax.random.PRNGKey(11)
    a = rollout(key, env, params, agents.DeltaHedger(), 64)
    b = rollout(key, env, params, agents.NakedHedger(), 64)
    c = rollout(key, env, params, agents.DeltaHedger(), 64)
    np.testing.assert_array_equal(a.spot, b.spot)
    np.testing.assert_array_equal(a.pnl, c.pnl)
    from jaxhedge.rollout import simulate_paths
    # the same paths outside the rollout's program (to rounding: eager vs fused float32)
    np.testing.assert_allclose(a.spot, simulate_paths(key, env, params, 64).spot, rtol=1e-6)
    d = rollout(jax.random.PRNGKey(12), env, params, agents.DeltaHedger(), 64)
    assert not np.array_equal(a.spot, d.spot)


def test_no_retrace_for_new_parameter_values():
    env, params = gbm_env()
    hedger = agents.DeltaHedger()

    @jax.jit
    @chex.assert_max_traces(n=1)
    def run(key, params):
        return episode(key, env, params, hedger).pnl

    for sigma in (0.1, 0.2, 0.3):
        run(jax.random.PRNGKey(0), params.replace(market=GBMParams(100.0, 0.0, sigma)))


def test_vmap_over_market_parameters():
    env, params = gbm_env()
    sigmas = jnp.array([0.1, 0.2, 0.4])
    batch = jax.vmap(lambda s: params.replace(market=params.market.replace(sigma=s)))(sigmas)
    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    out = jax.vmap(episode, in_axes=(0, None, 0, None))(keys, env, batch, agents.DeltaHedger())
    single = episode(keys[1], env, params.replace(market=params.market.replace(sigma=0.2)),
                     agents.DeltaHedger())
    np.testing.assert_allclose(out.pnl[1], single.pnl, rtol=1e-5)


def test_float64_rollout(x64):
    env, params = gbm_env()
    out = rollout(jax.random.PRNGKey(0), env, params, agents.DeltaHedger(), 16)
    assert out.pnl.dtype == jnp.float64


def test_heston_env_observes_instantaneous_vol():
    env = HedgingEnv(EnvConfig(market="heston", n_steps=5))
    params = env.default_params(HestonParams(s0=1.0, mu=0.0, v0=0.09, kappa=1.0, theta=0.04,
                                             xi=0.3, rho=-0.5), strike=1.0)
    obs, state = env.reset(jax.random.PRNGKey(0), params)
    assert float(obs.vol) == pytest.approx(0.3, rel=1e-5)
    assert np.isfinite(float(params.premium)) and float(params.premium) > 0


@pytest.mark.parametrize("field,value,needle", [
    ("strike", -1.0, "env.strike"),
    ("maturity", 0.0, "env.maturity"),
    ("costs", ledger.CostModel(proportional=-0.1), "env.costs.proportional"),
])
def test_invalid_params_name_the_field(field, value, needle):
    env, params = gbm_env()
    with pytest.raises(ValueError, match=needle):
        validate_env_params(env.config, params.replace(**{field: value}))


def test_market_params_must_match_the_market():
    env, params = gbm_env()
    heston = HestonParams(s0=100.0, mu=0.0, v0=0.04, kappa=1.0, theta=0.04, xi=0.3, rho=-0.5)
    with pytest.raises(ValueError, match="env.market.*HestonParams"):
        validate_env_params(env.config, params.replace(market=heston))


def test_invalid_config():
    with pytest.raises(ValueError, match="env.market"):
        EnvConfig(market="nope")
    with pytest.raises(ValueError, match="env.n_steps"):
        EnvConfig(n_steps=0)


def test_batched_rollout_equals_gymnax_steps_on_the_same_paths():
    """run_on_paths (time-major batch) and reset_to_path + step (one path) agree exactly."""
    from jaxhedge.rollout import run_on_paths, simulate_paths

    env, params = gbm_env(n_steps=10, cost=2e-3)
    hedger = agents.WhalleyWilmottHedger(risk_aversion=0.3)
    paths = simulate_paths(jax.random.PRNGKey(8), env, params, 32)
    batched = run_on_paths(env, params, hedger, paths)

    def one(path):
        obs, state = env.reset_to_path(path, params)

        def body(carry, _):
            obs, state = carry
            obs, state, reward, done, info = env.step(None, state, hedger(obs), params)
            return (obs, state), (info["pnl"], done)

        _, (pnl, done) = jax.lax.scan(body, (obs, state), None, length=env.n_steps)
        return pnl[-1], done

    pnl, done = jax.vmap(one)(paths)
    assert bool(jnp.all(done[:, -1])) and not bool(jnp.any(done[:, :-1]))
    np.testing.assert_allclose(batched.pnl, pnl, rtol=1e-5, atol=1e-5)
