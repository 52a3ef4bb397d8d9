"""Training throughput: one vmapped block of members vs the same members one after another.

    python -m benchmarks.training [--quick] --out benchmarks/results/training_cpu.json

Work: deep hedging (free MLP hedge, entropic risk, GBM, 10 rebalancing dates), each member
training for ``n_updates`` Adam steps on fresh batches of paths. A block of 64 members
(8 learning rates x 8 seeds) runs as one compiled ``jit(vmap(vmap(train_chunk)))``; the
same 64 members then run one after another through the compiled single-member program.
Both produce the same parameters (checked). The block is sharded over one XLA device per
CPU core (``shard_members``); the sequential members run one after another as a user
would run them. Compile time is reported apart.

Reported: env-steps consumed per second (paths x dates x updates x members / s), updates
per second, agents (members) per second, ``vmap_speedup`` = sequential time / vmapped time,
and, when the Adaptive-QLBS agent is available, one ``paper``-preset training episode's
achieved GFLOP/s against the machine's fp32 matrix-multiply peak measured in the same run.

FLOPs (:mod:`jaxhedge.bench.flops`): matmul FLOPs derived from the network shapes times the
policy rows the update really evaluates -- 2,500 envs x 200 continuations x N(N-1)/2 = 6
continuation dates = 3.0 M rows plus 2 x 10k main-path/loss rows and the loss's backward
pass. (Before, 5.0 M rows were counted -- N(N+1)/2 = 10 dates -- overstating GFLOP/s by 5/3;
``benchmarks/results/training_cpu.json`` predates the fix.) Elementwise ops are not counted.
The measurement code lives in :mod:`jaxhedge.bench` (``jaxhedge bench`` runs it too).
"""
from __future__ import annotations

import argparse
import os

from jaxhedge.cpu import use_all_cores

use_all_cores()  # one XLA device per core, before JAX initialises

from jaxhedge.bench.timing import matmul_peak_gflops  # noqa: E402,F401
from jaxhedge.bench.training import vmap_vs_sequential  # noqa: E402,F401
from jaxhedge.runinfo import atomic_write_json, run_metadata  # noqa: E402


def adaptive_qlbs_episode(peak_gflops: float):
    """Time one paper-preset Adaptive-QLBS update; FLOPs from the rows it really evaluates
    (:mod:`jaxhedge.bench.flops`: 3.0 M continuation rows, not 5.0 M)."""
    try:
        from jaxhedge.bench.flops import adaptive_qlbs_episode as episode
        from jaxhedge.train.jobs import load_job
    except ImportError as err:
        return {"skipped": f"Adaptive-QLBS benchmark unavailable: {err}"}
    result = episode(*load_job("adaptive-qlbs", "paper").build())
    result["fraction_of_matmul_peak"] = result["gflops"] / peak_gflops
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    n_updates = 20 if args.quick else 50
    peak = matmul_peak_gflops()
    print(f"numpy fp32 2048^2 matmul: {peak:.1f} GFLOP/s")
    by_size = {}
    for n_paths in (16, 256):
        r = vmap_vs_sequential(n_lr=8, n_seeds=8, n_updates=n_updates, n_paths=n_paths,
                               n_steps=10)
        by_size[str(n_paths)] = r
        v, s = r["vmapped"], r["sequential"]
        print(f"64 members x {n_updates} updates x {n_paths} paths: vmapped {v['run_s']:.2f}s "
              f"({v['agents_per_s']:.1f} agents/s, {v['env_steps_per_s']:.3e} env-steps/s), "
              f"sequential {s['run_s']:.2f}s ({s['agents_per_s']:.2f} agents/s); "
              f"vmap_speedup {r['vmap_speedup']:.1f}x")
    res = {"vmap_speedup": by_size["16"]["vmap_speedup"],
           "vmap_speedup_note": "headline: 64 small members (16 paths per update); "
                                "see by_paths_per_update for 256 paths",
           "by_paths_per_update": by_size}
    aqlbs = adaptive_qlbs_episode(peak)
    if "gflops" in aqlbs:
        print(f"Adaptive-QLBS paper episode: {aqlbs['run_s']:.2f}s, {aqlbs['gflops']:.1f} "
              f"GFLOP/s = {100 * aqlbs['fraction_of_matmul_peak']:.0f}% of matmul peak")
    result = {
        "command": "python -m benchmarks.training" + (" --quick" if args.quick else "")
                   + f" --out {args.out}",
        "matmul_peak_gflops_fp32": peak,
        **res,
        "adaptive_qlbs_paper_episode": aqlbs,
        "load_average": os.getloadavg(),
        **run_metadata(),
    }
    atomic_write_json(args.out, result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
