"""The ``jaxhedge bench`` subcommand's arguments and body (``cli.py`` holds a thin wrapper).

Runs the whole harness (:func:`jaxhedge.bench.harness.run_harness`) on the current JAX
backend and writes ``--out`` (JSON), the same name with ``.md`` (summary) and
``<stem>_throughput.png`` (throughput vs batch size).
"""
from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(p) -> None:
    p.add_argument("--quick", action="store_true",
                   help="small sizes and few repeats (a smoke run, not published figures)")
    p.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)  # the test suite
    p.add_argument("--out", type=Path, required=True, help="result JSON path")


def run_command(args) -> int:
    from jaxhedge.bench.harness import all_ratios, run_harness
    from jaxhedge.bench.report import write_outputs

    if args.out.suffix != ".json":
        raise ValueError(f"bench --out: must end in .json (got {str(args.out)!r})")
    mode = "tiny" if args.tiny else "quick" if args.quick else "full"
    command = ("jaxhedge bench" + (" --quick" if args.quick else "")
               + (" --tiny" if args.tiny else "") + f" --out {args.out}")
    result = run_harness(mode, command)
    files = write_outputs(result, args.out)
    for k, v in all_ratios(result).items():
        print(f"{k}: {v:.3g}")
    print("wrote " + ", ".join(str(f) for f in files))
    return 0


def main(argv=None) -> int:
    """``python -m jaxhedge.bench.command``: the same, before ``cli.py`` is wired."""
    from jaxhedge.cpu import use_all_cores

    use_all_cores()
    p = argparse.ArgumentParser(prog="jaxhedge bench", description=__doc__.splitlines()[0])
    add_arguments(p)
    return run_command(p.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
