"""``jaxhedge sweep FILE.toml``: the command's arguments and what it does (cli.py is thin)."""
from __future__ import annotations

import time
from pathlib import Path

from jaxhedge.config import ConfigError
from jaxhedge.validate import check_output_dir

__all__ = ["add_arguments", "run_command", "user_errors"]


def user_errors() -> tuple:
    """Exceptions that mean bad input (one line naming the field), not bugs: the CLI turns
    these -- and only these -- into ``error: ...`` and exit status 2."""
    from jaxhedge.sweep.local import SweepDirError

    return (ConfigError, SweepDirError)


def add_arguments(p, int_at_least) -> None:
    p.add_argument("file", type=Path, help="sweep file (TOML), e.g. experiments/sweeps/smoke.toml")
    p.add_argument("--backend", choices=("local", "ray"), default="local")
    p.add_argument("--out", type=Path, help="sweep directory (default: runs/sweeps/<name>)")
    p.add_argument("--resume", action="store_true", help="skip finished blocks/trials")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a sweep-file field, e.g. sweep.n_steps=50")
    p.add_argument("--block-index", type=int_at_least(0), metavar="I",
                   help="job array: run blocks b with b %% N == I (needs --num-blocks)")
    p.add_argument("--num-blocks", type=int_at_least(1), metavar="N",
                   help="job array: number of tasks")
    p.add_argument("--collect", action="store_true",
                   help="run nothing; merge the finished blocks into the results")
    p.add_argument("--plan-only", action="store_true",
                   help="write OUT/plan.json (block sizes) and stop (before a job array)")
    p.add_argument("--max-block", type=int_at_least(1), help="at most this many members per block")
    p.add_argument("--address", help="ray: cluster address (default: start a local Ray)")
    p.add_argument("--max-concurrent", type=int_at_least(1), help="ray: trials at once")
    p.add_argument("--gpus-per-trial", type=_gpus, default=0.0,
                   help="ray: GPUs per trial, in [0, 1024]")


def _gpus(text: str) -> float:
    import argparse

    from jaxhedge.validate import check_range

    try:
        return check_range("value", text, 0, 1024)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err).removeprefix("value: ")) from None


def run_command(args) -> int:
    """Raises ConfigError / SweepDirError (one line, naming the flag or field) on bad input."""
    from jaxhedge.sweep.spec import load_sweep

    if (args.block_index is None) != (args.num_blocks is None):
        raise ConfigError("--block-index and --num-blocks go together")
    if args.num_blocks is not None and args.block_index >= args.num_blocks:
        raise ConfigError(f"--block-index: must be in [0, {args.num_blocks}) (got {args.block_index})")
    if args.backend == "ray" and (args.num_blocks is not None or args.plan_only):
        raise ConfigError("--backend: job arrays (--block-index/--num-blocks, --plan-only) use "
                         "the local backend")
    if not args.file.is_file():
        raise ConfigError(f"file: no such sweep file {args.file}")
    spec = load_sweep(args.file, args.overrides)
    out = args.out or Path("runs/sweeps") / spec.name
    try:  # before any work: a file, a system path, a read-only place
        check_output_dir("--out", out, ("plan.json",))
    except ValueError as err:
        raise ConfigError(str(err)) from None
    if args.resume and not args.collect and args.num_blocks is None \
            and not (out / "plan.json").is_file():
        from jaxhedge.sweep.local import SweepDirError

        raise SweepDirError(f"--resume: no sweep at {out} (no plan.json); run without "
                            f"--resume to start one")
    t0 = time.perf_counter()
    if args.plan_only:
        from jaxhedge.sweep.local import write_plan_only

        plan = write_plan_only(spec, out, max_block=args.max_block)
        sizes = ", ".join(f"group {g}: {b}" for g, b in plan.block_size.items())
        print(f"{spec.name}: {spec.n_members:,} members in {len(plan.blocks)} blocks "
              f"({sizes}); wrote {out}/plan.json")
        return 0
    if args.backend == "ray":
        from jaxhedge.sweep.ray_backend import run_ray

        result = run_ray(spec, out, resume=args.resume, address=args.address,
                         max_concurrent=args.max_concurrent, max_block=args.max_block,
                         gpus_per_trial=args.gpus_per_trial)
        print(f"{spec.name}: {result.n_trials} trial(s) in {time.perf_counter() - t0:.1f}s")
        return 0
    from jaxhedge.sweep.local import run_local

    result = run_local(spec, out, resume=args.resume, block_index=args.block_index,
                       num_blocks=args.num_blocks, collect=args.collect,
                       max_block=args.max_block)
    total = len(result.plan.blocks)
    done = total - sum(1 for b in result.plan.blocks
                       if not (out / "blocks" / f"block_{b.index:04d}.json").exists())
    print(f"{spec.name}: ran {len(result.ran)} block(s), skipped {len(result.skipped)} "
          f"finished, {done}/{total} done in {time.perf_counter() - t0:.1f}s")
    if result.table is None:
        print(f"results pending: when every task has finished, run "
              f"`jaxhedge sweep {args.file} --out {out} --collect`")
    return 0
