"""Cutting a sweep into vmapped blocks, sized from a compiled-memory estimate.

Every block of a group has the same padded size ``B`` (a multiple of the device count), so
a group compiles once however many blocks it has; the last block is padded with copies of
its last member and the padding is dropped from the results.

Memory: the chunk program of a probe block is lowered and compiled (never run) at two
sizes, and ``memory_analysis()`` (arguments + outputs + temporaries) is fitted as
``fixed + per_member * m``. ``B`` is the largest size whose estimate fits the budget:
on accelerators each device's share (``B / n_devices`` members) against that device's
``bytes_limit x memory_fraction``; on CPU the devices share host RAM, so the whole block
against ``total RAM x memory_fraction``. ``--max-block`` / ``sweep.block_size`` cap it.
"""
from __future__ import annotations

import dataclasses
import os
from typing import NamedTuple

import numpy as np

# Every device runs at least this many members. XLA specialises a batch dimension of size
# 1 (a batched dot of one becomes a plain dot), which can round float32 differently (1 ulp
# measured), so a share of 1 would break "results do not depend on block size or device
# count"; with shares >= 2 they are bitwise equal (tested: 1 vs 4 devices, blocks 3 vs 6).
MIN_SHARE = 2

__all__ = ["MIN_SHARE", "Block", "Plan", "MemoryEstimate", "estimate_memory", "memory_budget",
           "choose_block_size", "plan_sweep"]


class MemoryEstimate(NamedTuple):
    """Bytes of one compiled chunk for ``m`` members on one device: ``fixed + per_member*m``."""

    fixed: float
    per_member: float

    def bytes(self, members_per_device: float) -> float:
        return self.fixed + self.per_member * members_per_device


@dataclasses.dataclass(frozen=True)
class Block:
    """Members ``[start, stop)`` of group ``group`` (offsets within the group), run padded
    to ``size`` members. ``index`` numbers blocks across the whole sweep."""

    index: int
    group: int
    start: int
    stop: int
    size: int


@dataclasses.dataclass(frozen=True)
class Plan:
    blocks: tuple[Block, ...]
    block_size: dict  # group -> B
    estimate: dict  # group -> MemoryEstimate as a dict, or None when B was given
    budget_bytes: float | None
    n_devices: int

    def to_dict(self) -> dict:
        return {"n_devices": self.n_devices, "budget_bytes": self.budget_bytes,
                "block_size": {str(k): v for k, v in self.block_size.items()},
                "estimate": {str(k): v for k, v in self.estimate.items()},
                "blocks": [dataclasses.asdict(b) for b in self.blocks]}

    @classmethod
    def from_dict(cls, d: dict) -> "Plan":
        return cls(tuple(Block(**b) for b in d["blocks"]),
                   {int(k): v for k, v in d["block_size"].items()},
                   {int(k): v for k, v in d["estimate"].items()}, d["budget_bytes"],
                   d["n_devices"])


def _compiled_bytes(agent, hp_one, chunk: int, m: int) -> float:
    import jax

    from jaxhedge.train.loop import make_member_block

    block = make_member_block(agent, chunk)
    # the stacked hparams' shapes and (canonical: float64 -> float32 without x64) dtypes
    hp = jax.tree.map(lambda x: jax.ShapeDtypeStruct(
        (m,) + np.shape(x), jax.dtypes.canonicalize_dtype(np.asarray(x).dtype)), hp_one)
    keys = jax.eval_shape(lambda: jax.random.split(jax.random.key(0), m))
    ts = jax.eval_shape(block.init, keys, hp)
    stats = block.train_chunk.lower(ts, hp).compile().memory_analysis()
    if stats is None:  # backends without the analysis: count the state and hparams alone
        return float(sum(np.prod(x.shape) * x.dtype.itemsize for x in jax.tree.leaves((ts, hp))
                         if hasattr(x, "dtype") and not jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)))
    return float(stats.argument_size_in_bytes + stats.output_size_in_bytes
                 + stats.temp_size_in_bytes - stats.alias_size_in_bytes)


def estimate_memory(agent, hp_one, chunk: int, probe: int = 8) -> MemoryEstimate:
    """Fit ``fixed + per_member * m`` from compiling (not running) ``probe`` and ``2 probe``."""
    b1, b2 = _compiled_bytes(agent, hp_one, chunk, probe), _compiled_bytes(agent, hp_one, chunk, 2 * probe)
    per = max((b2 - b1) / probe, b2 / (2 * probe) * 0.5, 1.0)
    return MemoryEstimate(max(b1 - per * probe, 0.0), per)


def memory_budget(fraction: float) -> tuple[float, bool]:
    """``(bytes, per_device)``: accelerator memory of the smallest device, or host RAM."""
    import jax

    dev = jax.devices()[0]
    if dev.platform != "cpu":
        limits = [(d.memory_stats() or {}).get("bytes_limit") for d in jax.devices()]
        if all(limits):
            return fraction * min(limits), True
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return fraction * ram, False


def choose_block_size(n_members: int, n_devices: int, estimate: MemoryEstimate | None,
                      budget: float | None, per_device: bool, max_block: int | None) -> int:
    """Largest multiple of ``n_devices`` within budget and ``max_block``, at most the group
    (padded); at least ``MIN_SHARE`` members per device."""
    floor = MIN_SHARE * n_devices
    b = max(-(-n_members // n_devices) * n_devices, floor)
    if max_block:
        b = min(b, max(max_block // n_devices, 1) * n_devices)
    if estimate is not None and budget is not None:
        if per_device:  # each device holds b / n_devices members and its own fixed part
            fit = (budget - estimate.fixed) / estimate.per_member * n_devices
        else:  # shared host memory: every device's program at once
            fit = (budget - n_devices * estimate.fixed) / estimate.per_member
        b = min(b, max(int(fit) // n_devices, 1) * n_devices)
    return max(b, floor)


def plan_sweep(spec, n_devices: int | None = None, max_block: int | None = None,
               budget_bytes: float | None = None) -> Plan:
    """Blocks for every group of ``spec``; compiles one probe per group when the block size
    comes from memory (``sweep.block_size = 0``), nothing runs."""
    import jax

    n_devices = n_devices or len(jax.devices())
    fixed_b = spec.section.block_size or None
    per_device = False
    if budget_bytes is None and not fixed_b:
        budget_bytes, per_device = memory_budget(spec.section.memory_fraction)
    blocks, sizes, estimates = [], {}, {}
    M = spec.members_per_group
    for group in spec.groups():
        est = None
        if fixed_b:
            b = choose_block_size(M, n_devices, None, None, False, min(fixed_b, max_block or fixed_b))
        else:
            agent, hp = group.job.build()
            est = estimate_memory(agent, hp, spec.chunk_for(group.job))
            b = choose_block_size(M, n_devices, est, budget_bytes, per_device, max_block)
        sizes[group.index], estimates[group.index] = b, (est._asdict() if est else None)
        for start in range(0, M, b):
            blocks.append(Block(len(blocks), group.index, start, min(start + b, M), b))
    return Plan(tuple(blocks), sizes, estimates, budget_bytes, n_devices)
