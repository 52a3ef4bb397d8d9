"""run.json prices through the agent protocol, the callbacks, and the toy agent's price."""
import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxhedge.agents.base import missing_methods
from jaxhedge.contracts import Contract
from jaxhedge.runs import evaluation_setup, load_trained
from jaxhedge.train import make_train, run_training
from jaxhedge.train.record import agent_prices
from jaxhedge.train.toy import ToyAgent

AGENT = ToyAgent(batch=16)


def _train(run_dir, agent=AGENT, hparams=None, **kw):
    hparams = agent.default_hparams() if hparams is None else hparams
    return run_training(agent, hparams, seed=1, n_steps=10, chunk=5, run_dir=run_dir,
                        n_seeds=2, progress=False, **kw)


def test_run_json_prices_every_member_through_the_protocol(tmp_path):
    hps = [AGENT.default_hparams(), AGENT.default_hparams().replace(learning_rate=0.01)]
    result = _train(tmp_path / "run", hparams=hps)
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    contract = AGENT.evaluation_contract(hps[0])
    assert info["price_contract"] == [contract.describe()] * 2
    want = []
    for m in range(4):  # member m = h * S + s, priced one by one without vmap/jit
        agent, hp, state = load_trained(tmp_path / "run", member=m)
        want.append(float(agent.price(state, hp, agent.evaluation_contract(hp))))
    np.testing.assert_allclose(np.asarray(info["price"]).ravel(), want, rtol=1e-6)
    assert len(set(np.round(want, 6))) == 4  # members differ, so the layout is checked
    assert result.info["price"] == info["price"]


def test_missing_protocol_method_is_recorded_not_raised(tmp_path):
    @dataclasses.dataclass(frozen=True)
    class NoContract(ToyAgent):
        evaluation_contract = None  # not callable: the protocol is incomplete

    agent = NoContract(batch=16)
    assert missing_methods(agent) == ["evaluation_contract"]
    info = _train(tmp_path / "run", agent=agent).info
    assert info["price"] is None
    assert info["price_error"].startswith("NoContract lacks evaluation_contract")


def test_deep_hedging_price_follows_the_protocol():
    """Recorded iff the agent implements the protocol; else the error names what it lacks."""
    from jaxhedge.agents.deep_hedging import DeepHedging
    from jaxhedge.env import EnvConfig
    from jaxhedge.train import make_members, member_keys, stack_hparams

    agent = DeepHedging(env=EnvConfig(n_steps=4), n_paths=64, widths=(8,))
    hp = stack_hparams([agent.default_hparams()])
    ts = make_members(agent, 1).init(member_keys(0, 2), hp)
    out = agent_prices(agent, ts.agent_state, hp)
    missing = [m for m in missing_methods(agent) if m in ("price", "evaluation_contract")]
    if missing:
        assert out["price"] is None and all(m in out["price_error"] for m in missing)
    else:
        hp0 = jax.tree.map(lambda x: x[0], hp)
        contract = agent.evaluation_contract(hp0)
        want = [float(agent.price(jax.tree.map(lambda x: x[0, s], ts.agent_state), hp0,
                                  contract)) for s in range(2)]
        np.testing.assert_allclose(out["price"], [want], rtol=1e-5)


def test_callbacks_are_called_in_order(tmp_path):
    calls = []

    class Recorder:
        def on_start(self, ctx):
            calls.append(("start", ctx.step, ctx.resumed_from, ctx.last_saved))

        def on_chunk(self, ctx, step, rows, summary):
            calls.append(("chunk", step, len(rows), ctx.last_saved))

        def on_end(self, ctx, info):
            calls.append(("end", info["step"], info["status"]))

    result = _train(tmp_path / "run", callbacks=[Recorder()])
    assert calls == [("start", 0, None, 0), ("chunk", 5, 2, 5), ("chunk", 10, 2, 10),
                     ("end", 10, "completed")]
    assert result.info["step"] == 10


def test_toy_price_integrates_the_fitted_delta():
    c = Contract(s0=jnp.array([90.0, 100.0, 110.0]), strike=100.0, maturity=0.5, sigma=0.3,
                 n_steps=20)
    ones = AGENT.init(jax.random.key(0), AGENT.default_hparams())
    ones = ones.replace(params={"w": jnp.zeros(3), "b": jnp.ones(())})  # delta_hat == 1
    lo = 100.0 * np.exp(-4 * 0.3 * np.sqrt(0.5))
    np.testing.assert_allclose(AGENT.price(ones, None, c), np.array([90, 100, 110]) - lo,
                               rtol=1e-5)
    put = Contract(s0=100.0, strike=100.0, maturity=0.5, sigma=0.3, option="put", n_steps=20)
    np.testing.assert_allclose(AGENT.price(ones, None, put), (100.0 - lo) - 100 + 100, rtol=1e-5)
    # trained, the fitted delta is close to BS's, so the price is close to Black-Scholes
    agent, hp = ToyAgent(batch=64), ToyAgent(batch=64).default_hparams()
    train = make_train(agent, 300)
    ts, _ = jax.jit(train.train_chunk)(train.init(jax.random.key(0), hp), hp)
    np.testing.assert_allclose(agent.price(ts.agent_state, hp, c), c.premium(), rtol=0.02)


def test_evaluation_setup_takes_a_contract():
    hp = AGENT.default_hparams()
    contract = AGENT.evaluation_contract(hp)
    env, params = evaluation_setup(AGENT, hp, None)
    ref_env, ref_params = contract.env()
    assert env.config == ref_env.config
    assert float(params.premium) == pytest.approx(float(contract.premium()))
    assert float(params.strike) == 100.0 and float(params.maturity) == 0.5
    env, params = evaluation_setup(AGENT, hp, "merton")
    assert env.config.market == "merton" and float(params.market.s0) == 100.0
