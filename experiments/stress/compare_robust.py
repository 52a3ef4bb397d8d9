"""Calm-trained vs scenario-mixture-trained deep hedging, side by side in the stress table.

Trains the deep-hedging ``smoke`` preset (calm GBM) and the ``robust`` preset (the same
network, contract and budget, trained on the stress mixture of ``jaxhedge.markets.mixture``),
then runs ``jaxhedge stress`` on both beside delta, ww and naked, on the same paths, and
prints ES 5% of the shortfall per scenario for the two deep hedgers (timing and results in
docs/stress.md). Finished runs in OUT are reused.

    .venv/bin/python experiments/stress/compare_robust.py --out runs/stress-robust
"""
from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path


def main(argv=None) -> int:
    from jaxhedge.cpu import use_all_cores

    use_all_cores()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("runs/stress-robust"))
    ap.add_argument("--paths", type=int, default=20_000)
    ap.add_argument("--train-steps", type=int, default=None, help="default: the presets'")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    from jaxhedge.config import to_dict
    from jaxhedge.report.stress import print_table
    from jaxhedge.stress.run import run_stress, write_outputs
    from jaxhedge.train import run_training
    from jaxhedge.train.jobs import load_job

    t0 = time.perf_counter()
    runs = {}
    for label, preset in (("dh-calm", "smoke"), ("dh-robust", "robust")):
        overrides = [] if args.train_steps is None else [f"train.n_steps={args.train_steps}"]
        job = load_job("deep-hedging", preset, overrides=overrides)
        agent, hparams = job.build()
        run_dir = args.out / label
        t = time.perf_counter()
        run_training(agent, hparams, run_dir=run_dir, config=to_dict(job), resume=True,
                     progress=False, **dataclasses.asdict(job.train))
        print(f"trained {label} ({agent.name}) in {time.perf_counter() - t:.1f}s")
        runs[label] = str(run_dir)
    specs = ["delta", "ww", "naked", *runs.values()]
    result = run_stress(specs, "all", n_paths=args.paths, seed=args.seed)
    print_table(result.rows, result.verdicts, result.skipped,
                title=f"calm-trained vs mixture-trained deep hedging, {args.paths:,} paths")
    write_outputs(result, args.out / "stress", args.paths, args.seed, specs)
    es = {(r["agent"], r["scenario"]): r for r in result.rows}
    print("\nscenario            ES5% dh-calm  ES5% dh-robust  ratio(calm)  ratio(robust)")
    for s in dict.fromkeys(r["scenario"] for r in result.rows):
        a, b = es[("dh-calm", s)], es[("dh-robust", s)]
        print(f"{s:18s}  {a['es_5']:12.4f}  {b['es_5']:14.4f}  {a['es_5_vs_calm']:11.2f}  "
              f"{b['es_5_vs_calm']:13.2f}")
    print(f"total {time.perf_counter() - t0:.1f}s; wrote {args.out / 'stress'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
