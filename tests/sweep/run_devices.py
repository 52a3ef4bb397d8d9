"""Run the toy sweep in a fresh process with N fake CPU devices (XLA_FLAGS set before
JAX starts); used by test_devices.py. Usage: run_devices.py N SWEEP.toml OUT_DIR"""
import os
import sys

n, path, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={n}"
os.environ["JAX_PLATFORMS"] = "cpu"

import jax  # noqa: E402

from jaxhedge.sweep.local import run_local  # noqa: E402
from jaxhedge.sweep.spec import load_sweep  # noqa: E402

assert len(jax.devices()) == n, jax.devices()
res = run_local(load_sweep(path), out, progress=False)
print("block sizes", [b.size for b in res.plan.blocks])
