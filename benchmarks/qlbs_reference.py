"""Reproduce the classic-QLBS reference numbers of METHODS.md §4.4.

European put, S0 = K = 100, μ = 0.05, σ = 0.15, r = 0.03, T = 1, λ = 0.001, 10,000 paths,
pure risk hedge; mean ± std (ddof=1) over seeds of DP with 24 and 6 steps and FQI with 6
steps (η = 0.5), in float64 and float32 on the same keys (float32 uses the QR solver).

    python benchmarks/qlbs_reference.py [n_seeds] [seed]
"""
from __future__ import annotations

import sys
import time

import jax
import numpy as np

from jaxhedge.agents.qlbs import QLBSConfig, QLBSParams, qlbs_price_multi

SPEC = {"dp24": (4.93, 0.06), "dp6": (4.64, 0.05), "fqi6": (4.64, 0.07)}
CONFIGS = {
    "dp24": QLBSConfig(n_steps=24),
    "dp6": QLBSConfig(n_steps=6),
    "fqi6": QLBSConfig(n_steps=6, method="fqi"),
}


def run(n_seeds: int = 5, seed: int = 2024) -> dict:
    keys = jax.random.split(jax.random.key(seed), n_seeds)
    params = QLBSParams()
    out = {}
    for x64 in (True, False):
        with jax.enable_x64(x64):
            for name, cfg in CONFIGS.items():
                t0 = time.perf_counter()
                res = jax.block_until_ready(qlbs_price_multi(keys, cfg, params))
                wall = time.perf_counter() - t0
                out[(name, x64)] = (np.asarray(res.price, np.float64),
                                    np.asarray(res.check - res.dp_price, np.float64), wall)
    return out


def main() -> None:
    n_seeds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    seed = int(sys.argv[2]) if len(sys.argv) > 2 else 2024
    out = run(n_seeds, seed)
    print(f"{'case':6} {'dtype':8} {'mean':>8} {'std':>7}  {'spec window':>14}  "
          f"{'max|f32-f64|':>12} {'max|chk|':>9} {'wall s':>7}")
    for name in CONFIGS:
        ref, tol = SPEC[name]
        p64 = out[(name, True)][0]
        for x64 in (True, False):
            price, chk, wall = out[(name, x64)]
            gap = np.abs(price - p64).max()
            ok = "ok" if abs(price.mean() - ref) <= tol else "OUT"
            print(f"{name:6} {'float64' if x64 else 'float32':8} {price.mean():8.4f} "
                  f"{price.std(ddof=1):7.4f}  {ref:.2f}±{tol:.2f} {ok:>3}  "
                  f"{gap:12.2e} {np.abs(chk).max():9.2e} {wall:7.2f}")


if __name__ == "__main__":
    main()
