"""The study's guards against unfinished agents: sanity gates and fits sitting on a bound.

* :func:`gate_agents` runs :mod:`jaxhedge.gates` on every RL agent the study uses (trained
  by ``reproduce`` or loaded from ``--agents``: :func:`jaxhedge.reproduce.study.run_study`
  gates whatever it is handed, so both take one path), prints the table of every check and
  returns the verdicts. A failing agent keeps its rows in every
  table and plot, marked by :func:`display_name`, and :mod:`.summary` leaves it out of
  winners and rank correlations with the reason printed.
* :func:`bound_counts` counts the per-slice (sigma, mu) surface fits that ended on a bound
  of their search box: an agent whose surface only reaches the market at sigma = 0.01 or at
  the mu cap is not describing the market with its inputs, whatever its IVRMSE says.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from jaxhedge import gates

__all__ = ["AgentGates", "gate_agents", "display_name", "bound_counts",
           "surface_bounds", "BOUND_RTOL", "NOT_GATED"]

#: a fitted input within this fraction of the box width of a bound counts as on the bound
#: (the authors' sigmoid transform reaches a bound only asymptotically, so "equal" is never
#: seen; 1e-3 of (0.01, 3) is sigma < 0.013, a vol no SPY/XOP slice trades at)
BOUND_RTOL = 1e-3
#: the gate entry of a model that is not a trained agent (BS, JD, SV: closed forms); not
#: "n/a", which pandas reads back as NaN
NOT_GATED = "not gated"


@dataclasses.dataclass(frozen=True)
class AgentGates:
    """One agent's gate verdicts. ``label`` is "" when every gate passed, else
    ``"GATE FAILED: <checks>"`` (:func:`jaxhedge.gates.gate_label`)."""

    model: str
    run_dir: str
    results: tuple

    @property
    def label(self) -> str:
        return gates.gate_label(list(self.results))

    @property
    def passed(self) -> bool:
        return not self.label

    def as_json(self) -> dict:
        return {"run_dir": self.run_dir, "passed": self.passed, "label": self.label,
                "gates": [gates.as_dict(r) for r in self.results]}


def _results(ta, spec) -> list:
    from jaxhedge.agents.base import missing_methods

    missing = missing_methods(ta.agent)
    if missing:  # same verdict as `jaxhedge check`: no protocol, no gates, not rankable
        return [gates.GateResult("protocol", False, float(len(missing)),
                                 f"{type(ta.agent).__name__} lacks {', '.join(missing)}")]
    return gates.agent_gates(ta.agent, ta.hparams, ta.state, spec)


def gate_agents(agents: dict, spec: gates.GateSpec | None = None, show=True
                ) -> dict[str, AgentGates]:
    """``{model: AgentGates}`` for every agent of ``{model: TrainedAgent}``; prints each
    agent's gate table (``show``) and one line per failing agent."""
    from jaxhedge.reproduce.config import MODEL_LABELS

    spec = spec or gates.GateSpec()
    out = {}
    for model, ta in agents.items():
        res = tuple(_results(ta, spec))
        out[model] = AgentGates(model, str(ta.run_dir), res)
        if show:
            gates.print_gates(list(res), title=f"sanity gates: {MODEL_LABELS.get(model, model)}"
                              f" ({ta.run_dir})")
            if not out[model].passed:
                print(f"{MODEL_LABELS.get(model, model)}: {out[model].label} -- kept in the "
                      f"tables, marked, and excluded from winners and rank correlations")
    return out


def display_name(name: str, label: str) -> str:
    """The name every table cell and plot legend shows: ``"RLOP [GATE FAILED: x]"`` for a
    failing agent, the plain name otherwise."""
    return f"{name} [{label}]" if label else name


def _on(x, bound, width, upper: bool):
    if bound is None or not math.isfinite(bound):
        return np.zeros(x.shape, bool)  # an unbounded direction cannot be sat on
    tol = BOUND_RTOL * width if math.isfinite(width) else BOUND_RTOL * max(abs(bound), 1.0)
    return (x >= bound - tol) if upper else (x <= bound + tol)


def bound_counts(sigma, mu, sigma_bounds, mu_bounds) -> dict[str, int]:
    """How many per-slice fits sit on each bound of their box.

    Args:
      sigma, mu: ``(n,)`` fitted inputs (:class:`jaxhedge.calibrate.surface.SurfaceFit`
        fields); non-finite fits are counted in ``nonfinite``, not on a bound.
      sigma_bounds, mu_bounds: the ``(lo, hi)`` box the fit searched; ``None`` or an
        infinite end means unbounded on that side.

    Returns:
      ``n`` (fits), ``sigma_lo``, ``sigma_hi``, ``mu_lo``, ``mu_hi`` (fits on each bound),
      ``on_bound`` (fits on at least one bound) and ``nonfinite``.
    """
    sigma, mu = np.asarray(sigma, np.float64).ravel(), np.asarray(mu, np.float64).ravel()
    if sigma.shape != mu.shape:
        raise ValueError(f"bound_counts: sigma and mu must have one shape (got {sigma.shape}, "
                         f"{mu.shape})")
    finite = np.isfinite(sigma) & np.isfinite(mu)
    out = {"n": int(sigma.size)}
    flags = []
    for name, x, b in (("sigma", sigma, sigma_bounds), ("mu", mu, mu_bounds)):
        lo, hi = (None, None) if b is None else (b[0], b[1])
        lo = None if lo is None else float(lo)
        hi = None if hi is None else float(hi)
        width = (hi - lo) if lo is not None and hi is not None else math.inf
        for side, bound, upper in (("lo", lo, False), ("hi", hi, True)):
            f = _on(x, bound, width, upper) & finite
            out[f"{name}_{side}"] = int(f.sum())
            flags.append(f)
    out["on_bound"] = int(np.logical_or.reduce(flags).sum())
    out["nonfinite"] = int((~finite).sum())
    return out


def surface_bounds(fit=None) -> tuple:
    """``(sigma_bounds, mu_bounds)`` of an RL surface fit, ``None`` for an unbounded side.

    In order: the fit's own ``sigma_bounds`` / ``mu_bounds`` if it records them; for a fit
    by the authors' Adam protocol (``fit.method == "authors"``) sigma's sigmoid range
    ``AUTHORS_SIGMA`` = (lo, scale) and an unbounded mu; for ``"authors-lm"`` that sigma
    range and the LM box ``MU_BOUNDS``; else :mod:`jaxhedge.calibrate.surface`'s LM box
    ``SIGMA_BOUNDS`` / ``MU_BOUNDS``.
    """
    from jaxhedge.calibrate import surface

    own = tuple(getattr(fit, f"{n}_bounds", None) for n in ("sigma", "mu"))
    if fit is not None and any(b is not None for b in own):
        return own
    lm = getattr(surface, "SIGMA_BOUNDS", None), getattr(surface, "MU_BOUNDS", None)
    method = getattr(fit, "method", "lm")
    sig = getattr(surface, "AUTHORS_SIGMA", None)
    if method in ("authors", "authors-lm") and sig is not None:
        sigma = (sig[0], sig[0] + sig[1])
        return sigma, (None if method == "authors" else lm[1])
    return lm
