"""jaxhedge: train and stress-test option-hedging agents in one compiled JAX world.

The user API (:mod:`jaxhedge.api`) is available at the top level -- ``jaxhedge.fit``,
``jaxhedge.load``, the markets ``GBM``, ``Heston``, ``Merton``, ``Regime`` and the options
``Call``, ``Put`` -- and is imported on first use, so ``import jaxhedge`` stays cheap.
"""
import importlib

__version__ = "0.1.0"

_API = ("fit", "load", "GBM", "Heston", "Merton", "Regime", "Call", "Put", "Option",
        "Hedger", "HedgeResult")

__all__ = list(_API)


def __getattr__(name: str):
    if name in _API:
        return getattr(importlib.import_module("jaxhedge.api"), name)
    raise AttributeError(f"module 'jaxhedge' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_API))
