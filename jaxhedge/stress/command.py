"""The ``jaxhedge stress`` subcommand's arguments and body (``cli.py`` holds a thin wrapper).

Bad input raises ValueError (one line naming the field) before anything is simulated or
written; the CLI turns it into ``error: ...`` and exit status 2.
"""
from __future__ import annotations

from pathlib import Path

from jaxhedge.agents import hedger_names
from jaxhedge.stress.registry import scenario_names
from jaxhedge.validate import MAX_PATHS, MAX_STEPS


def add_arguments(p, int_at_least, float_in) -> None:
    p.add_argument("--agents", nargs="+", required=True, metavar="A",
                   help=f"classical hedgers ({', '.join(hedger_names())}) and/or trained run "
                        f"directories")
    p.add_argument("--scenarios", default="all",
                   help=f"'all' or a comma-separated list of: {', '.join(scenario_names())} "
                        f"(calm is always run: it is the reference)")
    p.add_argument("--paths", type=int_at_least(2, MAX_PATHS), default=20_000,
                   help="paths per scenario (every agent hedges the same ones)")
    p.add_argument("--seed", type=int_at_least(0), default=0)
    p.add_argument("--steps", type=int_at_least(1, MAX_STEPS), default=None,
                   help="rebalancing dates (default: the trained agents' contract, else 30)")
    p.add_argument("--risk-aversion", type=float_in(0, 1e9, lo_open=True), default=None,
                   help="Whalley-Wilmott lambda (default 100 / s0)")
    p.add_argument("--member", type=int_at_least(0), default=0,
                   help="member of the trained runs to load")
    p.add_argument("--boot", type=int_at_least(1, 100_000), default=None,
                   help="bootstrap replicates of the paired differences to BS delta "
                        "(default: stress.run.N_BOOT = 1000)")
    p.add_argument("--out", type=Path, required=True)


def run_command(args) -> int:
    from jaxhedge import gates
    from jaxhedge.report.stress import print_table
    from jaxhedge.stress.run import N_BOOT, run_stress, write_outputs

    result = run_stress(args.agents, args.scenarios, n_paths=args.paths, seed=args.seed,
                        n_steps=args.steps, risk_aversion=args.risk_aversion,
                        member=args.member, n_boot=args.boot or N_BOOT)
    c = result.contract
    print_table(result.rows, result.verdicts, result.skipped,
                title=f"Stress: {args.paths:,} paths per scenario, {c.n_steps} dates, "
                      f"cost {float(c.cost):g}, premium {float(c.premium()):.4f} (calm BS)")
    for k, v in result.gates.items():  # the full table only where a check failed
        failed = gates.gate_label(v)
        if failed:
            gates.print_gates(v, title=f"sanity gates: {k}: {failed}")
        else:
            print(f"sanity gates: {k}: all passed")
    for scenario, line in result.winners.items():
        print(f"{scenario}: {line}")
    print(f"gates {result.timing['gates_s']:.1f}s, paired bootstrap "
          f"{result.timing['bootstrap_s']:.1f}s ({args.boot or N_BOOT} replicates)")
    files = write_outputs(result, args.out, args.paths, args.seed, list(args.agents))
    print("wrote " + ", ".join(str(f) for f in files))
    return 0
