"""Peer libraries, each run in its own interpreter (``benchmarks/peers/.venv``).

:func:`run_pfhedge` starts ``benchmarks/peers/pfhedge_runner.py`` with the peers' venv
python and parses the one JSON line it prints. When the venv or the runner is absent
(``bash benchmarks/peers/setup.sh`` creates the venv) it returns ``{"skipped": reason}``
instead: the harness never fails for a missing peer.
"""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

#: ``benchmarks/peers`` of a source checkout (absent from an installed wheel).
DEFAULT_DIR = Path(__file__).resolve().parents[2] / "benchmarks" / "peers"


def peers_dir() -> Path:
    """``$JAXHEDGE_PEERS_DIR`` or the checkout's ``benchmarks/peers``."""
    return Path(os.environ.get("JAXHEDGE_PEERS_DIR") or DEFAULT_DIR)


def peer_python(directory: Path | None = None) -> Path:
    return (directory or peers_dir()) / ".venv" / "bin" / "python"


def run_pfhedge(n_paths: int, price_paths, repeats: int, timeout_s: float = 1800,
                directory: Path | None = None) -> dict:
    """pfhedge's standard example timed in the peers' venv, or ``{"skipped": reason}``."""
    directory = directory or peers_dir()
    python, runner = peer_python(directory), directory / "pfhedge_runner.py"
    if not python.is_file():
        return {"skipped": f"peers venv absent: {python} (run bash {directory}/setup.sh)"}
    if not runner.is_file():
        return {"skipped": f"runner not found: {runner} (needs a source checkout)"}
    cmd = [str(python), str(runner), "--paths", str(n_paths), "--price-paths",
           ",".join(str(n) for n in price_paths), "--repeats", str(repeats)]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "XLA_", "JAX"))}
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, env=env)
    except subprocess.TimeoutExpired:
        return {"skipped": f"pfhedge runner timed out after {timeout_s:g} s"}
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"skipped": f"pfhedge runner failed (exit {proc.returncode}): {tail}"}
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["command"] = " ".join(cmd)
    return out


def ratios(peer: dict, ours: dict) -> dict:
    """peer time / jaxhedge time for each shared measurement (> 1: jaxhedge faster)."""
    r = {k: peer[k] / ours[k] for k in ("epoch_s", "train_step_s", "validation_s")}
    for n, t in peer.get("price_s", {}).items():
        if n in ours.get("price_s", {}):
            r[f"price_{n}_s"] = t / ours["price_s"][n]
    return r
