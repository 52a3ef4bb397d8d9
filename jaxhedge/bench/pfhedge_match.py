"""The deep-hedging agent on pfhedge's standard example, reading pfhedge's four inputs.

pfhedge's README example: ``EuropeanOption(BrownianStock(cost=1e-4))`` (S0 = K = 1,
sigma = 0.2, mu = 0, maturity 20/250, dt = 1/250: 20 dates), ``MultiLayerPerceptron()``
(4 hidden layers of 32, ReLU, 1 output), ``Hedger(model, inputs=["log_moneyness",
"expiry_time", "volatility", "prev_hedge"])``, entropic risk (a = 1), Adam 1e-3. One
epoch of ``hedger.fit`` is a train step on fresh paths plus a validation pass (the loss on
fresh paths, no gradient); ``hedger.price`` is one pass.

Here: :class:`jaxhedge.agents.deep_hedging.DeepHedging` itself (its ``update``,
``simulate``, ``risk_objective`` and ``price``) built by :func:`pfhedge_agent` with its
``features`` field set to pfhedge's four inputs (:data:`PFHEDGE_INPUTS`: log(S/K), tau,
sigma, previous position, columns of :func:`jaxhedge.nets.observation_features`) and
pfhedge's network widths. Costs as pfhedge's ``pl`` (``deduct_first_cost=True``,
``deduct_final_cost=False``): the entry trade pays, the final close-out does not.

>>> agent = pfhedge_agent(n_paths=8)
>>> hp = pfhedge_hparams(agent)
>>> state = agent.init(jax.random.key(0), hp)
>>> from jaxhedge.bench.flops import params_macs
>>> params_macs(state.params)   # 4*32 + 3*32*32 + 32: pfhedge's MultiLayerPerceptron
3232
"""
from __future__ import annotations

import time

import jax

from jaxhedge.agents.deep_hedging import DeepHedging
from jaxhedge.bench.timing import best_of
from jaxhedge.env import EnvConfig
from jaxhedge.ledger import CostModel
from jaxhedge.markets import GBMParams

#: pfhedge's input names -> the names of :data:`jaxhedge.nets.FEATURE_NAMES`.
PFHEDGE_INPUTS = {"log_moneyness": "log_moneyness", "expiry_time": "time_to_maturity",
                  "volatility": "vol", "prev_hedge": "position"}
#: pfhedge's standard example.
EXAMPLE = {"n_paths": 10_000, "n_steps": 20, "dt": 1 / 250, "sigma": 0.2, "mu": 0.0,
           "s0": 1.0, "strike": 1.0, "cost": 1e-4, "widths": (32, 32, 32, 32),
           "risk_aversion": 1.0, "learning_rate": 1e-3, "price_paths": (10_000, 100_000)}


def pfhedge_agent(n_paths: int = EXAMPLE["n_paths"]) -> DeepHedging:
    """:class:`DeepHedging` with pfhedge's inputs and network (free hedge, no band)."""
    return DeepHedging(env=EnvConfig(market="gbm", n_steps=EXAMPLE["n_steps"]),
                       n_paths=n_paths, widths=EXAMPLE["widths"], objective="entropic",
                       risk_aversion=EXAMPLE["risk_aversion"],
                       learning_rate=EXAMPLE["learning_rate"],
                       features=tuple(PFHEDGE_INPUTS.values()))


def pfhedge_hparams(agent: DeepHedging):
    """The example's contract: S0 = K = 1, sigma 0.2, mu 0, r 0, T = N / 250, cost 1e-4
    charged on entry, not on the final close-out (pfhedge's defaults)."""
    return agent.default_hparams(
        GBMParams(s0=EXAMPLE["s0"], mu=EXAMPLE["mu"], sigma=EXAMPLE["sigma"]),
        strike=EXAMPLE["strike"], maturity=agent.env.n_steps * EXAMPLE["dt"], rate=0.0,
        costs=CostModel(EXAMPLE["cost"]), charge_entry=True, charge_unwind=False)


def measure(n_paths: int = EXAMPLE["n_paths"], price_paths=EXAMPLE["price_paths"],
            repeats: int = 5) -> dict:
    """Compiled train step, validation pass and price passes, best of ``repeats`` each
    (compile times apart). ``epoch_s`` = train step + validation, as one pfhedge epoch."""
    agent = pfhedge_agent(n_paths=n_paths)
    hp = pfhedge_hparams(agent)
    key = jax.random.key(0)
    state = agent.init(key, hp)
    compile_s = {}

    def compiled(name, fn, *args):
        t0 = time.perf_counter()
        c = jax.jit(fn).lower(*args).compile()
        compile_s[name] = time.perf_counter() - t0
        return c

    train = compiled("train_step", agent.update, key, state, hp)

    def validation(k, s, h):
        return agent.risk_objective(agent.simulate(k, agent.hedger(s), h).pnl, s.threshold, h)

    val = compiled("validation", validation, key, state, hp)
    state, _ = train(key, state, hp)  # a trained-once state: what epoch 2 would see
    out = {"n_paths": n_paths, "n_steps": agent.env.n_steps, "widths": list(agent.widths),
           "inputs": list(PFHEDGE_INPUTS), "objective": "entropic",
           "learning_rate": agent.learning_rate}
    out["train_step_s"] = best_of(lambda: train(key, state, hp), repeats)
    out["validation_s"] = best_of(lambda: val(key, state, hp), repeats)
    out["epoch_s"] = out["train_step_s"] + out["validation_s"]
    out["price_s"] = {}
    for n in price_paths:
        price = compiled(f"price_{n}", lambda s, h, k, n=n: agent.price(s, h, key=k,
                                                                        n_paths=n),
                         state, hp, key)
        out["price_s"][str(n)] = best_of(lambda: price(state, hp, key), repeats)
        out.setdefault("price", {})[str(n)] = float(price(state, hp, key))
    out["compile_s"] = compile_s
    out["path_steps_per_s_train"] = n_paths * agent.env.n_steps / out["train_step_s"]
    return out
