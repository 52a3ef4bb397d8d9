"""Build bundles (:mod:`jaxhedge.serving.bundle`) from a classical hedger or a trained agent.

* :func:`bundle_classical` -- a registered classical hedger (``delta`` is the reference) for
  calls and puts, priced by Black-Scholes at the snapshot's vol; its training ranges are
  unbounded (it has no training distribution to leave).
* :func:`bundle_agent` -- an agent of the protocol in :mod:`jaxhedge.agents.base`, from
  ``(agent, hparams, state)``: hedge ``agent.hedger(state, hp)``, price
  ``agent.price(state, hp, contract)``, gates ``jaxhedge.gates.agent_gates``.
* :func:`export_run` -- a trained run directory (``jaxhedge export RUN_DIR``); the card's
  ``metrics`` are the member's last row of ``metrics.jsonl``.

Training ranges of an agent (the model card's ``training_ranges``; positions outside them
fall back to the BS delta in the advisor), first that applies:

1. ``ranges=`` given explicitly;
2. the agent's :class:`~jaxhedge.contracts.ContractDistribution` ``hparams.contracts`` (RLOP,
   Adaptive-QLBS): moneyness S/K in ``[s0_lo/strike_hi, s0_hi/strike_lo]``,
   tau in ``[dt, n_steps dt]``, sigma and cost their ranges;
3. otherwise the sanity-gate grid around the evaluation contract (the contracts the gates
   checked): moneyness ``1/moneyness`` of :class:`~jaxhedge.gates.GateSpec`, tau its maturity
   fractions of T, sigma its vol factors of sigma, cost ``[0, cost]``.

An agent hedges the option type it was trained on (``evaluation_contract(hp).option``).
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import math

import jax
import jax.numpy as jnp
import numpy as np

from jaxhedge import gates as gates_mod
from jaxhedge import pricing
from jaxhedge.agents import build_hedger, hedger_spec
from jaxhedge.contracts import Contract, ContractDistribution
from jaxhedge.runinfo import run_metadata
from jaxhedge.serving.bundle import export_bundle

RANGE_KEYS = ("moneyness", "tau", "sigma", "cost")


def _finite_or_none(x):
    x = float(x)
    return x if math.isfinite(x) else None


def gate_records(results) -> list[dict]:
    return [{"name": r.name, "status": r.status, "worst": _finite_or_none(r.worst),
             "detail": r.detail} for r in results]


def _card(agent: str, kind: str, options, ranges: dict, ranges_source: str,
          contract: Contract, results, metrics, source) -> dict:
    meta = run_metadata()
    return {
        "agent": agent, "kind": kind, "options": list(options),
        "training_ranges": ranges, "ranges_source": ranges_source,
        "evaluation_contract": {k: (_finite_or_none(v) if isinstance(v, float) else v)
                                for k, v in contract.describe().items()},
        # what the advisor shows the policy for the inputs a desk does not have
        "observation_defaults": {"drift": float(contract.mu),
                                 "maturity": float(contract.maturity)},
        "gates": gate_records(results), "gate_label": gates_mod.gate_label(results),
        "metrics": metrics, "source": source,
        "git_sha": meta["git_sha"], "run_metadata": meta,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def _bs_price(c, is_call):
    return pricing.bs_price(c.s0, c.strike, c.maturity, c.rate, c.sigma, c.div_yield, is_call)


def bundle_classical(out_dir, name: str = "delta", contract: Contract = Contract(), **options):
    """Bundle the registered classical hedger ``name`` (calls and puts, BS prices).

    ``contract`` is the reference contract its gates are evaluated around; ``options`` go to
    the hedger's builder (:mod:`jaxhedge.agents.registry`).
    """
    hedger_spec(name, field="--classical")
    params = {o: build_hedger(name, o, **options) for o in ("call", "put")}

    def hedger_fn(p, obs, is_call):
        return jnp.where(is_call, p["call"](obs), p["put"](obs))

    results = {o: gates_mod.run_gates(lambda c, o=o: _bs_price(c, o == "call"), params[o],
                                      contract.replace(option=o)) for o in ("call", "put")}
    flat = [dataclasses.replace(r, name=f"{o}.{r.name}") for o, rs in results.items() for r in rs]
    card = _card(name, "classical", ("call", "put"), {k: [None, None] for k in RANGE_KEYS},
                 "unbounded", contract, flat, None, {"classical": name, "options": {
                     k: _finite_or_none(v) if isinstance(v, (int, float)) else v
                     for k, v in options.items()}})
    return export_bundle(out_dir, hedger_fn, lambda p, c, is_call: _bs_price(c, is_call),
                         params, card)


def _distribution(agent, hparams):
    """The agent's training distribution: the RL agents' ``hparams.contracts`` (None for an
    agent trained on one contract, such as deep hedging)."""
    del agent
    d = getattr(hparams, "contracts", None)
    return d if isinstance(d, ContractDistribution) else None


def training_ranges(agent, hparams, contract: Contract,
                    spec: gates_mod.GateSpec = gates_mod.GateSpec()) -> tuple[dict, str]:
    """``({key: [lo, hi]}, source)`` of the agent's training inputs (module docstring)."""
    d = _distribution(agent, hparams)
    f = lambda x: float(np.asarray(x))  # noqa: E731
    if d is not None:
        return {"moneyness": [f(d.s0_lo) / f(d.strike_hi), f(d.s0_hi) / f(d.strike_lo)],
                # dates of dt (or of a dt drawn on [dt, dt_hi] per contract)
                "tau": [f(d.dt), max(f(d.dt), f(d.dt_hi)) * contract.n_steps],
                "sigma": [f(d.sigma_lo), f(d.sigma_hi)],
                "cost": [f(d.cost_lo), f(d.cost_hi)]}, "distribution"
    T, sig = f(contract.maturity), f(contract.sigma)
    return {"moneyness": [1 / max(spec.moneyness), 1 / min(spec.moneyness)],
            "tau": [min(spec.maturity_fractions) * T, max(spec.maturity_fractions) * T],
            "sigma": [min(spec.vol_factors) * sig, max(spec.vol_factors) * sig],
            "cost": [0.0, f(contract.cost)]}, "gate grid"


def _check_ranges(ranges: dict) -> dict:
    out = {}
    for k in RANGE_KEYS:
        v = ranges.get(k)
        if not (isinstance(v, (list, tuple)) and len(v) == 2):
            raise ValueError(f"ranges.{k}: must be [lo, hi] (got {v!r})")
        lo, hi = (None if x is None else float(x) for x in v)
        if lo is not None and hi is not None and not lo <= hi:
            raise ValueError(f"ranges.{k}: lo must be <= hi (got {lo:g}, {hi:g})")
        out[k] = [lo, hi]
    return out


def bundle_agent(out_dir, agent, hparams, state, *, metrics: dict | None = None,
                 ranges: dict | None = None, source: dict | None = None):
    """Bundle a trained agent of the protocol (module docstring)."""
    contract = agent.evaluation_contract(hparams)
    hedger = agent.hedger(state, hparams)
    results = gates_mod.agent_gates(agent, hparams, state)
    if ranges is None:
        ranges, ranges_source = training_ranges(agent, hparams, contract)
    else:
        ranges_source = "given"
    ranges = _check_ranges(ranges)
    statics = dict(n_steps=contract.n_steps, option=contract.option,
                   charge_entry=contract.charge_entry, charge_unwind=contract.charge_unwind)

    def hedger_fn(p, obs, is_call):
        del is_call  # the card's "options" says which type it hedges
        return p["hedger"](obs)

    def price_fn(p, c, is_call):
        del is_call
        price = agent.price(p["state"], p["hparams"], c.replace(**statics))
        return jnp.broadcast_to(jnp.asarray(price), jnp.shape(c.s0))

    params = {"hedger": hedger, "state": state, "hparams": hparams}
    params = jax.tree.map(np.asarray, params)
    card = _card(getattr(agent, "name", type(agent).__name__), "trained", (contract.option,),
                 ranges, ranges_source, contract, results, metrics, source)
    return export_bundle(out_dir, hedger_fn, price_fn, params, card)


def export_run(run_dir, out_dir, member: int = 0):
    """Bundle member ``member`` of the trained run in ``run_dir``."""
    from jaxhedge.runs import load_trained, read_metrics

    agent, hparams, state = load_trained(run_dir, member)
    rows = [r for r in read_metrics(run_dir) if r.get("member") == member]
    metrics = {"final_training_metrics": rows[-1]} if rows else None
    return bundle_agent(out_dir, agent, hparams, state, metrics=metrics,
                        source={"run_dir": str(run_dir), "member": member})
