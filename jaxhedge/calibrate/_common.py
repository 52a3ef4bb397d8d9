"""Shared helpers of the calibrators: dtype policy, batch unpacking, validation.

dtype policy (docs/calibration.md): calibrators take an explicit ``dtype`` (float32 or
float64). ``None`` means JAX's default float (float32 unless x64 is on). float64 is
recommended for real chains (deep-ITM time values and the IV inversion need it) but the
library never flips global config: asking for float64 while x64 is off is an error.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxhedge.data.slices import SliceBatch

__all__ = ["resolve_dtype", "batch_arrays", "check_iters"]


def resolve_dtype(dtype):
    """float32 / float64 numpy dtype; ValueError for anything else or float64 without x64."""
    if dtype is None:
        return jnp.dtype(jnp.result_type(float))
    try:
        dt = jnp.dtype(dtype)
    except TypeError:
        raise ValueError(f"dtype: must be float32 or float64, got {dtype!r}") from None
    if dt not in (jnp.dtype(jnp.float32), jnp.dtype(jnp.float64)):
        raise ValueError(f"dtype: must be float32 or float64, got {dt}")
    if dt == jnp.dtype(jnp.float64) and not jax.config.read("jax_enable_x64"):
        raise ValueError("dtype: float64 needs `with jax.enable_x64(True):` around the call")
    return dt


def check_iters(n_iter) -> int:
    if not isinstance(n_iter, (int, np.integer)) or isinstance(n_iter, bool) or not (
            1 <= n_iter <= 10_000):
        raise ValueError(f"n_iter: must be an int in [1, 10000], got {n_iter!r}")
    return int(n_iter)


def batch_arrays(batch: SliceBatch, dtype):
    """(forward, strike, tau, discount, price, mask) as jnp arrays, each (n_slices, n_max).

    Padded entries are replaced by a harmless ATM quote (the data layer already does it;
    repeated here so a caller-built batch with NaN padding cannot poison gradients).
    """
    if not isinstance(batch, SliceBatch):
        raise ValueError(f"batch: must be a jaxhedge.data.SliceBatch, got {type(batch).__name__}")
    mask = jnp.asarray(batch.mask, bool)
    if mask.ndim != 2:
        raise ValueError(f"batch.mask: must be 2-D (n_slices, n_max), got shape {mask.shape}")
    out = []
    for name, pad in (("forward", 1.0), ("strike", 1.0), ("tau", 0.1), ("discount", 1.0),
                      ("price", 0.1)):
        a = jnp.asarray(getattr(batch, name), dtype)
        if a.shape != mask.shape:
            raise ValueError(f"batch.{name}: shape {a.shape} must equal mask shape {mask.shape}")
        out.append(jnp.where(mask, a, jnp.asarray(pad, dtype)))
    f, k, tau, df, c = out
    m = np.asarray(batch.mask, bool)
    for name, a, ok in (("forward", f, "> 0"), ("strike", k, "> 0"), ("tau", tau, "> 0"),
                        ("discount", df, "in (0, 1.5]")):
        v = np.asarray(a)[m]
        bad = ~np.isfinite(v) | (v <= 0) | ((v > 1.5) if name == "discount" else False)
        if bad.any():
            raise ValueError(f"batch.{name}: must be finite and {ok} on real quotes")
    v = np.asarray(c)[m]
    if (~np.isfinite(v)).any() or (v < 0).any():
        raise ValueError("batch.price: must be finite and >= 0 on real quotes")
    return f, k, tau, df, c, mask
