"""Stress testing: historical windows (data loading), the scenario registry, the stress runner
and the ``jaxhedge stress`` command. See ``docs/stress.md``.

The synthetic scenario simulators live in :mod:`jaxhedge.markets.scenarios` and the scenario
mixture of robust training in :mod:`jaxhedge.markets.mixture` (markets is the lowest layer);
the names below are re-exported for convenience.
"""
from jaxhedge.contracts import Contract, validate_contract
from jaxhedge.markets.scenarios import (SYNTHETIC, Calm, Crash, GapAtExpiry, LiquidityDrought,
                                        RegimeSwitch, Scenario, ScenarioUnavailable, VolOfVol,
                                        VolSpike)
from jaxhedge.stress.historical import HistoricalWindow
from jaxhedge.stress.registry import all_scenarios, resolve_scenarios, scenario_names

__all__ = ["SYNTHETIC", "Calm", "Contract", "Crash", "GapAtExpiry", "HistoricalWindow",
           "LiquidityDrought", "RegimeSwitch", "Scenario", "ScenarioUnavailable", "VolOfVol",
           "VolSpike", "all_scenarios", "resolve_scenarios", "scenario_names",
           "validate_contract"]
