"""Where the time goes: a ``jax.profiler`` trace of a compiled step, summed per XLA op.

    python -m jaxhedge.bench.profile [--out DIR]

Profiles, on the current backend, a deep-hedging train step (pfhedge's example network
and inputs, 1,000 paths x 20 dates) and an Adaptive-QLBS update (paper networks, 250
envs x 50 continuations x N = 4). The trace's executor events are summed by op name
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


def main(argv=None) -> int:
    from jaxhedge.agents.adaptive_qlbs import AdaptiveQLBS
    from jaxhedge.bench.pfhedge_match import pfhedge_agent, pfhedge_hparams
    from jaxhedge.train.jobs import load_job
    from jaxhedge.runinfo import atomic_write_json, run_metadata

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("runs/profile"))
    args = p.parse_args(argv)
    key = jax.random.key(0)
    dh = pfhedge_agent(n_paths=1000)
    dh_hp = pfhedge_hparams(dh)
    aq, aq_hp = load_job("adaptive-qlbs", "paper").build()
    aq = AdaptiveQLBS(**{**{f: getattr(aq, f) for f in aq.__dataclass_fields__},
                         "n_envs": 250, "n_continuations": 50})
    result = {"deep_hedging_train_step": profile(
                  dh.update, (key, dh.init(key, dh_hp), dh_hp), args.out / "deep_hedging"),
              "adaptive_qlbs_update": profile(
                  aq.update, (key, aq.init(key, aq_hp), aq_hp), args.out / "adaptive_qlbs"),
              "configs": {"deep_hedging": "pfhedge example network/inputs, 1,000 paths x 20",
                          "adaptive_qlbs": "paper networks, 250 envs x 50 continuations x 4"},
              **run_metadata()}
    atomic_write_json(args.out / "profile.json", result)
    for name in ("deep_hedging_train_step", "adaptive_qlbs_update"):
        r = result[name]
        print(f"{name}: {r['per_run_s']}")
        print("  " + ", ".join(f"{k} {100 * v:.0f}%" for k, v in r["categories_share"].items()))
        for o in r["top_ops"][:8]:
            print(f"  {o['op']:<45} {1e3 * o['s_per_run']:8.2f} ms/run "
                  f"{o['calls_per_run']:7.0f} calls {o['us_per_call']:8.1f} us/call")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
