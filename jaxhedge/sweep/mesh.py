"""The member axis over all local devices: a 1-D ``Mesh`` and ``NamedSharding`` (not pmap).

Members are independent, so sharding the leading (member) axis of every leaf lets each
device train its share with no communication; jit follows the input shardings and the
outputs come back sharded the same way. Blocks are padded to a multiple of the device
count (:func:`pad_members`) so the split is even.
"""
from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

__all__ = ["member_mesh", "shard_members_axis", "pad_members", "AXIS"]

AXIS = "members"


def member_mesh(devices=None) -> Mesh:
    """A 1-D mesh named ``"members"`` over ``devices`` (default: all local devices)."""
    devices = jax.local_devices() if devices is None else list(devices)
    return Mesh(np.array(devices), (AXIS,))


def shard_members_axis(tree, mesh: Mesh):
    """``tree`` with every leaf's leading axis split over the mesh (it must divide evenly)."""
    sharding = NamedSharding(mesh, P(AXIS))
    return jax.device_put(tree, sharding)


def pad_members(tree, size: int):
    """Host arrays of ``tree`` (leading axis ``m``) padded to ``size`` by repeating the last
    member: padding runs real hyperparameters (no NaNs from zeros) and is dropped later."""
    def pad(x):
        x = np.asarray(x)
        extra = size - x.shape[0]
        if extra < 0:
            raise ValueError(f"block: {x.shape[0]} members exceed the block size {size}")
        return np.concatenate([x, np.repeat(x[-1:], extra, axis=0)]) if extra else x
    return jax.tree.map(pad, tree)

