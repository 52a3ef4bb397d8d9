"""Environment-only rollout throughput: jaxhedge vs the same work in vectorised numpy.

Work: hedge a short ATM call under GBM with the Black-Scholes delta, proportional cost
eps, unwind charged, float32; count path-steps (one path advanced one rebalancing date).

    python -m benchmarks.throughput [--quick] --out benchmarks/results/throughput_cpu.json

The measurement code is :mod:`jaxhedge.bench.throughput` (also run by ``jaxhedge bench``).
The numpy reference draws its normals with numpy's generator and evaluates N(d1) with
``scipy.special.ndtr`` (numpy has no erf); it is single-threaded. The JSON reports, at the
headline size (65,536 paths x 64 steps), ``jax_path_steps_per_s``, ``numpy_path_steps_per_s``
and their ``ratio``, plus a batch-size sweep with compile time apart, device and versions.
The two implementations' mean P&L is also reported as a sanity check (same distribution,
different random numbers).
"""
from __future__ import annotations

import argparse
import os

from jaxhedge.cpu import use_all_cores

use_all_cores()  # one XLA device per core, set before JAX initialises

from jaxhedge.bench.throughput import (WORK, bench_jax, headline,  # noqa: E402,F401
                                       jax_runner, numpy_rollout)
from jaxhedge.runinfo import atomic_write_json, run_metadata  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer sizes and repeats")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    repeats = 3 if args.quick else 5
    head_paths, head_steps = 65_536, 64
    sweep_sizes = [1_024, 16_384, 65_536] if args.quick else [1_024, 4_096, 16_384, 65_536,
                                                               262_144]
    sweep = []
    for n in sweep_sizes:
        row = bench_jax(n, head_steps, repeats)
        sweep.append(row)
        print(f"jax   {n:>8,} paths x {head_steps}: {row['path_steps_per_s']:.3e} path-steps/s "
              f"(compile {row['compile_s']:.2f}s)")
    head = headline(head_paths, head_steps, 2 * repeats)
    jax_head, ref = head["jax"], head["numpy"]
    ratio = jax_head["path_steps_per_s"] / ref["path_steps_per_s"]
    print(f"headline {head_paths:,} x {head_steps}: jax {jax_head['path_steps_per_s']:.3e}, "
          f"numpy {ref['path_steps_per_s']:.3e} path-steps/s, ratio {ratio:.2f}")
    result = {
        "command": "python -m benchmarks.throughput" + (" --quick" if args.quick else "")
                   + f" --out {args.out}",
        "work": WORK,
        "headline": {"n_paths": head_paths, "n_steps": head_steps},
        "jax_path_steps_per_s": jax_head["path_steps_per_s"],
        "numpy_path_steps_per_s": ref["path_steps_per_s"],
        "ratio": ratio,
        # the sweep compiled this shape first; the headline run reuses the cached program
        "jax_compile_s": next(r["compile_s"] for r in sweep if r["n_paths"] == head_paths),
        "mean_pnl": {"jax": jax_head["mean_pnl"], "numpy": ref["mean_pnl"]},
        "load_average": os.getloadavg(),
        "sweep": sweep,
        "env": {k: os.environ.get(k) for k in ("XLA_FLAGS", "OPENBLAS_CORETYPE")},
        **run_metadata(),
    }
    atomic_write_json(args.out, result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
