"""Neural networks of the learning agents (flax NNX), and the observation features they read.

Every network is a flax NNX module that is built ONCE and split into ``(graphdef, params)``
with :func:`split`; the compiled training loop only ever sees ``params`` (a pytree of arrays,
``nnx.State``) and evaluates the network with the pure function :func:`apply`
(``nnx.merge`` inside it). The graphdef is hashable and lives in static config / static pytree
fields, so changing parameter values never retraces.

Modules:

* :class:`ResidualMLP` -- the papers' network: a linear lift to ``width``, ``n_blocks``
  residual blocks ``h <- h + f(h)`` with ``f`` = ``layers_per_block`` (activation, linear)
  pairs (pre-activation form, so zeroing a block's weights makes it the identity), then
  activation and a linear head.
* :class:`GaussianVolHead` -- the latent-volatility Gaussian policy ``(mu_pi, sigma_pi)``.
* :class:`MLP` -- a plain multilayer perceptron (deep hedging).

:func:`observation_features` turns an :class:`jaxhedge.env.Observation` into the bounded
feature vector all networks read (order in :data:`FEATURE_NAMES`).

Precision: parameters are created in ``param_dtype`` (default: JAX's default float, i.e.
float32, or float64 when ``jax.enable_x64`` is on at construction time); computation follows
the promoted dtype of inputs and parameters.
"""
from __future__ import annotations

import math
from typing import Callable

import jax
import jax.numpy as jnp
from flax import nnx

__all__ = [
    "FEATURE_NAMES",
    "N_FEATURES",
    "MONEYNESS_CLIP",
    "LOG_MONEYNESS_CLIP",
    "ResidualMLP",
    "GaussianVolHead",
    "MLP",
    "split",
    "apply",
    "observation_features",
]

#: Order of the last axis of :func:`observation_features`.
FEATURE_NAMES = (
    "log_moneyness",      # log(S/K), clipped to +-LOG_MONEYNESS_CLIP
    "norm_moneyness",     # (log S - log K + (r - q) tau) / (sigma sqrt(tau)), clipped +-10
    "time_to_maturity",   # tau (years)
    "elapsed",            # t dt (years)
    "rate",               # r
    "drift",              # mu (real-world drift)
    "vol",                # sigma (the market's instantaneous vol at t)
    "cost",               # eps (proportional cost in force, liquidity multiplier included)
    "position",           # previous position u_{t-1} (shares held before trading at t)
)
N_FEATURES = len(FEATURE_NAMES)

#: Clip of the normalised moneyness. N(+-10) is 0 / 1 to ~1e-23, so beyond +-10 the BS delta
#: (and any sensible hedge) is saturated and nothing is lost; without the clip the feature is
#: unbounded -- with sigma ~ 1e-3 and tau ~ 1e-6 (the last step of a short contract) a 1 %
#: moneyness gives ~1e4..1e5, which saturates every unit of the network and, in float32,
#: produces huge/NaN gradients.
MONEYNESS_CLIP = 10.0
#: Clip of log(S/K): |log S/K| <= 10 covers S/K in [4.5e-5, 2.2e4]; it only guards S -> 0 / inf.
LOG_MONEYNESS_CLIP = 10.0
_SD_FLOOR = 1e-12


def _default_dtype(param_dtype):
    return jnp.result_type(float) if param_dtype is None else param_dtype


class ResidualMLP(nnx.Module):
    """The papers' residual network ``in_dim -> out_dim``.

    ``lift`` (linear to ``width``) -> ``n_blocks`` x [``h <- h + f(h)``,
    ``f = (act, linear) x layers_per_block``] -> ``act`` -> linear ``head``.
    The blocks are pre-activation, so with all of a block's weights and biases zero the block
    is exactly the identity.
    """

    def __init__(self, in_dim: int, out_dim: int, width: int = 64, n_blocks: int = 3,
                 layers_per_block: int = 3, activation: Callable = nnx.elu, *,
                 rngs: nnx.Rngs, param_dtype=None):
        dt = _default_dtype(param_dtype)
        self.activation = activation
        self.lift = nnx.Linear(in_dim, width, rngs=rngs, param_dtype=dt)
        self.blocks = nnx.List([
            nnx.List([nnx.Linear(width, width, rngs=rngs, param_dtype=dt)
                      for _ in range(layers_per_block)])
            for _ in range(n_blocks)
        ])
        self.head = nnx.Linear(width, out_dim, rngs=rngs, param_dtype=dt)

    def block(self, i: int, h):
        """The residual branch ``f_i(h)`` of block ``i`` (so block i maps h to h + f_i(h))."""
        for layer in self.blocks[i]:
            h = layer(self.activation(h))
        return h

    def __call__(self, x):
        h = self.lift(x)
        for i in range(len(self.blocks)):
            h = h + self.block(i, h)
        return self.head(self.activation(h))


def check_anchor_ratio(value, field: str) -> float:
    """``value`` as a float: 0 (unanchored) or a finite number > 1; ValueError naming
    ``field`` otherwise."""
    r = float(value)
    if not (r == 0.0 or 1.0 < r < float("inf")):
        raise ValueError(f"{field}: must be 0 (unanchored) or a finite number > 1 "
                         f"(got {value!r})")
    return r


class GaussianVolHead(nnx.Module):
    """Latent-volatility Gaussian policy: features -> ``(mu_pi, sigma_pi)``, each ``(...)``.

    A :class:`ResidualMLP` trunk with two outputs ``(z_mu, z_sigma)``:

    * ``sigma_pi = 0.9 sigmoid(z_sigma) + 0.01`` in (0.01, 0.91) (the papers' map).
    * ``mu_pi = vol_min + (vol_max - vol_min) sigmoid(z_mu)`` in (vol_min, vol_max).
      Choice: the published code used ``exp(z_mu)``, which is positive but unbounded and
      diverged (a few large steps push exp into overflow, and the BS delta at a huge latent
      vol is a flat 1/2 with zero gradient). ``softplus`` is also unbounded above; the scaled
      sigmoid keeps the latent vol positive AND bounded with a gradient that never explodes.
      Defaults (0.01, 2.0) cover any realistic annualised vol.
    * ``anchor_ratio = r > 1`` (the anchored head): ``mu_pi = anchor * r^tanh(z_mu)``, clipped
      to (vol_min, vol_max), where ``anchor`` is the contract's own vol (the caller passes
      ``obs.vol``). The network learns a bounded log-ratio to the input vol instead of the
      vol itself. Why: a relative error is what prices feel (a price's vega-weighted error
      is a relative vol error), while the absolute map spends its accuracy where the
      training vols are dense and misprices the low vols (docs/decisions.md, "Anchored
      latent-vol heads"). At ``z = 0`` the head is the Black-Scholes vol itself; training
      moves it by what the objective asks (RLOP's price fixed point, Adaptive-QLBS's
      ``sigma (1 + 1/N)``), within a factor ``r`` either way.
    """

    def __init__(self, in_dim: int, width: int = 64, n_blocks: int = 3,
                 layers_per_block: int = 3, activation: Callable = nnx.elu, *,
                 vol_min: float = 0.01, vol_max: float = 2.0, anchor_ratio: float = 0.0,
                 rngs: nnx.Rngs, param_dtype=None):
        if not 0.0 < vol_min < vol_max:
            raise ValueError(
                f"GaussianVolHead: need 0 < vol_min < vol_max (got {vol_min}, {vol_max})")
        self.anchor_ratio = check_anchor_ratio(anchor_ratio, "GaussianVolHead.anchor_ratio")
        self.trunk = ResidualMLP(in_dim, 2, width, n_blocks, layers_per_block, activation,
                                 rngs=rngs, param_dtype=param_dtype)
        self.vol_min = float(vol_min)
        self.vol_max = float(vol_max)

    def __call__(self, x, anchor=None):
        """``x``: features ``(..., in_dim)``; ``anchor``: the input vol ``(...)``, read only
        by an anchored head (which requires it)."""
        z = self.trunk(x)
        if self.anchor_ratio:
            if anchor is None:
                raise ValueError("GaussianVolHead: an anchored head needs anchor (the input vol)")
            log_ratio = math.log(self.anchor_ratio) * jnp.tanh(z[..., 0])
            mu = jnp.clip(jnp.asarray(anchor, z.dtype) * jnp.exp(log_ratio), self.vol_min,
                          self.vol_max)
        else:
            mu = self.vol_min + (self.vol_max - self.vol_min) * jax.nn.sigmoid(z[..., 0])
        sigma = 0.9 * jax.nn.sigmoid(z[..., 1]) + 0.01
        return mu, sigma

    def start_at_anchor(self):
        """Make an anchored head output exactly the anchor (ratio 1) for every input: the
        vol column of the output layer and its bias to 0. The column still gets gradients
        (the trunk's features), so training moves off the start at once."""
        if not self.anchor_ratio:
            raise ValueError("GaussianVolHead.start_at_anchor: the head is not anchored")
        lin = self.trunk.head
        lin.kernel[...] = lin.kernel[...].at[:, 0].set(0.0)
        lin.bias[...] = lin.bias[...].at[0].set(0.0)


class MLP(nnx.Module):
    """Plain MLP ``in_dim -> widths... -> out_dim`` with ``activation`` between layers."""

    def __init__(self, in_dim: int, out_dim: int, widths: tuple[int, ...] = (32, 32),
                 activation: Callable = nnx.relu, *, rngs: nnx.Rngs, param_dtype=None):
        dt = _default_dtype(param_dtype)
        dims = (in_dim, *widths)
        self.activation = activation
        self.hidden = nnx.List([nnx.Linear(a, b, rngs=rngs, param_dtype=dt)
                                for a, b in zip(dims[:-1], dims[1:])])
        self.head = nnx.Linear(dims[-1], out_dim, rngs=rngs, param_dtype=dt)

    def __call__(self, x):
        for layer in self.hidden:
            x = self.activation(layer(x))
        return self.head(x)


def split(module: nnx.Module):
    """``(graphdef, params)``: the static structure and the parameter pytree (``nnx.State``).

    Call once after building a module. The networks here hold only ``nnx.Param`` variables
    (no batch-norm statistics, no RNG state), which this checks.
    """
    graphdef, params, rest = nnx.split(module, nnx.Param, ...)
    if jax.tree.leaves(rest):
        raise ValueError("nets.split: module has non-Param state; keep it separately")
    return graphdef, params


def apply(graphdef, params, *args, **kwargs):
    """Evaluate the network ``graphdef`` with ``params`` (pure; jit/vmap/grad friendly)."""
    return nnx.merge(graphdef, params)(*args, **kwargs)


def observation_features(obs) -> jax.Array:
    """Bounded, normalised features of an Observation: ``(...) -> (..., N_FEATURES)``.

    Order (:data:`FEATURE_NAMES`): ``log(S/K)`` clipped to +-10;
    normalised moneyness ``(log S - log K + (r - q) tau) / (sigma sqrt(tau))`` = log(F/K)
    in standard deviations, clipped to +-:data:`MONEYNESS_CLIP` (see there why; METHODS §4
    writes r tau, the dividend yield q makes it the forward and is 0 in the paper setups);
    ``tau``; elapsed time; ``r``; ``mu``; ``sigma``; ``eps``; previous position.
    ``sigma sqrt(tau)`` is floored at 1e-12 (inside the square root) so tau = 0 or
    sigma = 0 give the clipped +-10 (or 0 exactly at the money) instead of inf/NaN, with
    finite gradients in float32 and float64. The features are scale-free: spot and strike
    enter only through their ratio.

    >>> from jaxhedge.env import Observation
    >>> obs = Observation(spot=jnp.array([100.0, 1.0]), strike=jnp.array([105.0, 1.05]),
    ...                   time_to_maturity=0.1, elapsed=0.0, rate=0.0, div_yield=0.0,
    ...                   drift=0.0, vol=0.2, cost=0.0, cost_multiplier=1.0, position=0.5)
    >>> f = observation_features(obs)
    >>> f.shape == (2, N_FEATURES), bool(jnp.allclose(f[0], f[1], atol=1e-6))
    (True, True)
    """
    fields = (obs.spot, obs.strike, obs.time_to_maturity, obs.elapsed, obs.rate,
              obs.div_yield, obs.drift, obs.vol, obs.cost, obs.position)
    dtype = jnp.result_type(*fields, float)
    (spot, strike, tau, elapsed, rate, q, drift, vol, cost,
     position) = jnp.broadcast_arrays(*(jnp.asarray(f, dtype) for f in fields))
    tiny = jnp.finfo(dtype).tiny
    log_mk = jnp.log(jnp.maximum(spot, tiny)) - jnp.log(jnp.maximum(strike, tiny))
    # floor inside the sqrt: value and gradient stay finite (no 1/0, no sqrt'(0) = inf)
    sd = jnp.sqrt(jnp.maximum(vol * vol * tau, _SD_FLOOR**2))
    norm = jnp.clip((log_mk + (rate - q) * tau) / sd, -MONEYNESS_CLIP, MONEYNESS_CLIP)
    log_mk = jnp.clip(log_mk, -LOG_MONEYNESS_CLIP, LOG_MONEYNESS_CLIP)
    return jnp.stack([log_mk, norm, tau, elapsed, rate, drift, vol, cost, position], axis=-1)
