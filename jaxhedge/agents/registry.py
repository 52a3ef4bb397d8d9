"""The hedger registry: adding a classical (rule-based) hedger = one module + one registration.

A :class:`HedgerSpec` names a hedger and says how to build it for an option:
``build(option, **options) -> hedger`` where ``hedger(obs) -> shares`` is a pytree-callable
(see :mod:`jaxhedge.rollout`). ``jaxhedge hedge --agent``, ``jaxhedge stress`` and ``jaxhedge
eval`` take their classical hedgers from here.

Options a builder may use (every builder accepts all of them and ignores the ones it does not
use, so callers can pass one common set):

* ``risk_aversion``: utility risk aversion lambda, per unit of money (ww: its band width).
* ``sigma``: a fixed hedging volatility; ``None`` = the vol the market shows at t (delta, ww).
* ``cost``: the proportional cost the hedger plans for; ``None`` = the cost in force at t (ww).

Built in: ``delta`` (Black-Scholes delta), ``ww`` (Whalley–Wilmott band) and ``naked`` (never
trades), registered by :mod:`jaxhedge.agents`.

A hedger that holds half the Black-Scholes delta, registered and removed again:

>>> from flax import struct
>>> from jaxhedge.agents import (HedgerSpec, hedger_names, hedger_spec, register_hedger,
...                              unregister_hedger)
>>> from jaxhedge.agents.delta import DeltaHedger
>>> @struct.dataclass
... class HalfDelta:
...     inner: DeltaHedger
...     def __call__(self, obs):
...         return 0.5 * self.inner(obs)
>>> spec = register_hedger(HedgerSpec(
...     name="half-delta", description="half the BS delta",
...     build=lambda option, sigma=None, **_: HalfDelta(DeltaHedger(
...         vol=float("nan") if sigma is None else sigma, is_call=option == "call"))))
>>> hedger_spec("half-delta").build("put", risk_aversion=2.0).inner.is_call
False
>>> hedger_spec("half-detla")  # doctest: +ELLIPSIS
Traceback (most recent call last):
ValueError: agent: unknown hedger 'half-detla' (did you mean 'half-delta'?); choose one of ...
>>> unregister_hedger("half-delta")
>>> hedger_names()
('delta', 'naked', 'ww')
"""
from __future__ import annotations

import dataclasses
import types
from typing import Callable

from jaxhedge.markets.registry import unknown_name

OPTION_TYPES = ("call", "put")
#: The options every builder accepts (module docstring); anything else is a caller's mistake.
HEDGER_OPTIONS = ("risk_aversion", "sigma", "cost")


@dataclasses.dataclass(frozen=True)
class HedgerSpec:
    """A named classical hedger.

    Attributes:
      name: the hedger's name on the command line and in stress agent lists.
      build: ``build(option: str, **options) -> hedger`` with ``option`` "call" or "put" and
        the options of the module docstring (a builder ignores options it does not use).
      description: one line for help texts.
    """

    name: str
    build: Callable
    description: str = ""


_HEDGERS: dict[str, HedgerSpec] = {}
#: Read-only live view ``name -> HedgerSpec`` of every registered hedger.
HEDGERS = types.MappingProxyType(_HEDGERS)


def register_hedger(spec: HedgerSpec) -> HedgerSpec:
    """Add ``spec``; ValueError if its name is taken."""
    if not isinstance(spec, HedgerSpec):
        raise TypeError(f"register_hedger: expected a HedgerSpec (got {type(spec).__name__})")
    if not isinstance(spec.name, str) or not spec.name:
        raise ValueError(f"hedger.name: must be a non-empty string (got {spec.name!r})")
    if spec.name in _HEDGERS:
        raise ValueError(f"hedger.name: {spec.name!r} is already registered")
    if not callable(spec.build):
        raise ValueError(f"hedger.build: must be callable (got {spec.build!r})")
    _HEDGERS[spec.name] = spec
    return spec


def unregister_hedger(name: str) -> None:
    """Remove a registered hedger (for tests and plug-ins that clean up after themselves)."""
    hedger_spec(name)
    del _HEDGERS[name]


def hedger_names() -> tuple[str, ...]:
    """Names of the registered hedgers, sorted."""
    return tuple(sorted(_HEDGERS))


def hedger_spec(name: str, field: str = "agent") -> HedgerSpec:
    """The spec registered as ``name``; ValueError (prefixed ``field``) naming the choices."""
    try:
        return _HEDGERS[name]
    except (KeyError, TypeError):
        raise unknown_name(field, "hedger", name, hedger_names()) from None


def build_hedger(name: str, option: str = "call", **options):
    """``hedger_spec(name).build(option, **options)`` after checking ``option`` and that
    every option is one of :data:`HEDGER_OPTIONS`."""
    spec = hedger_spec(name)
    if option not in OPTION_TYPES:
        raise ValueError(f"option: must be one of {OPTION_TYPES} (got {option!r})")
    bad = sorted(set(options) - set(HEDGER_OPTIONS))
    if bad:
        raise ValueError(f"{bad[0]}: not an option of the classical hedger {name!r} "
                         f"(allowed: {', '.join(HEDGER_OPTIONS)})")
    return spec.build(option, **options)
