"""Shared input checks: finite numbers in a range, seeds, memory estimates, output paths.

Every check raises ``ValueError`` with one line naming the field and the allowed range (the
CLI turns it into ``error: ...`` and exit status 2). Ranges and the reasons for them are in
docs/validation.md.

>>> check_range("--cost", 0.5, 0, 1)
0.5
>>> check_range("learning_rate", float("nan"), 0, None, lo_open=True)
Traceback (most recent call last):
ValueError: learning_rate: must be a finite number in (0, inf) (got nan)
>>> check_int("--seed", 2**64, 0, SEED_MAX)
Traceback (most recent call last):
ValueError: --seed: must be an integer in [0, 9223372036854775807] (got 18446744073709551616)
"""
from __future__ import annotations

import math
import os
from pathlib import Path

__all__ = ["SEED_MAX", "INT_MAX", "MAX_PATHS", "MAX_STEPS", "MEMORY_SAFETY", "SYSTEM_DIRS",
           "check_range", "check_int", "check_seed", "prng_key", "available_memory_bytes",
           "check_memory", "check_output_dir", "format_bytes"]

#: seeds are 64-bit: ``prng_key`` uses all 64 bits (jax.random.PRNGKey keeps only the low
#: 32 without x64, so 2**32 and 0 would give the same paths).
SEED_MAX = 2**63 - 1
#: the largest count any flag accepts (members, blocks, updates): int64, what TOML holds.
INT_MAX = 2**63 - 1
#: paths of one simulation: beyond a billion the Monte Carlo error is far below float32's.
MAX_PATHS = 10**9
#: rebalancing dates of one simulated contract: far beyond any hedging question (10**6 is
#: hourly for a century) and below 2**31 so int32 step indices never overflow; what binds
#: in practice is the memory estimate of paths x steps (:func:`check_memory`).
MAX_STEPS = 10**8
#: a job may use at most this fraction of the memory available when it starts (the rest is
#: XLA's temporaries beyond the estimate, the OS and other processes).
MEMORY_SAFETY = 0.5
#: output paths inside these are refused: pseudo file systems and the operating system.
SYSTEM_DIRS = ("/proc", "/sys", "/dev", "/etc", "/usr", "/bin", "/sbin", "/boot", "/lib",
               "/lib64", "/run", "/var/run")


def _fmt(x) -> str:
    return "inf" if x == math.inf else "-inf" if x == -math.inf else f"{x:g}"


def check_range(name: str, value, lo=None, hi=None, lo_open: bool = False,
                hi_open: bool = False) -> float:
    """``value`` as a finite float in the interval (``None`` = unbounded), else ValueError."""
    lo_, hi_ = (-math.inf if lo is None else lo), (math.inf if hi is None else hi)
    rng = (f"{'(' if lo_open or lo is None else '['}{_fmt(lo_)}, "
           f"{_fmt(hi_)}{')' if hi_open or hi is None else ']'}")
    try:
        x = float(value)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"{name}: must be a finite number in {rng} (got {value!r})") from None
    ok = math.isfinite(x) and (x > lo_ if lo_open else x >= lo_) and (
        x < hi_ if hi_open else x <= hi_)
    if not ok:
        raise ValueError(f"{name}: must be a finite number in {rng} (got {value!r})")
    return x


def check_int(name: str, value, lo: int = 0, hi: int = INT_MAX) -> int:
    """``value`` (an int, or its decimal text) in ``[lo, hi]``, else ValueError."""
    try:
        if isinstance(value, bool) or isinstance(value, float):
            raise ValueError
        x = int(str(value).strip()) if isinstance(value, str) else int(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: must be an integer in [{lo}, {hi}] (got {value!r})") from None
    if not lo <= x <= hi:
        raise ValueError(f"{name}: must be an integer in [{lo}, {hi}] (got {x})")
    return x


def check_seed(name: str, value) -> int:
    """A seed in ``[0, 2**63 - 1]``."""
    return check_int(name, value, 0, SEED_MAX)


def prng_key(seed: int):
    """``jax.random.PRNGKey(seed)`` using all 64 bits of the seed with or without x64 (equal
    to it for seeds < 2**32, and to its x64 value for every seed)."""
    import jax.numpy as jnp

    seed = check_seed("seed", seed)
    return jnp.array([seed >> 32, seed & 0xFFFFFFFF], dtype=jnp.uint32)


def available_memory_bytes() -> int:
    """Memory a new allocation can get now: ``MemAvailable`` of /proc/meminfo, else
    ``os.sysconf`` available pages (free, not counting reclaimable cache)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 2**62  # unknown: do not refuse


def format_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1000
    return f"{n:.1f} TB"


def check_memory(name: str, estimate_bytes: float, detail: str,
                 available: int | None = None, safety: float = MEMORY_SAFETY) -> None:
    """Refuse a job whose estimated memory exceeds ``safety`` x the available memory
    (checked before compiling, so nothing is allocated)."""
    avail = available_memory_bytes() if available is None else available
    if estimate_bytes > safety * avail:
        raise ValueError(f"{name}: needs about {format_bytes(estimate_bytes)} ({detail}), more "
                         f"than {safety:.0%} of the {format_bytes(avail)} of memory available")


def check_output_dir(name: str, out, files: tuple[str, ...] = ()) -> Path:
    """Check that ``out`` can become (or is) a writable directory and that each of ``files``
    can be written inside it, before any work: not an existing file, not inside a system
    directory, not under a file, the nearest existing ancestor writable, and no output file
    name taken by a directory. Creates nothing."""
    if out is None:
        raise ValueError(f"{name}: an output directory is required")
    raw = str(out)
    if not raw.strip() or "\x00" in raw:
        raise ValueError(f"{name}: not a usable directory name ({raw!r})")
    path = Path(os.path.abspath(os.path.expanduser(raw)))
    real = Path(os.path.realpath(path))
    for p in {path, real}:
        for sysdir in SYSTEM_DIRS:
            if p == Path(sysdir) or Path(sysdir) in p.parents:
                raise ValueError(f"{name}: {out} is inside the system directory {sysdir}")
    if path.exists() and not path.is_dir():
        raise ValueError(f"{name}: {out} is an existing file, not a directory")
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        raise ValueError(f"{name}: cannot create {out}: {probe} is a file")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ValueError(f"{name}: cannot write to {out} ({probe} is not writable)")
    for f in files:
        target = path / f
        for parent in list(Path(f).parents)[:-1]:
            if (path / parent).exists() and not (path / parent).is_dir():
                raise ValueError(f"{name}: cannot write {target}: {path / parent} is a file")
        if target.is_dir():
            raise ValueError(f"{name}: cannot write {target}: a directory is in the way")
        if target.exists() and not os.access(target, os.W_OK) and not os.access(
                target.parent, os.W_OK):
            raise ValueError(f"{name}: cannot write {target} (not writable)")
    return path
