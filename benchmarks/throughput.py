"""Environment-only rollout throughput: jaxhedge vs the same work in vectorised numpy.

Work: hedge a short ATM call under GBM with the Black-Scholes delta, proportional cost
eps, unwind charged, float32; count path-steps (one path advanced one rebalancing date).

    python -m benchmarks.throughput [--quick] --out benchmarks/results/throughput_cpu.json

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
import time

from jaxhedge.cpu import use_all_cores

use_all_cores()  # one XLA device per core, set before JAX initialises

import jax  # noqa: E402
import numpy as np

from jaxhedge import agents
from jaxhedge.env import EnvConfig, HedgingEnv
from jaxhedge.ledger import CostModel
from jaxhedge.markets import GBMParams
from jaxhedge.rollout import rollout
from jaxhedge.runinfo import atomic_write_json, run_metadata

S0, STRIKE, SIGMA, MU, RATE, MATURITY, EPS = 100.0, 100.0, 0.2, 0.05, 0.02, 0.25, 1e-3


def numpy_rollout(rng: np.random.Generator, n_paths: int, n_steps: int, premium: float):
    """The same episode as the env, written directly in vectorised float32 numpy."""
    from scipy.special import ndtr

    f32 = np.float32
    dt = f32(MATURITY / n_steps)
    drift = f32((MU - 0.5 * SIGMA**2) * dt)
    vol_dt = f32(SIGMA * np.sqrt(dt))
    growth = f32(np.exp(RATE * dt))
    s = np.full(n_paths, S0, f32)
    cash = np.full(n_paths, premium, f32)
    shares = np.zeros(n_paths, f32)
    cost = np.zeros(n_paths, f32)
    for t in range(n_steps):
        tau = f32((n_steps - t) * dt)
        d1 = (np.log(s / f32(STRIKE)) + f32((RATE + 0.5 * SIGMA**2) * tau)) / f32(
            SIGMA * np.sqrt(tau))
        target = ndtr(d1).astype(f32)
        trade = target - shares
        c = f32(EPS) * np.abs(trade) * s
        cash -= trade * s + c
        cost += c
        shares = target
        z = rng.standard_normal(n_paths, dtype=f32)
        s = s * np.exp(drift + vol_dt * z)
        cash *= growth
    c = f32(EPS) * np.abs(shares) * s
    cash += shares * s - c
    cost += c
    return cash - np.maximum(s - f32(STRIKE), 0), cost


def _best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def jax_runner(n_paths: int, n_steps: int):
    """(compiled run function, compile seconds, premium) for the jaxhedge rollout."""
    env = HedgingEnv(EnvConfig(market="gbm", n_steps=n_steps))
    params = env.default_params(GBMParams(s0=S0, mu=MU, sigma=SIGMA), strike=STRIKE,
                                maturity=MATURITY, rate=RATE, costs=CostModel(EPS))
    hedger = agents.DeltaHedger()
    key = jax.random.PRNGKey(0)
    t0 = time.perf_counter()
    compiled = rollout.lower(key, env, params, hedger, n_paths, keep_paths=False).compile()
    compile_s = time.perf_counter() - t0
    run = lambda: jax.block_until_ready(compiled(key, params, hedger))
    return run, compile_s, float(params.premium)


def bench_jax(n_paths: int, n_steps: int, repeats: int):
    run, compile_s, premium = jax_runner(n_paths, n_steps)
    out = run()
    best = _best_of(run, repeats)
    return {"n_paths": n_paths, "n_steps": n_steps, "compile_s": compile_s, "run_s": best,
            "path_steps_per_s": n_paths * n_steps / best,
            "mean_pnl": float(out.pnl.mean()), "premium": premium}


def headline(n_paths: int, n_steps: int, repeats: int):
    """JAX and numpy timed alternately in the same loop, best of ``repeats`` each.

    Alternating makes the ratio robust to background load that changes over time.
    """
    run, compile_s, premium = jax_runner(n_paths, n_steps)
    rng = np.random.default_rng(0)
    jax_pnl = run().pnl
    np_pnl, _ = numpy_rollout(rng, n_paths, n_steps, premium)
    jax_t, np_t = [], []
    for _ in range(repeats):
        jax_t.append(_best_of(run, 1))
        np_t.append(_best_of(lambda: numpy_rollout(rng, n_paths, n_steps, premium), 1))
    work = n_paths * n_steps
    return {
        "jax": {"n_paths": n_paths, "n_steps": n_steps, "compile_s": compile_s,
                "run_s": min(jax_t), "path_steps_per_s": work / min(jax_t),
                "mean_pnl": float(jax_pnl.mean())},
        "numpy": {"n_paths": n_paths, "n_steps": n_steps, "run_s": min(np_t),
                  "path_steps_per_s": work / min(np_t), "mean_pnl": float(np_pnl.mean())},
    }


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
        "work": "GBM, BS delta hedge of a short ATM call, proportional cost 1e-3, unwind "
                "charged, float32",
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
