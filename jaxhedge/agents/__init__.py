"""Hedging agents. A hedger is a pytree-callable ``hedger(obs) -> shares``."""
from jaxhedge.agents.delta import DeltaHedger
from jaxhedge.agents.naked import NakedHedger
from jaxhedge.agents.whalley_wilmott import WhalleyWilmottHedger

CLASSICAL = {"delta": DeltaHedger, "ww": WhalleyWilmottHedger, "naked": NakedHedger}

__all__ = ["CLASSICAL", "DeltaHedger", "NakedHedger", "WhalleyWilmottHedger"]
