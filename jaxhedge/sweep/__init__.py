"""Hyperparameter sweeps: one device, many devices (``jax.sharding``), many machines (Ray).

* :mod:`~jaxhedge.sweep.spec` -- sweep files (TOML) -> groups x hparam sets x seeds.
* :mod:`~jaxhedge.sweep.blocks` -- cutting groups into vmapped blocks from a memory estimate.
* :mod:`~jaxhedge.sweep.mesh` -- the member axis over a 1-D device mesh.
* :mod:`~jaxhedge.sweep.local` -- the local backend (resume, job-array slices, collect).
* :mod:`~jaxhedge.sweep.ray_backend` -- Ray Tune (optional extra ``jaxhedge[ray]``).
* :mod:`~jaxhedge.sweep.results` -- table (CSV + Parquet), best configurations, plots.

Names are imported lazily, so ``jaxhedge --help`` does not pay for JAX and pandas.
See ``docs/sweeps.md``.
"""
import importlib

_NAMES = {"SweepSpec": "spec", "load_sweep": "spec", "spec_from_dict": "spec",
          "Block": "blocks", "Plan": "blocks", "plan_sweep": "blocks",
          "run_local": "local", "SweepOutcome": "local", "SweepDirError": "local",
          "collect_table": "results", "best_configs": "results", "write_results": "results",
          "run_ray": "ray_backend"}
__all__ = sorted(_NAMES)


def __getattr__(name):
    if name in _NAMES:
        return getattr(importlib.import_module(f"jaxhedge.sweep.{_NAMES[name]}"), name)
    raise AttributeError(f"module 'jaxhedge.sweep' has no attribute {name!r}")
