"""Market simulators: ``simulate(key, params, n_paths, n_steps, dt) -> MarketPaths``.

Every ``simulate`` is pure and jittable with ``n_paths``/``n_steps`` static
(``jax.jit(simulate, static_argnums=(2, 3))``) and vmappable over (key, params)
(``jax.vmap(simulate, in_axes=(0, 0, None, None, None))``). Output dtype follows
``params.s0`` / the default float (float32, or float64 under ``jax.enable_x64``).
Call :func:`validate` (host side) on params before jitting.

``MARKETS`` maps a name to ``(ParamsClass, simulate)`` for the parametric models whose params
have full defaults; the historical bootstrap (params need a return series) is exposed
separately as ``HistoricalParams`` / ``simulate_block_bootstrap``.
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

MARKETS: dict[str, tuple[type, object]] = {
    "gbm": (GBMParams, gbm.simulate),
    "heston": (HestonParams, heston.simulate),
    "merton": (MertonParams, merton.simulate),
    "regime": (RegimeParams, regime.simulate),
}

_VALIDATORS = {
    GBMParams: gbm.validate,
    HestonParams: heston.validate,
    MertonParams: merton.validate,
    RegimeParams: regime.validate,
    HistoricalParams: historical.validate,
}


def validate(params):
    """Dispatch to the params class's own ``validate`` (host-side; raises ValueError)."""
    try:
        fn = _VALIDATORS[type(params)]
    except KeyError:
        raise TypeError(f"validate: unknown market params type {type(params).__name__}") from None
    return fn(params)


__all__ = [
    "MARKETS",
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
    "merton",
    "regime",
    "simulate_block_bootstrap",
    "two_state",
    "validate",
]
