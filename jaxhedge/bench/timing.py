"""Wall-clock timers (best of several runs, device work waited for) and the matmul peak."""
from __future__ import annotations

import time

import jax
import numpy as np


def best_of(fn, repeats: int) -> float:
    """Shortest of ``repeats`` wall-clock runs of ``fn()`` in seconds (results waited for).

    >>> best_of(lambda: sum(range(10)), 3) >= 0.0
    True
    """
    best = float("inf")
    for _ in range(max(int(repeats), 1)):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        best = min(best, time.perf_counter() - t0)
    return best


def compile_and_time(update, key, state, hparams, repeats: int):
    """``(compiled, compile_s, run_s)`` of an agent's ``update(key, state, hparams)``:
    compiled apart (timed), run once, then the best of ``repeats`` runs on keys
    ``fold_in(key, i)`` (fresh batches, the same program)."""
    t0 = time.perf_counter()
    compiled = jax.jit(update).lower(key, state, hparams).compile()
    compile_s = time.perf_counter() - t0
    jax.block_until_ready(compiled(key, state, hparams))
    best = float("inf")
    for i in range(max(int(repeats), 1)):
        t0 = time.perf_counter()
        jax.block_until_ready(compiled(jax.random.fold_in(key, i), state, hparams))
        best = min(best, time.perf_counter() - t0)
    return compiled, compile_s, best


def matmul_peak_gflops(n: int = 2048, repeats: int = 5) -> float:
    """fp32 GFLOP/s of an ``n x n`` numpy matrix multiply (host BLAS, all threads)."""
    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    b = a.T.copy()
    a @ b
    return 2 * n**3 / best_of(lambda: a @ b, repeats) / 1e9


def device_matmul_peak_gflops(n: int = 2048, repeats: int = 5) -> float:
    """fp32 GFLOP/s of an ``n x n`` JAX matmul on the default device (the accelerator's
    peak on a GPU backend; XLA:CPU's own on CPU)."""
    x = jax.random.normal(jax.random.key(0), (n, n), jax.numpy.float32)
    f = jax.jit(lambda a: a @ a.T).lower(x).compile()
    jax.block_until_ready(f(x))
    return 2 * n**3 / best_of(lambda: f(x), repeats) / 1e9
