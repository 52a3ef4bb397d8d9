"""Where the time goes: a ``jax.profiler`` trace of a compiled step, summed per XLA op.

    python -m jaxhedge.bench.profile [--out DIR]

Profiles, on the current backend, a deep-hedging train step (pfhedge's example network
and inputs, 10,000 paths x 20 dates: the benchmark's size), an Adaptive-QLBS update (paper
networks, 250 envs x 50 continuations x N = 4), the BS-delta rollout of the throughput
benchmark (65,536 paths x 64 dates) and the RLOP update with the authors' network size
(1,000 envs x N = 4). ``--parts`` picks some. The trace's executor events are summed by op name
(``dot``/``ynn_fusion``: matmuls; ``*dynamic-update-slice*``/``dynamic-slice*``: a scan
writing or reading its stacked per-date arrays; ``copy``: layout copies; other
``*_fusion``: fused elementwise work). Container events (``while``, ``ThunkExecutor``)
are not summed (they include their children); ``not_in_ops`` is the wall-clock time per
run not covered by any op (per-op launch and loop overhead, host work; ops that ran in
parallel on several threads make it an underestimate).
"""
from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import re
import time
from pathlib import Path

import jax

_CONTAINERS = re.compile(r"^(ThunkExecutor|while|cond|conditional|call)\b")


def category(op: str) -> str:
    if op.startswith(("dot", "ynn_fusion", "dot_general")) or "convolution" in op:
        return "matmul"
    if "dynamic-update-slice" in op or op.startswith("dynamic-slice"):
        return "scan slicing"
    if op.startswith(("copy", "transpose", "bitcast")):
        return "copy/layout"
    if "rng" in op or "threefry" in op:
        return "random numbers"
    return "elementwise/other"


def summarise_trace(path: str | Path, n_runs: int, wall_s: float, top: int = 12) -> dict:
    """Per-op and per-category seconds per run from a perfetto ``trace.json.gz``;
    ``wall_s``: the traced runs' total wall-clock time."""
    events = json.load(gzip.open(path))
    events = events["traceEvents"] if isinstance(events, dict) else events
    threads = {(e["pid"], e["tid"]): e["args"]["name"] for e in events
               if e.get("ph") == "M" and e.get("name") == "thread_name"}
    per_op, calls = collections.Counter(), collections.Counter()
    for e in events:
        if e.get("ph") != "X" or "python" in threads.get((e["pid"], e["tid"]), "python"):
            continue
        name, dur = e["name"], e.get("dur", 0.0) * 1e-6
        if _CONTAINERS.match(name):
            continue
        per_op[name] += dur
        calls[name] += 1
    cats = collections.Counter()
    for name, t in per_op.items():
        cats[category(name)] += t
    ops_total = sum(per_op.values())
    return {"per_run_s": {"wall": wall_s / n_runs, "ops": ops_total / n_runs,
                          "not_in_ops": max(wall_s - ops_total, 0.0) / n_runs},
            "categories_share": {k: v / ops_total for k, v in cats.most_common()},
            "top_ops": [{"op": k, "s_per_run": v / n_runs, "calls_per_run": calls[k] / n_runs,
                         "us_per_call": 1e6 * v / calls[k]}
                        for k, v in per_op.most_common(top)]}


def profile(fn, args, out_dir: Path, n_runs: int = 3) -> dict:
    compiled = jax.jit(fn).lower(*args).compile()
    jax.block_until_ready(compiled(*args))
    with jax.profiler.trace(str(out_dir), create_perfetto_trace=True):
        t0 = time.perf_counter()
        for _ in range(n_runs):
            jax.block_until_ready(compiled(*args))
        wall = time.perf_counter() - t0
    trace = sorted(glob.glob(f"{out_dir}/**/perfetto_trace.json.gz", recursive=True))[-1]
    return summarise_trace(trace, n_runs, wall)


PARTS = ("deep_hedging_train_step", "adaptive_qlbs_update", "rollout", "rlop_update")


def _cases(key):
    """name -> (fn, args, config text), built lazily (only the parts asked for)."""
    def deep_hedging():
        from jaxhedge.bench.pfhedge_match import pfhedge_agent, pfhedge_hparams
        dh = pfhedge_agent(n_paths=10_000)
        hp = pfhedge_hparams(dh)
        return dh.update, (key, dh.init(key, hp), hp), "pfhedge example, 10,000 paths x 20"

    def adaptive_qlbs():
        from jaxhedge.agents.adaptive_qlbs import AdaptiveQLBS
        from jaxhedge.train.jobs import load_job
        aq, hp = load_job("adaptive-qlbs", "paper").build()
        aq = AdaptiveQLBS(**{**{f: getattr(aq, f) for f in aq.__dataclass_fields__},
                             "n_envs": 250, "n_continuations": 50})
        return (aq.update, (key, aq.init(key, hp), hp),
                "paper networks, 250 envs x 50 continuations x 4")

    def rollout_case():
        from jaxhedge.bench.throughput import setup
        from jaxhedge.rollout import rollout
        env, params, hedger = setup(n_steps=64)
        fn = lambda k, p: rollout(k, env, p, hedger, 65_536, keep_paths=False)  # noqa: E731
        return fn, (key, params), "BS-delta rollout, 65,536 paths x 64 dates"

    def rlop_case():
        from jaxhedge.bench.rlop_update import authors_size_agent
        agent, hp = authors_size_agent()
        return (agent.update, (key, agent.init(key, hp), hp),
                "RLOP paper preset, authors' network size, 1,000 envs x N = 4")

    return {"deep_hedging_train_step": deep_hedging, "adaptive_qlbs_update": adaptive_qlbs,
            "rollout": rollout_case, "rlop_update": rlop_case}


def main(argv=None) -> int:
    from jaxhedge.cpu import use_all_cores
    from jaxhedge.runinfo import atomic_write_json, run_metadata

    use_all_cores()  # as `jaxhedge bench` does (before JAX starts): one device per core

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("runs/profile"))
    p.add_argument("--parts", default=",".join(PARTS),
                   help="comma-separated subset of " + ", ".join(PARTS))
    args = p.parse_args(argv)
    parts = [x for x in args.parts.split(",") if x]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        p.error(f"--parts: unknown {', '.join(unknown)} (allowed: {', '.join(PARTS)})")
    key = jax.random.key(0)
    cases = _cases(key)
    result, configs = {}, {}
    for name in parts:
        fn, fargs, configs[name] = cases[name]()
        result[name] = profile(fn, fargs, args.out / name)
    result = {**result, "configs": configs, **run_metadata()}
    atomic_write_json(args.out / "profile.json", result)
    for name in parts:
        r = result[name]
        print(f"{name}: {r['per_run_s']}")
        print("  " + ", ".join(f"{k} {100 * v:.0f}%" for k, v in r["categories_share"].items()))
        for o in r["top_ops"][:8]:
            print(f"  {o['op']:<45} {1e3 * o['s_per_run']:8.2f} ms/run "
                  f"{o['calls_per_run']:7.0f} calls {o['us_per_call']:8.1f} us/call")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
