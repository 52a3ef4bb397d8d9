"""Hedging agents. A hedger is a pytree-callable ``hedger(obs) -> shares``.

Classical hedgers are registered in :mod:`jaxhedge.agents.registry` (importing this package
registers delta, ww and naked); ``CLASSICAL`` is a read-only view ``name -> HedgerSpec``.
"""
from jaxhedge.agents import delta, naked, whalley_wilmott
from jaxhedge.agents.delta import DeltaHedger
from jaxhedge.agents.naked import NakedHedger
from jaxhedge.agents.registry import (
    HEDGERS,
    HedgerSpec,
    build_hedger,
    hedger_names,
    hedger_spec,
    register_hedger,
    unregister_hedger,
)
from jaxhedge.agents.whalley_wilmott import WhalleyWilmottHedger

# The built-in classical hedgers: one registration each (a new hedger module adds one line).
register_hedger(delta.SPEC)
register_hedger(whalley_wilmott.SPEC)
register_hedger(naked.SPEC)

CLASSICAL = HEDGERS

__all__ = ["CLASSICAL", "DeltaHedger", "HEDGERS", "HedgerSpec", "NakedHedger",
           "WhalleyWilmottHedger", "build_hedger", "hedger_names", "hedger_spec",
           "register_hedger", "unregister_hedger"]
