"""Padded batches of option-chain slices: the contract between ``data/`` and ``calibrate/``.

A *slice* is the set of quotes calibrated together (one (day, maturity bucket) for the
static study, one day's anchor expiry for the hedging study). Slices have different
numbers of quotes, so a batch pads them to a common width ``n_max`` and carries a
``mask``; every calibrator is ``vmap``-ed over the leading slice axis and must ignore
padded entries (their values are finite placeholders, never NaN, so gradients stay
finite).

Shape contract: every array field is ``(n_slices, n_max)``; ``keys`` is host metadata
(one tuple per slice, e.g. ``(date, bucket_days)``) and is not a pytree leaf.
"""
from __future__ import annotations

from typing import Any

import jax
import numpy as np
from flax import struct

__all__ = ["SliceBatch", "pad_slices"]

# Placeholders for padded entries: a harmless at-the-money quote (finite everywhere).
_PAD = {"strike": 1.0, "tau": 0.1, "forward": 1.0, "discount": 1.0, "price": 0.1,
        "spot": 1.0, "rate": 0.0}


@struct.dataclass
class SliceBatch:
    """European call quotes of many slices, padded to a common width.

    Attributes (all ``(n_slices, n_max)``):
        strike: K.
        tau: time to expiry in years (calendar days / 365).
        forward: the file's forward F for that expiry.
        discount: DF = exp(-r tau).
        price: the market price to fit, the synthetic European call ``C_eur``.
        spot: the underlying close S that day.
        rate: r (decimal, continuously compounded).
        mask: True for real quotes, False for padding.
        keys: host metadata, one tuple per slice (static, not traced).
    """

    strike: jax.Array
    tau: jax.Array
    forward: jax.Array
    discount: jax.Array
    price: jax.Array
    spot: jax.Array
    rate: jax.Array
    mask: jax.Array
    keys: tuple = struct.field(pytree_node=False, default=())

    @property
    def n_slices(self) -> int:
        return int(self.mask.shape[0])

    @property
    def moneyness(self) -> jax.Array:
        """K / F (padding gives 1)."""
        return self.strike / self.forward


_COLUMNS = {"strike": "strike", "tau": "tau_years", "forward": "F", "discount": "DF",
            "price": "C_eur", "spot": "S", "rate": "r"}


def pad_slices(frame: Any, by: tuple[str, ...], dtype=np.float64,
               columns: dict[str, str] | None = None) -> SliceBatch:
    """Group a chain ``frame`` (pandas) by the columns ``by`` and pad each group.

    ``columns`` maps SliceBatch fields to frame columns (default: the shared files'
    names: strike, tau_years, F, DF, C_eur, S, r). Groups come in sorted key order;
    quotes inside a group in frame order.
    """
    columns = {**_COLUMNS, **(columns or {})}
    missing = sorted({c for c in columns.values() if c not in frame.columns})
    if missing:
        raise ValueError(f"frame: missing columns {missing}")
    groups = list(frame.groupby(list(by), sort=True))
    if not groups:
        raise ValueError(f"frame: no rows to group by {list(by)}")
    n_max = max(len(g) for _, g in groups)
    n = len(groups)
    out = {f: np.full((n, n_max), _PAD[f], dtype) for f in columns}
    mask = np.zeros((n, n_max), bool)
    keys = []
    for i, (key, g) in enumerate(groups):
        m = len(g)
        for field, col in columns.items():
            out[field][i, :m] = g[col].to_numpy(dtype)
        mask[i, :m] = True
        keys.append(key if isinstance(key, tuple) else (key,))
    return SliceBatch(**{f: np.asarray(v) for f, v in out.items()}, mask=mask, keys=tuple(keys))
