"""Run every benchmark on the current backend and collect ONE result dict.

Each entry of ``measurements`` has ``name``, ``work`` (what one unit is and how many were
done), ``command`` (how to reproduce that number alone), the timings, and, where there is
a reference, ``ratios`` (reference time / jaxhedge time, or jaxhedge rate / reference
rate: > 1 means jaxhedge is faster). Sizes depend on the backend (an accelerator gets
larger batches) and on the mode: ``full`` (the published figures), ``quick`` (a smoke
run, well under a minute of work on 2 idle cores) and ``tiny`` (the test suite's).
"""
from __future__ import annotations

import math
import os
import time

import jax

from jaxhedge.runinfo import run_metadata

MODES = ("full", "quick", "tiny")


def sizes(mode: str, backend: str) -> dict:
    """Problem sizes per benchmark for ``mode`` on ``backend`` ("cpu", "gpu", "tpu")."""
    if mode not in MODES:
        raise ValueError(f"bench mode: must be one of {MODES} (got {mode!r})")
    accel = backend != "cpu"
    if mode == "full":
        sweep = ([16_384, 262_144, 1_048_576, 4_194_304] if accel
                 else [1_024, 4_096, 16_384, 65_536, 262_144])
        return {"matmul_n": 4096 if accel else 2048, "rollout_sweep": sweep,
                "rollout_steps": 64, "rollout_headline": 1_048_576 if accel else 65_536,
                "repeats": 5, "members": (8, 8), "member_updates": 50,
                "member_paths": (16, 256), "aqlbs_preset": "paper",
                "pfhedge_paths": 10_000, "pfhedge_price_paths": (10_000, 100_000),
                "rlop_envs": 1000, "rlop_steps": 4}
    if mode == "quick":
        return {"matmul_n": 1024, "rollout_sweep": [1_024, 4_096, 16_384],
                "rollout_steps": 32, "rollout_headline": 16_384, "repeats": 3,
                "members": (2, 4), "member_updates": 5, "member_paths": (16,),
                "aqlbs_preset": "smoke", "pfhedge_paths": 1_000,
                "pfhedge_price_paths": (1_000, 10_000), "rlop_envs": 200, "rlop_steps": 4}
    return {"matmul_n": 128, "rollout_sweep": [256, 1_024], "rollout_steps": 8,
            "rollout_headline": 1_024, "repeats": 1, "members": (2, 2),
            "member_updates": 2, "member_paths": (8,), "aqlbs_preset": "tiny",
            "pfhedge_paths": 64, "pfhedge_price_paths": (64,), "rlop_envs": 16,
            "rlop_steps": 3, "rlop_tiny_networks": True}


def _rollout(sz, command) -> dict:
    from jaxhedge.bench import throughput

    steps = sz["rollout_steps"]
    sweep = [throughput.bench_jax(n, steps, sz["repeats"]) for n in sz["rollout_sweep"]]
    head = throughput.headline(sz["rollout_headline"], steps, 2 * sz["repeats"])
    work = sz["rollout_headline"] * steps
    return {"name": "rollout", "work": {"unit": "path-step", "count": work,
                                        "what": throughput.WORK},
            "command": command, "jaxhedge": head["jax"], "reference": head["numpy"],
            "reference_name": "vectorised numpy (single thread)",
            "ratios": {"path_steps_per_s": head["jax"]["path_steps_per_s"]
                       / head["numpy"]["path_steps_per_s"]},
            "sweep": sweep}


def _members(sz, command) -> dict:
    from jaxhedge.bench.training import vmap_vs_sequential

    n_lr, n_seeds = sz["members"]
    by = {str(p): vmap_vs_sequential(n_lr, n_seeds, sz["member_updates"], p, 10)
          for p in sz["member_paths"]}
    head = by[str(sz["member_paths"][0])]
    return {"name": "members_vmapped_vs_sequential",
            "work": {"unit": "member update", "count": head["members"]
                     * head["updates_per_member"],
                     "what": "deep hedging MLP 16x16, entropic, GBM, 10 dates, "
                             f"{head['paths_per_update']} paths per update"},
            "command": command, "jaxhedge": head["vmapped"], "reference": head["sequential"],
            "reference_name": "the same members one after another (compiled)",
            "ratios": {"vmap_speedup": head["vmap_speedup"]},
            "by_paths_per_update": by}


def _aqlbs(sz, peak, command) -> dict:
    from jaxhedge.agents.adaptive_qlbs import AdaptiveQLBS
    from jaxhedge.bench.flops import adaptive_qlbs_episode
    from jaxhedge.train.jobs import load_job

    name = sz["aqlbs_preset"]
    if name == "tiny":
        agent = AdaptiveQLBS(n_envs=8, n_steps=3, n_continuations=4, width=8, n_blocks=1,
                             layers_per_block=1, baseline_width=8)
        hp = load_job("adaptive-qlbs", "smoke").build()[1]
    else:
        agent, hp = load_job("adaptive-qlbs", name).build()
    res = adaptive_qlbs_episode(agent, hp, repeats=max(sz["repeats"] - 1, 1))
    return {"name": f"adaptive_qlbs_update_{name}",
            "work": {"unit": "policy row", "count": res["policy_rows"]["forward_total"],
                     "what": f"{res['n_envs']} envs x {res['n_continuations']} continuations"
                             f" x N = {res['n_steps']}; matmul FLOPs from network shapes"},
            "command": command, "jaxhedge": res, "reference": {"matmul_peak_gflops": peak},
            "reference_name": "fp32 matmul peak measured in the same run",
            "ratios": {"fraction_of_matmul_peak": res["gflops"] / peak}}


def _rlop(sz, peak, command) -> dict:
    from jaxhedge.bench.rlop_update import TINY_SIZE, measure

    # tiny (the test suite's schema check): small networks, the authors' size compiles slowly
    res = measure(sz["rlop_envs"], sz["rlop_steps"], repeats=sz["repeats"],
                  networks=TINY_SIZE if sz.get("rlop_tiny_networks") else None)
    return {"name": "rlop_update_authors_size",
            "work": {"unit": "live policy row", "count": res["rows"]["policy_live"],
                     "what": f"RLOP paper preset, {res['n_envs']} envs x N = {res['n_steps']}"
                             f" stacked expiries, REINFORCE; policy and price networks of "
                             f"the authors' size ({res['policy_macs_per_row']} / "
                             f"{res['price_macs_per_row']} MACs per row)"},
            "command": command, "jaxhedge": res, "reference": {"matmul_peak_gflops": peak},
            "reference_name": "fp32 matmul peak measured in the same run (the authors' "
                              "time quoted from issue 13 is in jaxhedge.quoted_reference)",
            "ratios": {"fraction_of_matmul_peak": res["gflops"] / peak}}


def _pfhedge(sz, command) -> dict:
    from jaxhedge.bench import peers
    from jaxhedge.bench.pfhedge_match import measure

    ours = measure(sz["pfhedge_paths"], sz["pfhedge_price_paths"], sz["repeats"])
    peer = peers.run_pfhedge(sz["pfhedge_paths"], sz["pfhedge_price_paths"], sz["repeats"])
    out = {"name": "deep_hedging_pfhedge_example",
           "work": {"unit": "epoch (train step + validation pass)", "count": 1,
                    "what": f"{ours['n_paths']} paths x {ours['n_steps']} steps, MLP 4x32 "
                            "ReLU on (log-moneyness, expiry, vol, prev hedge), entropic, "
                            "Adam 1e-3; price passes on "
                            + ", ".join(str(n) for n in sz["pfhedge_price_paths"]) + " paths"},
           "command": command, "jaxhedge": ours, "reference": peer,
           "reference_name": "pfhedge (torch CPU, own venv)"}
    if "skipped" not in peer:
        out["ratios"] = peers.ratios(peer, ours)
    return out


def run_harness(mode: str = "full", command: str = "jaxhedge bench", log=print) -> dict:
    """Every benchmark in one process; returns the result dict (see module docstring)."""
    from jaxhedge.bench.timing import device_matmul_peak_gflops, matmul_peak_gflops

    backend = jax.default_backend()
    sz = sizes(mode, backend)
    t_start = time.perf_counter()
    peak = (device_matmul_peak_gflops(sz["matmul_n"]) if backend != "cpu"
            else matmul_peak_gflops(sz["matmul_n"]))
    log(f"fp32 matmul peak ({backend}, n={sz['matmul_n']}): {peak:.1f} GFLOP/s")
    measurements = []
    for label, fn in (("rollout", lambda: _rollout(sz, command)),
                      ("members", lambda: _members(sz, command)),
                      ("adaptive-qlbs", lambda: _aqlbs(sz, peak, command)),
                      ("rlop", lambda: _rlop(sz, peak, command)),
                      ("pfhedge example", lambda: _pfhedge(sz, command))):
        t0 = time.perf_counter()
        m = fn()
        m["harness_wall_s"] = time.perf_counter() - t0
        measurements.append(m)
        log(f"{label}: " + (", ".join(f"{k} {v:.3g}" for k, v in m.get("ratios", {}).items())
                            or m["reference"].get("skipped", "done"))
            + f" ({m['harness_wall_s']:.1f} s)")
    return {"command": command, "mode": mode, "backend": backend,
            "device_kind": jax.devices()[0].device_kind, "jax": jax.__version__,
            "sizes": {k: list(v) if isinstance(v, tuple) else v for k, v in sz.items()},
            "matmul_peak_gflops_fp32": peak, "measurements": measurements,
            "load_average": list(os.getloadavg()), "wall_s": time.perf_counter() - t_start,
            **run_metadata()}


def all_ratios(result: dict) -> dict:
    """``{"<measurement>.<ratio>": value}`` over every measurement."""
    return {f"{m['name']}.{k}": v for m in result["measurements"]
            for k, v in m.get("ratios", {}).items()}


def ratios_ok(result: dict) -> bool:
    return all(math.isfinite(v) and v > 0 for v in all_ratios(result).values())
