"""The market registry: adding a market kind = one module + one :func:`register_market`.

A :class:`MarketSpec` holds everything the rest of jaxhedge needs to know about a market kind
(params class, simulator, host-side validator, reference price, default params around a spot and
a vol, the calm vol a contract reads). ``HedgingEnv``, ``jaxhedge hedge``/``eval``, the CLI
choices and ``Contract.from_env`` all look markets up here; none keeps its own list.
Each built-in market module (gbm, heston, merton, regime) registers its spec when imported.

A toy market that never moves (zero vol: the price is the discounted intrinsic value of the
forward), registered and removed again:

>>> import jax.numpy as jnp
>>> from flax import struct
>>> from jaxhedge.markets import (MarketPaths, MarketSpec, market_names, market_spec,
...                               register_market, spec_for_params, unregister_market)
>>> @struct.dataclass
... class FrozenParams:
...     s0: float = 1.0
...     mu: float = 0.0
>>> def simulate(key, p, n_paths, n_steps, dt):
...     flat = jnp.full((n_paths, n_steps + 1), p.s0)
...     return MarketPaths(spot=flat, vol=0.0 * flat, cost_multiplier=1.0 + 0.0 * flat)
>>> def price(p, strike, maturity, rate, div_yield, is_call, n_steps):
...     fwd = p.s0 * jnp.exp((rate - div_yield) * maturity)
...     return jnp.exp(-rate * maturity) * jnp.maximum((fwd - strike) * (1 if is_call else -1), 0)
>>> spec = register_market(MarketSpec(
...     name="frozen", params_cls=FrozenParams, simulate=simulate, validate=lambda p: p,
...     reference_price=price, default_params=lambda s0, mu, sigma: FrozenParams(s0=s0, mu=mu),
...     calm_vol=lambda p: 0.0, description="a spot that never moves"))
>>> market_spec("frozen") is spec, spec_for_params(FrozenParams()) is spec
(True, True)
>>> float(spec.reference_price(spec.default_params(110.0, 0.0, 0.2), 100.0, 1.0, 0.0, 0.0, True, 4))
10.0
>>> market_spec("frozn")  # doctest: +ELLIPSIS
Traceback (most recent call last):
ValueError: market: unknown market 'frozn' (did you mean 'frozen'?); choose one of frozen, gbm, ...
>>> unregister_market("frozen")
>>> market_names()
('gbm', 'heston', 'merton', 'regime')
"""
from __future__ import annotations

import dataclasses
import difflib
import types
from typing import Any, Callable


@dataclasses.dataclass(frozen=True)
class MarketSpec:
    """Everything jaxhedge needs about one market kind.

    Attributes:
      name: the market's name in configs and on the command line (``EnvConfig.market``).
      params_cls: its params pytree class (must have ``s0`` and the real-world drift ``mu``;
        one params class belongs to one market, so params alone identify their market).
      simulate: ``simulate(key, params, n_paths, n_steps, dt) -> MarketPaths`` (pure, jittable
        with n_paths/n_steps static; see :mod:`jaxhedge.markets`).
      validate: ``validate(params) -> params``, host side; ValueError naming the field.
      reference_price: ``(params, strike, maturity, rate, div_yield, is_call, n_steps)`` -> the
        model's own risk-neutral price (what the hedger is paid); jittable in the numbers.
      default_params: ``(s0, mu, sigma) -> params``: the built-in market of this kind around a
        spot and a (diffusive) vol (``jaxhedge hedge``, ``eval --market``).
      calm_vol: ``params -> sigma``: the market's calm volatility (the contract's sigma);
        works on traced params.
      with_calm_vol: ``(params, sigma) -> params`` with the calm volatility set to ``sigma``
        (the inverse of ``calm_vol``; traced-safe). None: the market cannot take a
        contract's vol (agents that re-price other contracts on it then refuse it).
      description: one line for help texts.
    """

    name: str
    params_cls: type
    simulate: Callable
    validate: Callable[[Any], Any]
    reference_price: Callable
    default_params: Callable[[float, float, float], Any]
    calm_vol: Callable[[Any], Any]
    with_calm_vol: Callable[[Any, Any], Any] | None = None
    description: str = ""


_MARKETS: dict[str, MarketSpec] = {}
#: Read-only live view ``name -> MarketSpec`` of every registered market.
MARKETS = types.MappingProxyType(_MARKETS)


def register_market(spec: MarketSpec) -> MarketSpec:
    """Add ``spec``; ValueError if its name or params class is already registered."""
    if not isinstance(spec, MarketSpec):
        raise TypeError(f"register_market: expected a MarketSpec (got {type(spec).__name__})")
    if not isinstance(spec.name, str) or not spec.name:
        raise ValueError(f"market.name: must be a non-empty string (got {spec.name!r})")
    if spec.name in _MARKETS:
        raise ValueError(f"market.name: {spec.name!r} is already registered")
    if not isinstance(spec.params_cls, type):
        raise ValueError(f"market.params_cls: must be a class (got {spec.params_cls!r})")
    for other in _MARKETS.values():
        if other.params_cls is spec.params_cls:
            raise ValueError(f"market.params_cls: {spec.params_cls.__name__} already belongs "
                             f"to market {other.name!r}")
    for field in ("simulate", "validate", "reference_price", "default_params", "calm_vol"):
        if not callable(getattr(spec, field)):
            raise ValueError(f"market.{field}: must be callable (got {getattr(spec, field)!r})")
    _MARKETS[spec.name] = spec
    return spec


def unregister_market(name: str) -> None:
    """Remove a registered market (for tests and plug-ins that clean up after themselves)."""
    market_spec(name)
    del _MARKETS[name]


def market_names() -> tuple[str, ...]:
    """Names of the registered markets, sorted."""
    return tuple(sorted(_MARKETS))


def unknown_name(field: str, kind: str, name, names) -> ValueError:
    """The one-line error for an unknown registry name, with the closest name suggested."""
    close = difflib.get_close_matches(str(name), list(names), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return ValueError(f"{field}: unknown {kind} {name!r}{hint}; choose one of {', '.join(names)}")


def market_spec(name: str, field: str = "market") -> MarketSpec:
    """The spec registered as ``name``; ValueError (prefixed ``field``) naming the choices."""
    try:
        return _MARKETS[name]
    except (KeyError, TypeError):
        raise unknown_name(field, "market", name, market_names()) from None


def spec_for_params(params) -> MarketSpec:
    """The spec whose params class ``params`` is an instance of; TypeError if none."""
    for spec in _MARKETS.values():
        if type(params) is spec.params_cls:
            return spec
    raise TypeError(f"market: unknown market params type {type(params).__name__}; registered: "
                    + ", ".join(s.params_cls.__name__ for s in _MARKETS.values()))
