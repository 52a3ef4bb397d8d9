"""Stress testing: named scenarios (a market plus a cost regime), the stress runner, and
scenario-mixture (robust) training. See ``docs/stress.md``."""
from jaxhedge.stress.contract import Contract, validate_contract
from jaxhedge.stress.registry import all_scenarios, resolve_scenarios, scenario_names
from jaxhedge.stress.scenarios import (SYNTHETIC, Calm, Crash, GapAtExpiry, LiquidityDrought,
                                       RegimeSwitch, Scenario, ScenarioUnavailable, VolOfVol,
                                       VolSpike)

__all__ = ["SYNTHETIC", "Calm", "Contract", "Crash", "GapAtExpiry", "LiquidityDrought",
           "RegimeSwitch", "Scenario", "ScenarioUnavailable", "VolOfVol", "VolSpike",
           "all_scenarios", "resolve_scenarios", "scenario_names", "validate_contract"]
