"""jaxhedge.codec: agent specs round-trip, and decoding constructs registered classes only."""
import json
import sys

import pytest

from jaxhedge.agents.adaptive_qlbs import AdaptiveQLBS
from jaxhedge.agents.deep_hedging import DeepHedging
from jaxhedge.agents.rlop import RLOP
from jaxhedge.codec import (SpecError, agent_spec, build_agent, params_sha256, register_class,
                            registered)
from jaxhedge.env import EnvConfig
from jaxhedge.train.toy import ToyAgent

AGENTS = [DeepHedging(env=EnvConfig(market="heston", n_steps=7, option="put"), widths=(8, 4),
                      objective="es", n_paths=64),
          RLOP(n_envs=32, baseline_widths=(5,), option="put"),
          AdaptiveQLBS(n_envs=16, n_continuations=4, estimator="pathwise"),
          ToyAgent(batch=16)]


@pytest.mark.parametrize("agent", AGENTS, ids=lambda a: type(a).__name__)
def test_every_agent_round_trips_through_json(agent):
    spec = json.loads(json.dumps(agent_spec(agent)))
    rebuilt = build_agent(spec)
    assert rebuilt == agent and type(rebuilt) is type(agent)


def test_registry_holds_the_agents_and_their_nested_configs():
    names = set(registered())
    assert {"jaxhedge.agents.deep_hedging:DeepHedging", "jaxhedge.agents.rlop:RLOP",
            "jaxhedge.agents.adaptive_qlbs:AdaptiveQLBS", "jaxhedge.train.toy:ToyAgent",
            "jaxhedge.env:EnvConfig"} <= names


def _spec(name, **fields):
    return {"__dataclass__": name, "fields": fields}


REFUSED = [
    _spec("os:system", command="echo pwned"),
    _spec("subprocess:Popen", args=["true"]),
    _spec("antigravity:Fly"),  # importing it opens a browser
    _spec("http.server:HTTPServer"),
    # a real agent module, but a class that is not an agent or config of the project
    _spec("jaxhedge.agents.deep_hedging:DeepHedgingHParams"),
    _spec("jaxhedge.agents.rlop:RLOPPreset"),
    # nested: a registered agent whose env names an unregistered class
    _spec("jaxhedge.agents.deep_hedging:DeepHedging",
          env=_spec("xml.dom.minidom:parseString")),
]


@pytest.mark.parametrize("spec", REFUSED, ids=lambda s: json.dumps(s)[17:50])
def test_unregistered_names_are_refused_and_nothing_is_imported(spec):
    before = set(sys.modules)
    with pytest.raises(SpecError) as err:
        build_agent(spec, source="RUN/checkpoints/5/meta/metadata")
    message = str(err.value)
    bad = spec["fields"]["env"]["__dataclass__"] if "env" in spec["fields"] \
        else spec["__dataclass__"]
    assert message.startswith("RUN/checkpoints/5/meta/metadata: ")
    assert repr(bad) in message and len(message.splitlines()) == 1
    assert set(sys.modules) == before  # not a single module imported


def test_malformed_specs_are_one_line_errors():
    for spec, needle in [
            (_spec("jaxhedge.train.toy:ToyAgent", batch=8, evil=1), "'evil'"),
            ({"__dataclass__": "jaxhedge.train.toy:ToyAgent"}, "malformed"),
            (_spec("jaxhedge.agents.rlop:RLOP", objective="nope"), "objective")]:
        with pytest.raises(SpecError, match=needle) as err:
            build_agent(spec, source="F")
        assert str(err.value).startswith("F: ") and len(str(err.value).splitlines()) == 1


def test_register_class_extends_the_registry():
    import dataclasses

    @dataclasses.dataclass(frozen=True)
    class Inner:
        k: int = 1

    @dataclasses.dataclass(frozen=True)
    class MyAgent:
        inner: Inner = Inner()
        widths: tuple = (1, 2)

    agent = MyAgent(Inner(3))
    spec = agent_spec(agent)
    with pytest.raises(SpecError, match="MyAgent"):
        build_agent(spec)
    register_class(MyAgent)  # registers the nested Inner too
    assert build_agent(spec) == agent
    with pytest.raises(TypeError):
        register_class(int)


def test_params_sha256_sees_dtype_shape_and_bytes():
    import jax
    import numpy as np

    a = {"w": np.arange(4, dtype=np.float32)}
    assert params_sha256(a) == params_sha256({"w": np.arange(4, dtype=np.float32)})
    assert params_sha256(a) != params_sha256({"w": np.arange(4, dtype=np.float64)})
    assert params_sha256(a) != params_sha256({"w": np.arange(4, dtype=np.float32)[None]})
    b = {"w": np.arange(4, dtype=np.float32)}
    b["w"][3] = np.nextafter(np.float32(3), np.float32(4))
    assert params_sha256(a) != params_sha256(b)
    k = jax.random.key(3)
    assert params_sha256(k) == params_sha256(jax.random.key_data(k))
    from jaxhedge.train import params_sha256 as from_train
    assert from_train is params_sha256
