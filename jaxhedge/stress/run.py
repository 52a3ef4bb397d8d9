"""``jaxhedge stress``: every agent on every scenario, on common random numbers.

Per scenario the paths are simulated ONCE (key ``fold_in(PRNGKey(seed), crc32(name))``, so
adding or removing a scenario never changes another's paths) and every agent hedges those
same paths with :func:`jaxhedge.rollout.run_on_paths`; the ledger, costs and premium (the
calm BS price of the contract) are the contract's, the same for all. Agents are classical
hedgers by name (``delta``, ``ww``, ``naked``; BS delta and the Whalley–Wilmott band at the
contract's sigma) or trained run directories.

The contract: the trained agents' common evaluation contract (they must agree; ValueError
otherwise), else :class:`Contract` defaults; ``n_steps`` overrides the number of dates.

Every trained agent is run through the sanity gates (:func:`jaxhedge.runs.check_agent`) when
it is loaded; the BS delta hedger is added as the reference when not listed; every row gets
the columns of :mod:`jaxhedge.report.versus` (gate, first-day hedge, directional slope,
paired-bootstrap differences to BS delta), and each scenario's winner (lowest ES 5%) is
picked among the agents that passed their gates (docs/stress.md).
"""
from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import time
import zlib
from pathlib import Path

import jax
import numpy as np

from jaxhedge import gates, risk
from jaxhedge.agents import build_hedger, hedger_names
from jaxhedge.report import stress as report
from jaxhedge.report import versus
from jaxhedge.rollout import run_on_paths
from jaxhedge.runinfo import atomic_write_json, atomic_write_text, run_metadata
from jaxhedge.contracts import Contract, same_contract, validate_contract
from jaxhedge.stress.registry import resolve_scenarios
from jaxhedge.markets.scenarios import Scenario, ScenarioUnavailable
from jaxhedge.validate import prng_key

#: Paths hedged per compiled call (bounds memory for large runs).
CHUNK_PATHS = 65_536
METRICS = ("shortfall_prob", "es_5", "es_10", "mean_pnl", "std_pnl", "mean_cost", "turnover",
           "rmse")
#: Bootstrap replicates of the paired differences to BS delta (``--boot``).
N_BOOT = 1000


@dataclasses.dataclass
class StressAgent:
    label: str
    hedger: object = None
    contract: Contract | None = None  # the trained agent's evaluation contract
    source: str = "classical"  # the classical hedger's name, or the run directory
    gates: list | None = None  # GateResults of a trained agent; None: classical (not gated)
    gates_s: float = 0.0  # seconds the gates took

    @property
    def status(self) -> str:
        return versus.gate_status(self.gates)


@dataclasses.dataclass
class StressResult:
    """rows (agent x scenario dicts, :data:`report.STRESS_COLUMNS` and
    :data:`versus.VERSUS_COLUMNS`), verdicts by agent, skipped {scenario: reason}, the
    contract, the scenarios run, (``keep_pnl``) the per-path P&L {(agent, scenario): array},
    the gate results {agent: [GateResult]} of the trained agents, the agents left out of
    every ranking {agent: reason}, the winner line of each scenario, the reference hedger's
    label (and whether it was added), and the seconds spent on gates and bootstrap."""

    rows: list[dict]
    verdicts: dict[str, str]
    skipped: dict[str, str]
    contract: Contract
    scenarios: list[Scenario]
    pnl: dict = dataclasses.field(default_factory=dict)
    gates: dict = dataclasses.field(default_factory=dict)
    excluded: dict = dataclasses.field(default_factory=dict)
    winners: dict = dataclasses.field(default_factory=dict)
    reference: str = versus.REFERENCE
    reference_added: bool = False
    timing: dict = dataclasses.field(default_factory=dict)


def scenario_key(seed: int, name: str):
    """The key a scenario's paths are drawn from (independent of the other scenarios)."""
    # all 64 bits of the seed (PRNGKey keeps 32 without x64); same key below 2**32
    return jax.random.fold_in(prng_key(seed), zlib.crc32(name.encode()) & 0x7FFFFFFF)


def scenario_paths(scenario: Scenario, contract: Contract, n_paths: int, seed: int):
    """The paths every agent faces in ``scenario`` (fields (n_paths, N+1))."""
    validate_contract(contract)  # the scenarios (markets layer) check only themselves
    return scenario.paths(scenario_key(seed, scenario.name), contract, n_paths)


def load_agents(specs: list[str], member: int = 0) -> list[StressAgent]:
    """Classical names stay placeholders (built once the contract is known); run dirs load."""
    agents, seen = [], set()
    for spec in specs:
        if isinstance(spec, StressAgent):
            agent = spec
        elif spec in hedger_names():
            agent = StressAgent(label=spec, source=spec)
        elif (Path(spec) / "checkpoints").is_dir():
            agent = _load_trained(Path(spec), member)
        else:
            near = difflib.get_close_matches(spec, hedger_names(), n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise ValueError(f"agents: {spec!r} is neither a classical hedger{hint} "
                             f"({', '.join(hedger_names())}) nor a trained run directory")
        label, k = agent.label, 2
        while agent.label in seen:  # two runs with the same directory name
            agent.label, k = f"{label}-{k}", k + 1
        seen.add(agent.label)
        agents.append(agent)
    if not agents:
        raise ValueError("agents: give at least one agent")
    return agents


def _load_trained(run_dir: Path, member: int) -> StressAgent:
    from jaxhedge.runs import evaluation_setup, load_trained

    agent, hparams, state = load_trained(run_dir, member)
    return trained_agent(run_dir.name, agent, hparams, state, source=str(run_dir))


def trained_agent(label: str, agent, hparams, state, source: str = "") -> StressAgent:
    """A loaded agent (protocol of :mod:`jaxhedge.agents.base`) as a stress agent: its
    hedger, its evaluation contract and its sanity-gate results."""
    from jaxhedge.runs import check_agent, evaluation_setup

    env, params = evaluation_setup(agent, hparams, None)
    t = time.perf_counter()
    results = check_agent(agent, hparams, state)
    return StressAgent(label=label, hedger=agent.hedger(state, hparams),
                       contract=Contract.from_env(env.config, params), source=source or label,
                       gates=results, gates_s=time.perf_counter() - t)


def with_reference(agents: list[StressAgent]) -> tuple[list[StressAgent], int, bool]:
    """(agents, index of the BS delta reference, whether it was added): the first agent
    that is the classical ``delta``, else a new one appended (labelled ``delta``, or
    ``delta (reference)`` when a run already uses that label)."""
    for i, a in enumerate(agents):
        if a.gates is None and a.source == versus.REFERENCE:
            return agents, i, False
    taken = {a.label for a in agents}
    label = versus.REFERENCE if versus.REFERENCE not in taken else \
        f"{versus.REFERENCE} (reference)"
    return [*agents, StressAgent(label=label, source=versus.REFERENCE)], len(agents), True


def common_contract(agents: list[StressAgent], n_steps: int | None = None,
                    default: Contract | None = None) -> Contract:
    """The one contract every agent faces (module docstring)."""
    trained = [a for a in agents if a.contract is not None]
    contract = trained[0].contract if trained else (default or Contract())
    for a in trained[1:]:
        if not same_contract(a.contract, contract):
            raise ValueError(f"agents: trained runs hedge different contracts "
                             f"({trained[0].label}: {_short(contract)}; "
                             f"{a.label}: {_short(a.contract)})")
    if n_steps is not None:  # a trained agent then hedges at a frequency it was not trained at
        contract = contract.replace(n_steps=int(n_steps))
    # host floats: restored leaves may be numpy scalars of the run's dtype
    contract = jax.tree.map(float, contract)
    return validate_contract(contract)


def _short(c: Contract) -> str:
    return (f"s0={float(c.s0):g} K={float(c.strike):g} T={float(c.maturity):.4g} "
            f"N={c.n_steps} sigma={float(c.sigma):g} cost={float(c.cost):g} {c.option}")


def classical_hedger(name: str, contract: Contract, risk_aversion: float | None = None):
    """A registered classical hedger built at the contract's sigma (BS delta, Whalley–Wilmott,
    naked, ...).

    The risk aversion (WW lambda) defaults to ``100 / s0`` (lambda = 1 per unit of money at
    s0 = 100, the project's default scale, so the band is the same relative to the
    contract's size).
    """
    lam = 100.0 / float(contract.s0) if risk_aversion is None else risk_aversion
    return build_hedger(name, contract.option, risk_aversion=lam, sigma=float(contract.sigma))


@functools.partial(jax.jit, static_argnums=(0,))
def _hedge(env, params, hedger, paths):
    out = run_on_paths(env, params, hedger, paths, keep_paths=True)
    # the position taken on the first date is the policy's t = 0 hedge ratio (the rest of
    # the positions is not returned)
    return out.pnl, out.cost, out.turnover, out.positions[:, 0]


def hedge_paths(contract: Contract, hedger, paths, chunk: int = CHUNK_PATHS,
                first_hedge: bool = False):
    """(pnl, cost, turnover) numpy arrays of ``hedger`` on ``paths`` (chunks of ``chunk``),
    and with ``first_hedge`` the position each path holds after the first date (t = 0)."""
    env, params = contract.env()
    n = paths.spot.shape[0]
    parts = []
    for lo in range(0, n, chunk):
        sub = jax.tree.map(lambda a: a[lo:lo + chunk], paths)
        parts.append([np.asarray(x) for x in _hedge(env, params, hedger, sub)])
    out = tuple(np.concatenate(p) for p in zip(*parts))
    return out if first_hedge else out[:3]


def bootstrap_key(seed: int, scenario: str):
    """The key of a scenario's paired bootstrap (independent of its paths' key)."""
    return jax.random.fold_in(scenario_key(seed, scenario), zlib.crc32(b"paired_bootstrap"))


def run_stress(agent_specs: list, scenarios: str | list = "all", n_paths: int = 20_000,
               seed: int = 0, n_steps: int | None = None, contract: Contract | None = None,
               risk_aversion: float | None = None, member: int = 0, keep_pnl: bool = False,
               log=print, n_boot: int = N_BOOT) -> StressResult:
    """Run the stress table (module docstring); ``log`` gets one line per skipped scenario
    and one when the BS delta reference is added.

    ``agent_specs``: classical names, trained run directories, or :class:`StressAgent`
    objects (e.g. from :func:`trained_agent`). ``scenarios``: ``"all"``, comma-separated
    names, or a list of :class:`Scenario` objects (custom parameters) starting with
    ``Calm()``. ``n_boot``: replicates of the paired bootstrap. Raises ValueError (one line
    naming the field) for unknown agents/scenarios, disagreeing trained contracts or bad
    parameters, before anything is simulated.
    """
    if not isinstance(n_paths, int) or n_paths < 2:
        raise ValueError(f"paths: must be an integer >= 2 (got {n_paths!r})")
    if not isinstance(n_boot, int) or n_boot < 1:
        raise ValueError(f"boot: must be an integer >= 1 (got {n_boot!r})")
    if isinstance(scenarios, (list, tuple)) and all(isinstance(s, Scenario) for s in scenarios):
        chosen = list(scenarios)  # scenario objects with custom parameters
        if not chosen or chosen[0].name != "calm":
            raise ValueError("scenarios: a list of Scenario objects must start with calm")
    else:
        chosen = resolve_scenarios(scenarios)
    agents = load_agents(list(agent_specs), member)
    agents, ref, added = with_reference(agents)
    if added:
        log(f"added {agents[ref].label} (BS delta) as the reference of the paired differences")
    contract = common_contract(agents, n_steps, contract)
    for a in agents:
        if a.hedger is None:
            a.hedger = classical_hedger(a.source, contract, risk_aversion)
    # the scenarios' contract-dependent checks before any simulation (common_contract has
    # validated the contract itself)
    for s in chosen:
        s.check(contract)
    rows, skipped, pnls, ran, t_boot = [], {}, {}, [], 0.0
    for s in chosen:
        try:
            paths = scenario_paths(s, contract, n_paths, seed)
        except ScenarioUnavailable as err:
            skipped[s.name] = str(err)
            log(f"skipped {s.name}: {err}")
            continue
        ran.append(s)
        spot_return = np.asarray(paths.spot[:, -1] / paths.spot[:, 0] - 1.0)
        mine, pnl_all, cost_all = [], [], []
        for a in agents:
            pnl, cost, turnover, first = hedge_paths(contract, a.hedger, paths,
                                                     first_hedge=True)
            m = risk.hedge_metrics(pnl, cost, turnover)
            mine.append({"agent": a.label, "scenario": s.name,
                         **{k: float(m[k]) for k in METRICS}, "gate": a.status,
                         **versus.directional(pnl, spot_return, first)})
            pnl_all.append(pnl)
            cost_all.append(cost)
            if keep_pnl:
                pnls[(a.label, s.name)] = pnl
        t = time.perf_counter()
        paired = versus.paired_columns(pnl_all, cost_all, ref, bootstrap_key(seed, s.name),
                                       n_boot)
        t_boot += time.perf_counter() - t
        for r, p in zip(mine, paired):
            r.update(bs_delta_0=mine[ref]["hedge_0"], **p)
        rows += mine
    report.add_degradation(rows)
    if any(not math.isfinite(r["mean_pnl"]) for r in rows):
        bad = next(r for r in rows if not math.isfinite(r["mean_pnl"]))
        raise FloatingPointError(f"{bad['agent']} on {bad['scenario']}: non-finite P&L")
    gate_results = {a.label: a.gates for a in agents if a.gates is not None}
    excluded = {a.label: versus.gate_reason(a.gates) for a in agents
                if a.status.startswith("GATE FAILED")}
    winners = {s.name: versus.winner([r for r in rows if r["scenario"] == s.name], excluded)
               for s in ran}
    return StressResult(rows=rows, verdicts=report.verdicts(rows), skipped=skipped,
                        contract=contract, scenarios=ran, pnl=pnls, gates=gate_results,
                        excluded=excluded, winners=winners, reference=agents[ref].label,
                        reference_added=added,
                        timing={"gates_s": sum(a.gates_s for a in agents), "bootstrap_s": t_boot})


def write_outputs(result: StressResult, out: str | Path, n_paths: int, seed: int,
                  agents: list[str] | None = None) -> list[Path]:
    """DIR/stress.csv, stress.md, stress_heatmap.png, stress.json (all written atomically)."""
    out = Path(out)
    title = (f"Stress test: {n_paths:,} paths per scenario, {result.contract.n_steps} dates, "
             f"cost {float(result.contract.cost):g}")
    atomic_write_text(out / "stress.csv", report.csv_text(result.rows))
    atomic_write_text(out / "stress.md",
                      report.markdown(result.rows, result.verdicts, result.skipped, title)
                      + report.winners_markdown(result.winners))
    report.heatmap(result.rows, out / "stress_heatmap.png", title)
    json_rows = [{k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                  for k, v in r.items()} for r in result.rows]
    atomic_write_json(out / "stress.json", {
        "rows": json_rows, "verdicts": result.verdicts, "skipped": result.skipped,
        "contract": result.contract.describe(),
        "scenarios": [s.describe() for s in result.scenarios], "agents": agents,
        "n_paths": n_paths, "seed": seed,
        "gates": {k: [gates.as_dict(g) for g in v] for k, v in result.gates.items()},
        "excluded": result.excluded, "winners": result.winners,
        "reference": result.reference, "reference_added": result.reference_added,
        "timing": result.timing,
        "notes": "es_5_vs_calm null = inf (calm ES 0, scenario ES > 0); *_vs_bs = metric "
                 "minus the reference's (BS delta) on the same paths, _lo/_hi its paired "
                 "bootstrap 95% percentile interval (one path per block)", **run_metadata()})
    return [out / f for f in ("stress.csv", "stress.md", "stress_heatmap.png", "stress.json")]
