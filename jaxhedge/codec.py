"""Agent specs: the JSON a run directory records to rebuild its agent, and the registry
that alone decides which classes such a file may name.

An agent is a frozen dataclass of plain values (ints, floats, strings, tuples, nested
config dataclasses such as :class:`~jaxhedge.env.EnvConfig`). :func:`agent_spec` writes it
as ``{"__dataclass__": "module:QualName", "fields": {...}}``; :func:`build_agent` reads it
back. Decoding never imports anything: a class name is looked up in :data:`REGISTRY`, which
holds the project's agents (deep hedging, RLOP, Adaptive-QLBS), every dataclass reachable
from their fields, and whatever :func:`register_class` added (the toy agent of
:mod:`jaxhedge.train.toy` registers itself). A run directory is data, so opening an
untrusted one (``eval``, ``stress``, ``--resume``) cannot run code of its choosing.

>>> from jaxhedge.env import EnvConfig
>>> spec = agent_spec(EnvConfig(market="gbm", n_steps=4))
>>> spec["__dataclass__"]
'jaxhedge.env:EnvConfig'
>>> build_agent(spec)
EnvConfig(market='gbm', n_steps=4, option='call')
>>> try:
...     build_agent({"__dataclass__": "os:system", "fields": {}}, source="run/meta")
... except SpecError as err:
...     print(err)
run/meta: agent spec names 'os:system', not a registered agent or config class
"""
from __future__ import annotations

import dataclasses
import hashlib
import typing

import jax
import numpy as np

from jaxhedge.markets.mixture import ScenarioMixture
from jaxhedge.agents.adaptive_qlbs import AdaptiveQLBS
from jaxhedge.agents.deep_hedging import DeepHedging
from jaxhedge.agents.rlop import RLOP

__all__ = ["agent_spec", "build_agent", "register_class", "registered", "REGISTRY",
           "SpecError", "params_sha256"]

#: ``"module:QualName" -> class``: the only classes :func:`build_agent` constructs.
REGISTRY: dict[str, type] = {}


class SpecError(ValueError):
    """An agent spec that names an unregistered class or does not fit its class."""


def class_name(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def register_class(cls: type) -> type:
    """Allow ``cls`` (a dataclass) and every dataclass its fields hold in agent specs.

    Returns ``cls``, so it works as a class decorator.
    """
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        raise TypeError(f"register_class: {cls!r} is not a dataclass type")
    if REGISTRY.get(class_name(cls)) is cls:
        return cls
    REGISTRY[class_name(cls)] = cls
    for nested in _nested_dataclasses(cls):
        register_class(nested)
    return cls


def registered() -> list[str]:
    """Names of the registered classes, sorted."""
    return sorted(REGISTRY)


def _nested_dataclasses(cls: type) -> set[type]:
    """Dataclass types named by ``cls``'s field annotations or held by its defaults."""
    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # noqa: BLE001 - an unresolvable annotation: fall back to defaults
        hints = {}
    found: set[type] = set()

    def visit(tp):
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            found.add(tp)
            return
        for arg in typing.get_args(tp):  # Optional[X], X | None, tuple[X, ...]
            visit(arg)

    for f in dataclasses.fields(cls):
        visit(hints.get(f.name))
        if f.default is not dataclasses.MISSING and dataclasses.is_dataclass(f.default):
            found.add(type(f.default))
    found.discard(cls)
    return found


# ScenarioMixture sits in DeepHedging.path_sampler, typed Any, so it is not found by the
# field walk above: robust deep-hedging runs need it named here.
for _cls in (DeepHedging, RLOP, AdaptiveQLBS, ScenarioMixture):
    register_class(_cls)


# --------------------------------------------------------------------------- encode
def agent_spec(agent) -> dict | None:
    """JSON description of a dataclass agent (class name + init fields), or None when the
    agent is not a dataclass of plain values (then resuming needs ``agent=``)."""
    try:
        return _encode(agent) if dataclasses.is_dataclass(agent) else None
    except TypeError:
        return None


def _encode(x):
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return {"__dataclass__": class_name(type(x)),
                "fields": {f.name: _encode(getattr(x, f.name))
                           for f in dataclasses.fields(x) if f.init}}
    if isinstance(x, tuple):
        return {"__tuple__": [_encode(v) for v in x]}
    if isinstance(x, list):
        return [_encode(v) for v in x]
    if isinstance(x, dict) and all(isinstance(k, str) for k in x):
        return {"__dict__": {k: _encode(v) for k, v in x.items()}}
    if x is None or type(x) in (bool, int, float, str):
        return x
    raise TypeError(f"cannot record {type(x).__name__} in an agent spec")


# --------------------------------------------------------------------------- decode
def build_agent(spec, source: str = "agent spec"):
    """Rebuild an agent from :func:`agent_spec` output; only registered classes.

    ``source`` (the file the spec came from) starts every error message.

    Raises:
      SpecError: an unregistered class name, a malformed spec, or fields the class
        rejects; one line naming ``source``.
    """
    return _decode(spec, str(source))


def _decode(x, source: str):
    if isinstance(x, list):
        return [_decode(v, source) for v in x]
    if x is None or type(x) in (bool, int, float, str):
        return x
    if not isinstance(x, dict):
        raise SpecError(f"{source}: agent spec holds a {type(x).__name__}")
    if set(x) == {"__tuple__"} and isinstance(x["__tuple__"], list):
        return tuple(_decode(v, source) for v in x["__tuple__"])
    if set(x) == {"__dict__"} and isinstance(x["__dict__"], dict):
        return {k: _decode(v, source) for k, v in x["__dict__"].items()}
    name, fields = x.get("__dataclass__"), x.get("fields")
    if set(x) != {"__dataclass__", "fields"} or not isinstance(name, str) \
            or not isinstance(fields, dict):
        raise SpecError(f"{source}: malformed agent spec entry (keys {sorted(map(str, x))})")
    cls = REGISTRY.get(name)
    if cls is None:
        raise SpecError(f"{source}: agent spec names {name!r}, not a registered agent or "
                        f"config class")
    init = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(fields) - init)
    if unknown:
        raise SpecError(f"{source}: {name} has no field(s) {', '.join(map(repr, unknown))}")
    kwargs = {k: _decode(v, source) for k, v in fields.items()}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as err:
        raise SpecError(f"{source}: {name}: {str(err).splitlines()[0]}") from None


# --------------------------------------------------------------------------- hashing
def params_sha256(tree) -> str:
    """SHA-256 over ``jax.tree.leaves(tree)`` in order: dtype, shape and raw bytes of each."""
    h = hashlib.sha256()
    for leaf in jax.tree.leaves(tree):
        if jax.dtypes.issubdtype(getattr(leaf, "dtype", None), jax.dtypes.prng_key):
            leaf = jax.random.key_data(leaf)
        a = np.ascontiguousarray(np.asarray(leaf))
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()
