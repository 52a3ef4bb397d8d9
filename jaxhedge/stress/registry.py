"""Scenario names -> default scenario instances, and parsing of ``--scenarios``."""
from __future__ import annotations

import difflib

from jaxhedge.stress.historical import SOURCES, HistoricalWindow
from jaxhedge.markets.scenarios import SYNTHETIC, Scenario


def all_scenarios() -> dict[str, Scenario]:
    """Every named scenario with its default parameters, calm first, historical last."""
    out: dict[str, Scenario] = {name: cls() for name, cls in SYNTHETIC.items()}
    out.update({src: HistoricalWindow(source=src) for src in SOURCES})
    return out


def scenario_names() -> list[str]:
    return list(all_scenarios())


def resolve_scenarios(spec: str | list[str] | tuple[str, ...]) -> list[Scenario]:
    """``"all"`` or a comma-separated list of names -> scenarios, ``calm`` always first.

    ``calm`` is added when absent: every degradation ratio is taken against it. Unknown
    names raise ``ValueError("scenarios: unknown scenario 'x' (did you mean 'y'?) ...")``.

    >>> [s.name for s in resolve_scenarios("crash, vol_spike")]
    ['calm', 'crash', 'vol_spike']
    >>> resolve_scenarios(["calm", "spy_2020q1"])[1].source
    'spy_2020q1'
    """
    known = all_scenarios()
    names = spec.split(",") if isinstance(spec, str) else list(spec)
    names = [n.strip() for n in names if n.strip()]
    if not names:
        raise ValueError(f"scenarios: give 'all' or names from {', '.join(known)}")
    if "all" in names:
        names = list(known)
    for n in names:
        if n not in known:
            near = difflib.get_close_matches(n, list(known), n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise ValueError(f"scenarios: unknown scenario {n!r}{hint}; choose 'all' or from "
                             f"{', '.join(known)}")
    ordered = ["calm"] + [n for n in dict.fromkeys(names) if n != "calm"]
    return [known[n] for n in ordered]
