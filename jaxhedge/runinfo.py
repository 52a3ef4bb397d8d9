"""What every run writes beside its results: provenance, and atomic file writes."""
from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import subprocess
import tempfile
from pathlib import Path

import jax

_PACKAGES = ("jax", "jaxlib", "flax", "optax", "chex", "numpy", "orbax-checkpoint", "jaxhedge")


def git_sha(cwd: str | os.PathLike | None = None) -> str | None:
    """Commit of the source tree (suffixed ``-dirty`` with local changes), or None."""
    cwd = cwd or Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True,
                             text=True, check=True, timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=cwd, capture_output=True, text=True, timeout=5).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def package_versions() -> dict[str, str | None]:
    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def device_info() -> dict:
    devices = jax.devices()
    return {
        "backend": jax.default_backend(),
        "devices": [d.device_kind for d in devices],
        "n_devices": len(devices),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def run_metadata() -> dict:
    return {"git_sha": git_sha(), "versions": package_versions(), "device": device_info(),
            "x64": bool(jax.config.jax_enable_x64)}


def current_umask() -> int:
    """The process's umask, read without changing it (``/proc/self/status``; elsewhere the
    set-and-restore fallback, which is not thread-safe)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, write) -> Path:
    """Create ``path`` atomically: ``write(tmp)`` fills a temp file in the same directory,
    which then replaces ``path``; readers see the old file or the whole new one, never
    half of it. On any error the temp file is removed and the error re-raised. The file
    gets the permissions ``open()`` would give it (0o666 less the umask; mkstemp makes
    its temp files 0o600)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_write`), fsynced."""
    def write(tmp):
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
    atomic_write(path, write)


def save_figure(fig, path: str | os.PathLike, dpi: int = 110) -> Path:
    """Save a matplotlib figure as PNG atomically and close it."""
    import matplotlib.pyplot as plt

    try:
        return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=dpi))
    finally:
        plt.close(fig)


def atomic_write_json(path: str | os.PathLike, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_jsonable) + "\n")


def _jsonable(x):
    try:
        return x.item() if getattr(x, "ndim", 1) == 0 else x.tolist()
    except AttributeError as err:
        raise TypeError(f"not JSON serialisable: {type(x).__name__}") from err
