"""DeepHedging's ``features`` field: the network reads exactly the named feature columns."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxhedge import codec, nets
from jaxhedge.agents.deep_hedging import DeepHedging
from jaxhedge.env import EnvConfig, Observation


def _obs(n=5, seed=0):
    r = np.random.default_rng(seed)
    u = lambda lo, hi: jnp.asarray(r.uniform(lo, hi, n), jnp.float32)  # noqa: E731
    return Observation(spot=u(80, 120), strike=u(90, 110), time_to_maturity=u(0.01, 0.5),
                       elapsed=u(0, 0.1), rate=u(0, 0.05), div_yield=u(0, 0.02),
                       drift=u(-0.2, 0.2), vol=u(0.1, 0.5), cost=u(0, 0.01),
                       cost_multiplier=u(1, 2), position=u(0, 1))


@pytest.mark.parametrize("features", [("vol", "log_moneyness"), ("position",),
                                      ("time_to_maturity", "vol", "log_moneyness", "position")])
def test_network_reads_exactly_the_named_columns(features):
    agent = DeepHedging(env=EnvConfig(n_steps=4), n_paths=8, widths=(8,), features=features)
    state = agent.init(jax.random.key(0), agent.default_hparams())
    obs = _obs()
    # oracle: the same network applied to the named columns of the full feature matrix
    cols = [nets.FEATURE_NAMES.index(f) for f in features]
    x = np.asarray(nets.observation_features(obs))[:, cols]
    want = np.asarray(nets.apply(state.graphdef, state.params, jnp.asarray(x)))[:, 0]
    np.testing.assert_allclose(agent.hedger(state)(obs), want, rtol=1e-6)
    # and changing a column the network does not read changes nothing
    unread = [f for f in ("cost", "drift") if f not in features]
    other = obs.replace(**{f: getattr(obs, f) * 3.0 for f in unread})
    np.testing.assert_array_equal(agent.hedger(state)(other), agent.hedger(state)(obs))


def test_default_reads_every_feature_and_band_all_but_position():
    for band, width in ((False, nets.N_FEATURES), (True, nets.N_FEATURES - 1)):
        agent = DeepHedging(env=EnvConfig(n_steps=4), n_paths=8, widths=(8,), band=band)
        state = agent.init(jax.random.key(0), agent.default_hparams())
        first = jax.tree.leaves(state.params)
        assert any(a.shape[0] == width for a in first if a.ndim == 2)
        assert agent.columns is None


@pytest.mark.parametrize("kw, field", [({"features": ("spot",)}, "features"),
                                       ({"features": ("vol", "vol")}, "features"),
                                       ({"features": ("vol", "position"), "band": True},
                                        "position")])
def test_bad_features_are_refused_naming_the_field(kw, field):
    with pytest.raises(ValueError, match=field):
        DeepHedging(**kw)


def test_features_survive_the_agent_codec():
    agent = DeepHedging(env=EnvConfig(n_steps=4), features=("log_moneyness", "vol"))
    back = codec.build_agent(json.loads(json.dumps(codec.agent_spec(agent))))
    assert back == agent and back.columns == (0, nets.FEATURE_NAMES.index("vol"))
