"""The papers' latent-volatility Gaussian policy and REINFORCE-with-baseline pieces.

Shared by Adaptive-QLBS (METHODS §4.2) and RLOP (§4.3). The policy network
(:class:`jaxhedge.nets.GaussianVolHead`) maps observation features to ``(mu_pi, sigma_pi)``;
an action is a volatility ``vol ~ N(mu_pi, sigma_pi)`` and the hedge is the Black-Scholes
delta at that volatility, ``u = e^{-q tau} N(d1(S, K, tau, r, vol))``, which keeps a call's
hedge in [0, 1]. Sampled vols are floored at ``VOL_FLOOR`` before the delta is taken (a
Gaussian sample can be negative); the log-probability is that of the unfloored sample.

Optional input standardisation (``LatentVolPolicy.feature_norm = (loc, scale)``, each
``(N_FEATURES,)``): the network reads ``(features - loc) / scale``. The raw features of
:func:`jaxhedge.nets.observation_features` span very different ranges (tau and elapsed time
~0.1, sigma over a training range of width ~0.2, log-moneyness ~0.05-1); a policy that must
output ``sigma_hat ~ sigma`` then needs large first-layer weights on a nearly constant input
and learns the sigma dependence slowly. ``None`` (the default, and what RLOP uses) leaves the
features as they are.

Optional ignored inputs (``LatentVolPolicy.ignored``, names of :data:`nets.FEATURE_NAMES`):
those feature columns are read as 0 whatever the observation holds (:func:`features`). For
agents trained with an input held at 0 (e.g. drift, cost, rate in the study presets): an
input held constant in training has untrained weights, and a surface fit or a backtest that
moves it would otherwise move the price and the hedge through them arbitrarily.

Shapes: every function broadcasts over leading batch dimensions.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from jaxhedge import nets
from jaxhedge.env import Observation
from jaxhedge.pricing import bs_delta, bs_price

VOL_FLOOR = 1e-3


def features(obs, ignored: tuple[str, ...] = ()):
    """:func:`nets.observation_features` of ``obs`` with the ``ignored`` columns set to 0."""
    x = nets.observation_features(obs)
    if ignored:
        keep = jnp.asarray([name not in ignored for name in nets.FEATURE_NAMES], x.dtype)
        x = x * keep
    return x


def check_anchor(anchor_ratio, ignored, owner: str) -> float:
    """``anchor_ratio`` as a float: 0 (the papers' absolute map) or > 1 (the anchored head of
    :class:`nets.GaussianVolHead`), which reads the vol input and so cannot ignore it."""
    r = nets.check_anchor_ratio(anchor_ratio, f"{owner}.anchor_ratio")
    if r and "vol" in ignored:
        raise ValueError(f"{owner}.anchor_ratio: an anchored head reads the vol input; remove "
                         "'vol' from ignored_inputs or set anchor_ratio = 0")
    return r


def check_ignored(ignored, owner: str) -> tuple[str, ...]:
    """``ignored`` as a tuple of feature names; ValueError naming ``owner.ignored_inputs``."""
    names = tuple(str(n) for n in ignored)
    bad = [n for n in names if n not in nets.FEATURE_NAMES]
    if bad:
        raise ValueError(f"{owner}.ignored_inputs: {bad} are not features; choose from "
                         f"{list(nets.FEATURE_NAMES)}")
    return names


def gaussian_log_prob(x, mean, std):
    """log N(x; mean, std^2), elementwise."""
    z = (x - mean) / std
    return -0.5 * z * z - jnp.log(std) - 0.5 * jnp.log(2 * jnp.pi)


def score_sample(mean, std, noise):
    """REINFORCE's action and log-probability: ``vol = mean + std * noise`` held fixed.

    The action is a constant of the gradient (``stop_gradient``), so ``d log_prob`` is the
    score ``((vol - mean) / std^2) d mean + ((vol - mean)^2 / std^3 - 1 / std) d std``.
    Why it matters: with the action left differentiable, ``(vol - mean) / std`` is the
    noise itself whatever the parameters, and the gradient in ``mean`` is exactly 0 --
    REINFORCE would then move only the spread, never the hedge.
    """
    vol = jax.lax.stop_gradient(mean + std * noise)
    return vol, gaussian_log_prob(vol, mean, std)


def delta_at_vol(obs, vol, is_call=True):
    """BS delta of the short option's hedge at volatility ``vol`` (floored at VOL_FLOOR)."""
    return bs_delta(obs.spot, obs.strike, obs.time_to_maturity, obs.rate,
                    jnp.maximum(vol, VOL_FLOOR), obs.div_yield, is_call)


def price_at_vol(obs, vol, is_call=True):
    """BS price at a (learned) volatility: the papers' price head ``C_BS(S, K, tau, r; vol)``."""
    return bs_price(obs.spot, obs.strike, obs.time_to_maturity, obs.rate,
                    jnp.maximum(vol, VOL_FLOOR), obs.div_yield, is_call)


@struct.dataclass
class LatentVolPolicy:
    """A callable hedger: the policy's MEAN vol gives the hedge (deterministic evaluation).

    ``graphdef`` is static; ``params`` are the network's arrays. ``dist(obs)`` returns the
    Gaussian ``(mu_pi, sigma_pi)`` used for sampling during training.
    """

    graphdef: object = struct.field(pytree_node=False)
    params: object
    is_call: bool = struct.field(pytree_node=False, default=True)
    feature_norm: object = None
    ignored: tuple = struct.field(pytree_node=False, default=())

    def features(self, obs):
        """The network's input: observation features (``ignored`` columns 0), standardised
        when ``feature_norm``."""
        x = features(obs, self.ignored)
        if self.feature_norm is not None:
            loc, scale = self.feature_norm
            x = (x - loc.astype(x.dtype)) / scale.astype(x.dtype)
        return x

    def dist(self, obs):
        """``(mu_pi, sigma_pi)`` at ``obs`` (an anchored head reads ``obs.vol`` as its anchor)."""
        return nets.apply(self.graphdef, self.params, self.features(obs), anchor=obs.vol)

    def sample(self, key, obs):
        """(vol, log_prob) of one sampled action per observation (:func:`score_sample`)."""
        mean, std = self.dist(obs)
        return score_sample(mean, std, jax.random.normal(key, jnp.shape(mean),
                                                         jnp.result_type(mean)))

    def __call__(self, obs):
        mean, _ = self.dist(obs)
        return delta_at_vol(obs, mean, self.is_call)


def discounted_returns(rewards, gamma):
    """G_t = sum_k gamma^k r_{t+k} along the LAST axis (time), by a reverse scan."""
    rewards = jnp.moveaxis(rewards, -1, 0)

    def body(g, r):
        g = r + gamma * g
        return g, g

    _, returns = jax.lax.scan(body, jnp.zeros_like(rewards[0]), rewards, reverse=True)
    return jnp.moveaxis(returns, 0, -1)


def reinforce_losses(log_probs, returns, baseline, gamma=1.0):
    """(policy loss, baseline loss) of REINFORCE with a learned baseline.

    ``log_probs``, ``returns``, ``baseline``: (..., T). Policy loss
    ``-mean(gamma^t (G_t - b_t) log pi)`` with the advantage held constant
    (stop_gradient); baseline loss ``mean((G_t - b_t)^2)``. The advantage is a per-sample
    vector, never broadcast against another axis.
    """
    t = jnp.arange(log_probs.shape[-1], dtype=log_probs.dtype)
    advantage = jax.lax.stop_gradient(returns - baseline)
    policy = -jnp.mean(gamma**t * advantage * log_probs)
    value = jnp.mean((jax.lax.stop_gradient(returns) - baseline) ** 2)
    return policy, value


def start_observation(contract) -> Observation:
    """The t = 0 observation of a :class:`jaxhedge.contracts.Contract` (no position yet).

    The contract's numeric leaves may carry a batch shape; every field of the observation
    has their broadcast shape (default float dtype). What the price heads read.
    """
    leaves = (contract.s0, contract.strike, contract.maturity, contract.sigma, contract.mu,
              contract.rate, contract.div_yield, contract.cost)
    dtype = jnp.result_type(*leaves, float)
    shape = jnp.broadcast_shapes(*(jnp.shape(x) for x in leaves))
    b = lambda x: jnp.broadcast_to(jnp.asarray(x, dtype), shape)  # noqa: E731
    return Observation(spot=b(contract.s0), strike=b(contract.strike),
                       time_to_maturity=b(contract.maturity), elapsed=b(0.0),
                       rate=b(contract.rate), div_yield=b(contract.div_yield),
                       drift=b(contract.mu), vol=b(contract.sigma), cost=b(contract.cost),
                       cost_multiplier=b(1.0), position=b(0.0))
