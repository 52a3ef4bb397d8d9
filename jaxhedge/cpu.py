"""Use every CPU core: one XLA host device per core (must run before JAX starts)."""
from __future__ import annotations

import os
import sys

_FLAG = "--xla_force_host_platform_device_count"


def use_all_cores(n: int | None = None) -> bool:
    """Ask XLA for ``n`` (default: all) CPU devices, so sharded work runs on every core.

    XLA parallelises one large fused loop over threads, but the rollout's per-step loops
    are small (cache-resident blocks), so cores are used by running blocks on separate
    devices instead. Does nothing (returns False) when JAX is already initialised, when
    the user set the flag, or when JAX_PLATFORMS names a non-CPU platform.
    """
    flags = os.environ.get("XLA_FLAGS", "")
    platforms = os.environ.get("JAX_PLATFORMS", "")
    if _FLAG in flags or (platforms and "cpu" not in platforms) or _jax_initialised():
        return False
    n = n or os.cpu_count() or 1
    os.environ["XLA_FLAGS"] = f"{flags} {_FLAG}={n}".strip()
    return True


def _jax_initialised() -> bool:
    if "jax" not in sys.modules:
        return False
    try:
        from jax._src import xla_bridge
        return bool(xla_bridge._backends)
    except (ImportError, AttributeError):
        return True
