"""The one output type every market simulator returns.

Every simulator in :mod:`jaxhedge.markets` is a pure function

    simulate(key, params, n_paths, n_steps, dt) -> MarketPaths

with ``n_paths`` and ``n_steps`` static (shape-defining) and ``params`` a pytree of
scalars (so the function is vmappable over params). Time index t = 0..n_steps, step
``dt`` in years.
"""
from __future__ import annotations

import jax
from flax import struct


@struct.dataclass
class MarketPaths:
    """Simulated market, shape contract ``(n_paths, n_steps + 1)`` for every field.

    Attributes:
      spot: underlying price S_t, S_0 = params.s0.
      vol: the instantaneous volatility a hedger may observe at t (σ for GBM and
        Merton's diffusion part, sqrt(v_t) for Heston, the current regime's σ for the
        regime chain, a trailing realised vol for historical paths).
      cost_multiplier: multiplier on every transaction cost at t (liquidity stress);
        1 wherever the market has no liquidity model.
    """

    spot: jax.Array
    vol: jax.Array
    cost_multiplier: jax.Array
