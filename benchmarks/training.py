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
"""
from __future__ import annotations

import argparse
import os
import time

from jaxhedge.cpu import use_all_cores

use_all_cores()  # one XLA device per core, before JAX initialises

import jax  # noqa: E402
import jax.numpy as jnp
import numpy as np

from jaxhedge.agents.deep_hedging import DeepHedging
from jaxhedge.env import EnvConfig
from jaxhedge.runinfo import atomic_write_json, run_metadata
from jaxhedge.train import (make_members, make_train, member_keys, shard_members,  # noqa: E402
                            stack_hparams)


def _timed(fn, repeats: int = 1) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        best = min(best, time.perf_counter() - t0)
    return best


def matmul_peak_gflops(n: int = 2048, repeats: int = 5) -> float:
    """fp32 GFLOP/s of an n x n numpy matrix multiply (BLAS, all threads), best of repeats."""
    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    b = a.T.copy()
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * n**3 / best / 1e9


def vmap_vs_sequential(n_lr: int, n_seeds: int, n_updates: int, n_paths: int, n_steps: int):
    agent = DeepHedging(env=EnvConfig(market="gbm", n_steps=n_steps), n_paths=n_paths,
                        widths=(16, 16), objective="entropic")
    base = agent.default_hparams()
    lrs = np.geomspace(3e-4, 3e-2, n_lr)
    hp = stack_hparams([base.replace(learning_rate=float(lr)) for lr in lrs])
    keys = member_keys(0, n_seeds)
    n_members = n_lr * n_seeds

    members = make_members(agent, n_updates)
    ts0, hp_block = shard_members(members.init(keys, hp), hp)  # members over the devices
    t0 = time.perf_counter()
    compiled_block = members.train_chunk.lower(ts0, hp_block).compile()
    block_compile_s = time.perf_counter() - t0
    block_out = compiled_block(ts0, hp_block)
    block_s = _timed(lambda: compiled_block(ts0, hp_block), repeats=3)

    single = make_train(agent, n_updates)
    init = jax.jit(single.init)
    chunk = jax.jit(single.train_chunk)
    one_hp = jax.tree.map(lambda a: a[0], hp)
    t0 = time.perf_counter()
    compiled_one = chunk.lower(init(keys[0], one_hp), one_hp).compile()
    one_compile_s = time.perf_counter() - t0
    starts = [[init(keys[s], jax.tree.map(lambda a: a[h], hp)) for s in range(n_seeds)]
              for h in range(n_lr)]
    hps = [jax.tree.map(lambda a: a[h], hp) for h in range(n_lr)]

    def sequential():
        return [[compiled_one(starts[h][s], hps[h])[0] for s in range(n_seeds)]
                for h in range(n_lr)]

    seq_out = sequential()
    seq_s = _timed(sequential, repeats=1)

    # same members, same numbers (float32 reduction order may differ slightly under vmap)
    diff = max(float(jnp.max(jnp.abs(a - b)))
               for h in range(n_lr) for s in range(n_seeds)
               for a, b in zip(jax.tree.leaves(jax.tree.map(lambda x: x[h, s],
                                                            block_out[0].agent_state)),
                               jax.tree.leaves(seq_out[h][s].agent_state)))
    env_steps = n_members * n_updates * n_paths * n_steps
    return {
        "members": n_members, "updates_per_member": n_updates, "paths_per_update": n_paths,
        "dates_per_path": n_steps,
        "vmapped": {"compile_s": block_compile_s, "run_s": block_s,
                    "env_steps_per_s": env_steps / block_s,
                    "updates_per_s": n_members * n_updates / block_s,
                    "agents_per_s": n_members / block_s},
        "sequential": {"compile_s": one_compile_s, "run_s": seq_s,
                       "env_steps_per_s": env_steps / seq_s,
                       "updates_per_s": n_members * n_updates / seq_s,
                       "agents_per_s": n_members / seq_s},
        "vmap_speedup": seq_s / block_s,
        "max_abs_param_diff_vmapped_vs_sequential": diff,
    }


def adaptive_qlbs_episode(peak_gflops: float):
    """Time one paper-preset Adaptive-QLBS training iteration, if the agent exists."""
    try:
        from benchmarks.adaptive_qlbs_flops import paper_episode
    except ImportError as err:
        return {"skipped": f"Adaptive-QLBS benchmark unavailable: {err}"}
    result = paper_episode()
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
