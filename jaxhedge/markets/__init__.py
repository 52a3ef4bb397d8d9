"""Market simulators: ``simulate(key, params, n_paths, n_steps, dt) -> MarketPaths``.

Every ``simulate`` is pure and jittable with ``n_paths``/``n_steps`` static
(``jax.jit(simulate, static_argnums=(2, 3))``) and vmappable over (key, params)
(``jax.vmap(simulate, in_axes=(0, 0, None, None, None))``). Output dtype follows
``params.s0`` / the default float (float32, or float64 under ``jax.enable_x64``).
Call :func:`validate` (host side) on params before jitting.

Market kinds are registered in :mod:`jaxhedge.markets.registry` (one :class:`MarketSpec`
each: params class, simulate, validate, reference price, defaults); ``MARKETS`` is a read-only
view ``name -> MarketSpec`` of it. Importing this package registers gbm, heston, merton and
regime (each module defines its ``SPEC``). The historical bootstrap (params need a return series)
is not a registered market; it is exposed as ``HistoricalParams`` / ``simulate_block_bootstrap``.
"""
from __future__ import annotations

from jaxhedge.markets import gbm, heston, historical, merton, regime
from jaxhedge.markets.base import MarketPaths
from jaxhedge.markets.gbm import GBMParams
from jaxhedge.markets.heston import HestonParams
from jaxhedge.markets.historical import (
    HistoricalParams,
    SpotSeries,
    bootstrap_indices,
    historical_path,
    load_chain_spot,
    load_spot_series,
    simulate_block_bootstrap,
)
from jaxhedge.markets.merton import MertonParams
from jaxhedge.markets.regime import RegimeParams, two_state
from jaxhedge.markets.registry import (
    MARKETS,
    MarketSpec,
    market_names,
    market_spec,
    register_market,
    spec_for_params,
    unregister_market,
)

# The built-in markets: one registration each (a new market module adds one line here).
register_market(gbm.SPEC)
register_market(heston.SPEC)
register_market(merton.SPEC)
register_market(regime.SPEC)


def validate(params):
    """Dispatch to the validator of the params' market (host-side; raises ValueError).

    TypeError for params of no registered market (historical params keep their own validator).
    """
    if type(params) is HistoricalParams:
        return historical.validate(params)
    return spec_for_params(params).validate(params)


__all__ = [
    "MARKETS",
    "MarketSpec",
    "GBMParams",
    "HestonParams",
    "HistoricalParams",
    "MarketPaths",
    "MertonParams",
    "RegimeParams",
    "SpotSeries",
    "bootstrap_indices",
    "gbm",
    "heston",
    "historical",
    "historical_path",
    "load_chain_spot",
    "load_spot_series",
    "market_names",
    "market_spec",
    "merton",
    "regime",
    "register_market",
    "simulate_block_bootstrap",
    "spec_for_params",
    "two_state",
    "unregister_market",
    "validate",
]
