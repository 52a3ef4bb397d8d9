r"""Adaptive-QLBS (METHODS §4.2; Chen, Hu, Yi, Sun, arXiv 2601.01709, Definition 1).

Value with a diminishing weight ``d(t) = 1 - t/N`` and a standard-deviation penalty,

    V_t = E_t[ -d(t) Pi_t - lambda sum_{tau=t}^{N} gamma^{tau-t} sqrt(Var Pi_tau) ],

price ``C = -max_pi V_0``. The policy is the papers' latent-volatility Gaussian policy
(:class:`jaxhedge.agents.latent_vol.LatentVolPolicy` on a :class:`jaxhedge.nets.GaussianVolHead`):
an action is a vol ``vol ~ N(mu_pi(s), sigma_pi(s))`` and the hedge is the BS delta at it.

One training iteration (:meth:`AdaptiveQLBS.update`), as in the authors' code:

1. sample ``n_envs`` contracts from the training distribution ``hparams.contracts``
   (:meth:`jaxhedge.contracts.ContractDistribution.sample`: mu ~ N(mu_mean, mu_std); sigma, K,
   S0, eps uniform; T = N dt);
2. simulate one GBM path per env (:func:`jaxhedge.markets.gbm.simulate`);
3. ``lax.scan`` over t = 0..N-1 along that path: sample ``vol_t ~ N(mu_pi, sigma_pi)``, hedge
   ``u_t = N(d1(vol_t))``; estimate the reward ``r_t`` from ``RS = n_continuations`` fresh GBM
   continuations from S_t to maturity (vmapped over envs x continuations, an inner ``lax.scan``
   over the continuation's dates): the hedge at t is fixed to ``u_t``, later hedges follow the
   current policy's MEAN vol (see "Continuations" below), and on each continuation

       Pi_t = gamma^{N-t} h(S_N) - sum_{s=t}^{N-1} u_s (gamma^{s+1-t} S_{s+1} - gamma^{s-t} S_s)
              + eps sum_{s=t}^{N-1} gamma^{s+1-t} |u_{s+1} - u_s| S_{s+1},   u_N := 0,
       Pi_{t+1} = (Pi_t + u_t (gamma S_{t+1} - S_t)) / gamma,
       r_t = gamma (1 - (t+1)/N) mean Pi_{t+1} - (1 - t/N) mean Pi_t - lambda std(Pi_t) [dt]

   (means and the sample std, ddof = 1, over the RS continuations; the ``dt`` factor is the
   authors' code, on by default, flag :attr:`AdaptiveQLBS.step_penalty_dt`);
4. returns ``G_t = sum_k gamma^k r_{t+k}``; REINFORCE with a learned baseline ``b(s)`` (a
   separate small :class:`jaxhedge.nets.ResidualMLP` on top of the control variate
   ``-(1 - t/N) C_BS(sigma_obs)``, see :meth:`AdaptiveQLBS._baseline`): minimise
   ``mean (G_t - b(s_t))^2`` and ``-mean gamma^t (G_t - b) log pi(vol_t | s_t)``
   (:func:`latent_vol.reinforce_losses`), one Adam step on (policy, baseline).

Ledger (METHODS §2). :func:`portfolio_values` evaluates ``Pi_t`` by the closed forward sum
above rather than by driving :mod:`jaxhedge.ledger` step by step: it runs for every date t of
the training scan on every (env, continuation), with t traced, and the masked sum over dates
is one fused elementwise pass, where a ledger replay would need a second ``lax.scan`` per t
started at a traced date. The sum is the ledger's arithmetic, not a second ledger: ``Pi_t``
is the premium at which :func:`jaxhedge.ledger.replay` from date t (no entry cost, unwind
charged, cash growing at r) ends with zero P&L, ``Pi_{t+1}`` is that replay's value at t+1,
and the payoff is :func:`jaxhedge.ledger.payoff`.
``tests/agents/test_adaptive_qlbs.py::test_closed_form_is_the_ledger`` ties both formulas
to ``ledger.replay`` on random tapes (hypothesis, float64).

The rewards are computed with the parameters held constant (``stop_gradient``); the sampled
vol is a constant in ``log pi`` (score-function estimator, no reparameterisation leak).

Continuations: the hedges after t follow the policy MEAN, not samples. The reward is meant to
score the action at t under "the current policy" afterwards; the mean is the policy the agent
is evaluated with (:meth:`hedger`) and the one whose vol is the price, and sampling the later
vols would add exploration noise to the std(Pi_t) estimate (inflating the penalty by a term
that does not depend on u_t), i.e. only variance to the REINFORCE signal.

Normalised units. Each env is simulated in units of its strike (``S -> S/K``, ``K -> 1``).
Every quantity in the reward (Pi, its mean and std) is positively homogeneous of degree 1 in
``(S, K)`` and the network features (:func:`jaxhedge.nets.observation_features`: log-moneyness,
normalised moneyness clipped to +-10, tau, t, r, mu, sigma, eps, position) are scale-free, so
this only rescales each env's reward by 1/K: the per-state optimal policy is unchanged and the
price in money units is K times the normalised one (BS is homogeneous). Rewards are then O(0.1)
whatever S0/K, which keeps the baseline regression well scaled. Inputs are bounded by the
feature clip and outputs by :class:`GaussianVolHead` (``mu_pi`` a scaled sigmoid in
(vol_min, vol_max), ``sigma_pi`` in (0.01, 0.91)); the published code fed the unclipped
moneyness (~1e3 at sigma = 0.01 near expiry) into an ``exp`` head and diverged at init.

Price head: ``V(s) = -C_BS(S, K, tau, r; sigma_hat(s))`` with ``sigma_hat`` the policy-mean
network, so :meth:`price` is a Black-Scholes price at a learned state-dependent vol (of a
:class:`jaxhedge.contracts.Contract`, read in strike units like the training inputs).
:meth:`mc_value` also gives a direct Monte-Carlo estimate of ``-V_0`` for the trained mean policy
(the quantity of Proposition 1, non-decreasing in lambda).

What it learns. With mu = r = eps = 0, E[Pi_t] is the BS price for any hedge and the only
learning signal is the std penalty, which is second order in the hedge error; its per-state
minimiser is the local-risk-minimising hedge ``Cov(C(S_{t+1}), dS_t) / Var(dS_t)``, whose
implied vol is ``sigma (1 + 1/N)`` at the money, not sigma, and the objective is flat in the vol
there (the BS delta is stationary in sigma where d2 = 0). So REINFORCE, whose only signal is
that penalty under reward noise, identifies sigma_hat weakly; the pathwise estimator with
``standardize_features``, enough continuations, ``rao_blackwell`` and ``lr_decay_steps`` brings
the price head within 5 % of BS on a (sigma, K) grid (slow test
``test_price_within_5pct_of_bs``). ``rao_blackwell`` also makes the pathwise loss independent
of lambda's scale at mu = r = eps = 0 (Adam is scale invariant). Proposition 1 holds for the
Definition-1 value (:meth:`mc_value`; in lambda and in eps, tested), not for the price head,
which carries lambda only through sigma_hat. Timings, the finite-value sweeps and every
measured error: ``docs/adaptive_qlbs.md``.

Shapes (E = ``n_envs``, N = ``n_steps``, RS = ``n_continuations``):

* :func:`portfolio_values`: spots ``(..., N+1)``, hedges ``(..., N)`` -> ``(...)``;
* :func:`step_reward`: spots ``(..., RS, N+1)``, hedges ``(..., RS, N)`` -> ``(...)``;
* :meth:`AdaptiveQLBS.episode`: a dict of ``(E, N)`` arrays; :meth:`AdaptiveQLBS.update`:
  scalar metrics; :meth:`AdaptiveQLBS.mc_value`: ``(E,)``;
* :meth:`AdaptiveQLBS.price`: the broadcast shape of the contract's numeric leaves.

>>> spots, hedges = jnp.array([1.0, 1.2]), jnp.array([0.5])  # N = 1, one path
>>> round(float(portfolio_values(spots, hedges, 1.0, 0.0, 1.0, 0)), 6)  # h - u dS
0.1

Deviations from METHODS / the papers (and why):

* The networks do not read lambda (``observation_features`` has no lambda slot); lambda is a
  dynamic hparam, so one agent is trained per lambda. Proposition 1 is checked across agents.
* The continuation hedges use the policy mean (above); no entry cost at t = 0 (the METHODS
  formula has none: its cost sum starts with the trade at t + 1).
* Money is normalised by K (above); the rate r is one hparam scalar (not sampled).
"""
from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx, struct

from jaxhedge import ledger, nets
from jaxhedge.agents import latent_vol
from jaxhedge.agents.latent_vol import (LatentVolPolicy, delta_at_vol, discounted_returns,
                                        gaussian_log_prob, price_at_vol, reinforce_losses)
from jaxhedge.contracts import Contract, ContractBatch, ContractDistribution
from jaxhedge.env import OPTION_TYPES, Observation
from jaxhedge.markets import gbm
from jaxhedge.pricing import bs_price

__all__ = [
    "AdaptiveQLBS",
    "AdaptiveQLBSHParams",
    "AdaptiveQLBSState",
    "PAPER_CONTRACTS",
    "contract_batch",
    "portfolio_values",
    "step_reward",
]



# --------------------------------------------------------------------------- the formulas
def portfolio_values(spots, hedges, strike, eps, gamma, t, is_call=True, growth=None):
    """``Pi_t`` of METHODS §4.2 on continuations, by the closed (forward-sum) formula.

    Args:
      spots: ``(..., N+1)`` continuation prices; only ``s >= t`` is read.
      hedges: ``(..., N)`` hedges ``u_s``; only ``s >= t`` is read (``u_N := 0`` is implied).
      strike, eps, gamma: broadcast against ``spots[..., 0]``.
      t: date (may be traced).
      growth: optional one-step growth ``E[S_{s+1} | S_s] / S_s = e^{mu dt}`` (broadcast like
        ``strike``). When given, each hedge's gain ``u_s (gamma S_{s+1} - S_s)`` is replaced by
        its conditional expectation given the path up to s, ``u_s S_s (gamma growth - 1)``
        (Rao-Blackwellisation): same expectation, and the same expected gradient in any
        parameter the hedges depend on (``u_s`` is F_s-measurable), without the zero-mean
        ``u_s x noise`` term. Used only for the MEAN terms of the pathwise loss
        (:func:`step_reward`), never for the std penalty, which needs the real spread.

    Returns ``Pi_t`` shaped ``spots.shape[:-1]``.
    """
    n = hedges.shape[-1]
    dtype = spots.dtype
    s = jnp.arange(n, dtype=jnp.int32)
    active = s >= t
    g = jnp.asarray(gamma, dtype)[..., None]
    e = jnp.asarray(eps, dtype)[..., None]
    expo = (s - t).astype(dtype)  # gamma^{s-t}
    u_next = jnp.concatenate([hedges[..., 1:], jnp.zeros_like(hedges[..., :1])], axis=-1)
    s_now, s_next = spots[..., :-1], spots[..., 1:]
    if growth is None:
        trade = hedges * (g ** (expo + 1) * s_next - g**expo * s_now)
    else:
        m = jnp.asarray(growth, dtype)[..., None]
        trade = hedges * g**expo * s_now * (g * m - 1.0)
    cost = e * g ** (expo + 1) * jnp.abs(u_next - hedges) * s_next
    flows = jnp.where(active, -trade + cost, 0.0)
    payoff = ledger.payoff(spots[..., -1], strike, is_call)
    return g[..., 0] ** (n - jnp.asarray(t, dtype)) * payoff + jnp.sum(flows, axis=-1)


def step_reward(spots, hedges, strike, eps, gamma, t, risk_aversion, dt, is_call=True,
                step_penalty_dt=True, growth=None):
    """``r_t`` of METHODS §4.2 from RS continuations (their axis: the LAST batch axis).

    ``spots`` ``(..., RS, N+1)``, ``hedges`` ``(..., RS, N)`` with ``hedges[..., t]`` the fixed
    ``u_t``; ``strike``, ``eps``, ``gamma`` shaped ``(...)`` or scalars. Returns ``(...)``.
    ``growth`` (``e^{mu dt}``, shaped like ``strike``): Rao-Blackwellise the two mean terms
    (see :func:`portfolio_values`); the std penalty always uses the sampled ``Pi_t``.
    """
    n = hedges.shape[-1]
    dtype = spots.dtype
    expand = lambda x: jnp.asarray(x, dtype)[..., None]
    g = expand(gamma)
    pi_t = portfolio_values(spots, hedges, expand(strike), expand(eps), g, t, is_call)
    s_t = jnp.take(spots, t, axis=-1)
    s_t1 = jnp.take(spots, t + 1, axis=-1)
    u_t = jnp.take(hedges, t, axis=-1)
    pi_t1 = (pi_t + u_t * (g * s_t1 - s_t)) / g
    tf = jnp.asarray(t, dtype)
    # sample std (ddof 1) floored inside the root: identical continuations (a far-OTM
    # option whose delta underflows to 0) give std 0, where sqrt's gradient would be NaN
    rs = pi_t.shape[-1]
    var = jnp.sum((pi_t - jnp.mean(pi_t, axis=-1, keepdims=True)) ** 2, axis=-1) / (rs - 1)
    std = jnp.sqrt(jnp.maximum(var, jnp.finfo(pi_t.dtype).tiny))
    penalty = jnp.asarray(risk_aversion, dtype) * std
    if step_penalty_dt:
        penalty = penalty * jnp.asarray(dt, dtype)
    if growth is not None:
        m = expand(growth)
        pi_t = portfolio_values(spots, hedges, expand(strike), expand(eps), g, t, is_call, m)
        pi_t1 = (pi_t + u_t * s_t * (g * m - 1.0)) / g
    return (g[..., 0] * (1 - (tf + 1) / n) * jnp.mean(pi_t1, axis=-1)
            - (1 - tf / n) * jnp.mean(pi_t, axis=-1) - penalty)


# --------------------------------------------------------------------------- pytrees
#: The paper's training distribution (arXiv 2601.01709): mu ~ N(0, 1), sigma ~ U(0.01, 1.01),
#: K and S0 ~ U(0.3, 1.7), eps ~ U(0, 0.01), weekly dates (dt = 7/252), r = 0.
PAPER_CONTRACTS = ContractDistribution(dt=7 / 252, rate=0.0, mu_mean=0.0, mu_std=1.0,
                                       sigma_lo=0.01, sigma_hi=1.01, s0_lo=0.3, s0_hi=1.7,
                                       strike_lo=0.3, strike_hi=1.7, cost_lo=0.0, cost_hi=0.01)


@struct.dataclass
class AdaptiveQLBSHParams:
    """Dynamic (vmappable) hyperparameters.

    ``contracts`` is the training distribution (:class:`jaxhedge.contracts.ContractDistribution`:
    mu ~ N(mu_mean, mu_std); sigma, K, S0, eps uniform; T = n_steps * dt with n_steps the
    agent's static field; gamma = exp(-rate dt)); default :data:`PAPER_CONTRACTS`.
    """

    learning_rate: float = 1e-4
    risk_aversion: float = 0.02
    contracts: ContractDistribution = PAPER_CONTRACTS


@struct.dataclass
class AdaptiveQLBSState:
    """Agent state: graphdefs static; params ``{"policy", "baseline"}``; Adam state; step;
    ``feature_norm``: the policy's input standardisation ``(loc, scale)`` fixed at init from
    the training distribution (:meth:`AdaptiveQLBS.feature_norm`), or None."""

    policy_graphdef: Any = struct.field(pytree_node=False)
    baseline_graphdef: Any = struct.field(pytree_node=False)
    params: Any
    opt_state: Any
    step: jax.Array
    feature_norm: Any = None


# --------------------------------------------------------------------------- the agent
@dataclasses.dataclass(frozen=True)
class AdaptiveQLBS:
    """Adaptive-QLBS agent (static configuration; see the module docstring).

    Attributes:
      n_envs: parallel environments (contracts, one path each) per iteration.
      n_steps: N, hedging dates per contract (T = N dt).
      n_continuations: RS, continuations per (env, date) estimating the reward.
      width / n_blocks / layers_per_block: the policy's :class:`nets.ResidualMLP` trunk.
      baseline_width / baseline_blocks: the baseline network (ResidualMLP, 1 output).
      vol_min / vol_max: bounds of the policy mean vol (:class:`nets.GaussianVolHead`).
      step_penalty_dt: multiply the std penalty by dt (the authors' code).
      option: "call" or "put".
      estimator: "reinforce" (the papers': score function with a learned baseline) or
        "pathwise" (METHODS §4.3's project addition: -V_0 of the mean policy differentiated
        through the main path and every continuation; the baseline is still fitted, for
        diagnostics). Pathwise learns where REINFORCE's only signal, the second-order std
        penalty, drowns in reward noise (measured: docs/adaptive_qlbs.md).
      rao_blackwell: pathwise only: in the loss, replace each hedge gain
        ``u_s (gamma S_{s+1} - S_s)`` of the MEAN terms by its conditional expectation
        (:func:`portfolio_values`); unbiased, and at mu = r removes the gradient noise that does
        not scale with lambda. Rewards, metrics and REINFORCE are unaffected.
      lr_decay_steps: 0 keeps the learning rate constant; ``k > 0`` multiplies it by a cosine
        from 1 down to 0.1 over updates ``0..k`` (then 0.1), from the state's step counter.
      standardize_features: the policy reads its features standardised by the training
        distribution of the hparams at init (:meth:`feature_norm`; kept in the state, so the
        trained agent evaluates any contract with the same map).
      ignored_inputs: feature names (:data:`nets.FEATURE_NAMES`) every network reads as 0
        (for inputs held at 0 in training: :mod:`jaxhedge.agents.latent_vol`; why:
        docs/adaptive_qlbs.md, "Study preset").
      learning_rate / risk_aversion: defaults for :meth:`default_hparams`.
      anchor_ratio: 0 keeps the papers' latent-vol map; ``r > 1`` makes the policy head
        anchored (:class:`nets.GaussianVolHead`: the contract's vol times ``r^tanh(z)``,
        started at ratio 1; why: docs/adaptive_qlbs.md, "Study preset").
    """

    n_envs: int = 2500
    n_steps: int = 4
    n_continuations: int = 200
    width: int = 64
    n_blocks: int = 3
    layers_per_block: int = 3
    baseline_width: int = 32
    baseline_blocks: int = 1
    vol_min: float = 0.01
    vol_max: float = 2.0
    step_penalty_dt: bool = True
    option: str = "call"
    estimator: str = "reinforce"
    rao_blackwell: bool = True
    # its own range: the config loader's rule for ``lr_*`` names (a rate in (0, 10]) would
    # refuse any number of updates above 10
    lr_decay_steps: int = dataclasses.field(default=0, metadata={"range": (0, None)})
    standardize_features: bool = False
    ignored_inputs: tuple[str, ...] = ()
    learning_rate: float = 1e-4
    risk_aversion: float = 0.02
    anchor_ratio: float = 0.0
    name: str = "adaptive_qlbs"

    def __post_init__(self):
        for f in ("n_envs", "n_steps", "width", "n_blocks", "layers_per_block",
                  "baseline_width", "baseline_blocks"):
            v = getattr(self, f)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"adaptive_qlbs.{f}: must be an integer >= 1 (got {v!r})")
        if not isinstance(self.n_continuations, int) or self.n_continuations < 2:
            raise ValueError("adaptive_qlbs.n_continuations: must be an integer >= 2 "
                             f"(got {self.n_continuations!r})")
        if self.option not in OPTION_TYPES:
            raise ValueError(f"adaptive_qlbs.option: must be one of {OPTION_TYPES} "
                             f"(got {self.option!r})")
        if not 0.0 < self.vol_min < self.vol_max:
            raise ValueError("adaptive_qlbs.vol_min/vol_max: need 0 < vol_min < vol_max")
        if self.estimator not in ("reinforce", "pathwise"):
            raise ValueError("adaptive_qlbs.estimator: must be 'reinforce' or 'pathwise' "
                             f"(got {self.estimator!r})")
        if not isinstance(self.lr_decay_steps, int) or self.lr_decay_steps < 0:
            raise ValueError("adaptive_qlbs.lr_decay_steps: must be an integer >= 0 "
                             f"(got {self.lr_decay_steps!r})")
        object.__setattr__(self, "ignored_inputs",
                           latent_vol.check_ignored(self.ignored_inputs, "adaptive_qlbs"))
        object.__setattr__(self, "anchor_ratio", latent_vol.check_anchor(
            self.anchor_ratio, self.ignored_inputs, "adaptive_qlbs"))

    @property
    def is_call(self) -> bool:
        return self.option == "call"

    def default_hparams(self) -> AdaptiveQLBSHParams:
        return AdaptiveQLBSHParams(learning_rate=self.learning_rate,
                                   risk_aversion=self.risk_aversion)

    # ------------------------------------------------------------------ networks
    def _networks(self, key):
        k_pol, k_base = jax.random.split(key)
        policy = nets.GaussianVolHead(nets.N_FEATURES, self.width, self.n_blocks,
                                      self.layers_per_block, vol_min=self.vol_min,
                                      vol_max=self.vol_max, anchor_ratio=self.anchor_ratio,
                                      rngs=nnx.Rngs(params=k_pol))
        if self.anchor_ratio:  # start at ratio 1 (the contract's own vol) everywhere
            policy.start_at_anchor()
        baseline = nets.ResidualMLP(nets.N_FEATURES, 1, self.baseline_width,
                                    self.baseline_blocks, 2, rngs=nnx.Rngs(params=k_base))
        return nets.split(policy), nets.split(baseline)

    @staticmethod
    def _optimizer(hparams):
        return optax.inject_hyperparams(optax.adam)(learning_rate=hparams.learning_rate)

    def _policy(self, state, params=None) -> LatentVolPolicy:
        return LatentVolPolicy(graphdef=state.policy_graphdef,
                               params=state.params["policy"] if params is None else params,
                               is_call=self.is_call, feature_norm=state.feature_norm,
                               ignored=self.ignored_inputs)

    def feature_norm(self, hparams):
        """``(loc, scale)`` for :data:`nets.FEATURE_NAMES` from the contract distribution.

        tau and elapsed time: uniform on the N decision dates; sigma and eps: their uniform
        ranges; mu: its normal; log(S/K): the S0 and K ranges plus the episode's diffusion; each
        becomes
        roughly mean 0, std 1. Scales are floored (a degenerate range, e.g. eps = 0 or a single
        sigma, must not divide by 0 or blow up other contracts' inputs). The normalised
        moneyness (already in standard deviations), r (one value) and the position (in [0, 1])
        pass unchanged.
        """
        dtype = jnp.result_type(float)
        f = lambda x: jnp.asarray(x, dtype)
        d = hparams.contracts
        unif = lambda lo, hi, floor: ((f(lo) + f(hi)) / 2,
                                      jnp.maximum((f(hi) - f(lo)) / jnp.sqrt(f(12.0)), floor))
        # decision dates t = 0..N-1: tau in {dt..N dt}, elapsed in {0..(N-1) dt}
        n = self.n_steps
        dt_lo, dt_hi = (f(x) for x in d.dt_range())
        dt = (dt_lo + dt_hi) / 2
        big_t = n * dt
        spread = jnp.maximum(dt * jnp.sqrt(f((n**2 - 1) / 12)), dt)
        # dt uniform on [dt_lo, dt_hi] too: std of k dt (k uniform on the dates, independent)
        e_dt2 = dt**2 + (dt_hi - dt_lo) ** 2 / 12
        def spread_k(e_k, e_k2):
            return jnp.sqrt(jnp.maximum(e_k2 * e_dt2 - (e_k * dt) ** 2, 0.0))
        ranged = dt_hi > dt_lo  # a fixed dt keeps exactly the former numbers
        tau = ((n + 1) * dt / 2, jnp.where(ranged, jnp.maximum(
            spread_k(f((n + 1) / 2), f((n + 1) * (2 * n + 1) / 6)), dt), spread))
        elapsed = ((n - 1) * dt / 2, jnp.where(ranged, jnp.maximum(
            spread_k(f((n - 1) / 2), f((n - 1) * (2 * n - 1) / 6)), dt), spread))
        sig = unif(d.sigma_lo, d.sigma_hi, 0.01)
        eps = unif(d.cost_lo, d.cost_hi, 1e-3)
        mu = (f(d.mu_mean), jnp.maximum(f(d.mu_std), 0.1))
        # log(S/K): log S0 and log K uniform-ish over their ranges, plus the diffusion over the
        # episode (time-average variance sigma^2 T / 2 at the mean sigma^2)
        lg = lambda lo, hi: (jnp.log(f(lo)) + jnp.log(f(hi))) / 2
        lv = lambda lo, hi: (jnp.log(f(hi)) - jnp.log(f(lo))) ** 2 / 12
        sig2 = (f(d.sigma_lo) ** 2 + f(d.sigma_lo) * f(d.sigma_hi) + f(d.sigma_hi) ** 2) / 3
        lmk = (lg(d.s0_lo, d.s0_hi) - lg(d.strike_lo, d.strike_hi),
               jnp.maximum(jnp.sqrt(lv(d.s0_lo, d.s0_hi)
                                    + lv(d.strike_lo, d.strike_hi)
                                    + sig2 * big_t / 2), 0.01))
        zero, one = f(0.0), f(1.0)
        # order of nets.FEATURE_NAMES: log_mk, norm, tau, elapsed, r, mu, sigma, eps, position
        pairs = [lmk, (zero, one), tau, elapsed, (zero, one), mu, sig, eps, (zero, one)]
        assert len(pairs) == nets.N_FEATURES
        return jnp.stack([p[0] for p in pairs]), jnp.stack([p[1] for p in pairs])

    def _baseline(self, state, params, obs, t):
        """``b(s_t) = -(1 - t/N) C_BS(S_t, K, tau, r; sigma_obs) + net(s_t)`` (strike units).

        The BS term is a control variate: ``E[G_t] = -(1 - t/N) E[Pi_t] - penalties`` and
        ``E[Pi_t]`` is close to the BS value for any reasonable hedge, so the baseline is
        right to O(penalty) from the first iteration (deep ITM included, where the returns
        are largest), and the network only learns the residual.
        """
        prior = -(1.0 - t / self.n_steps) * price_at_vol(obs, obs.vol, self.is_call)
        net = nets.apply(state.baseline_graphdef, params,
                         latent_vol.features(obs, self.ignored_inputs))
        return prior + net[..., 0]

    # ------------------------------------------------------------------ protocol
    def init(self, key, hparams: AdaptiveQLBSHParams) -> AdaptiveQLBSState:
        (pg, pp), (bg, bp) = self._networks(key)
        params = {"policy": pp, "baseline": bp}
        return AdaptiveQLBSState(policy_graphdef=pg, baseline_graphdef=bg, params=params,
                                 opt_state=self._optimizer(hparams).init(params),
                                 step=jnp.zeros((), jnp.int32),
                                 feature_norm=(self.feature_norm(hparams)
                                               if self.standardize_features else None))

    @staticmethod
    def _dt(c: ContractBatch, hparams):
        """Each contract's date spacing (the batch's ``dt``; a hand-built batch without one
        takes the distribution's fixed ``dt``)."""
        return hparams.contracts.dt if c.dt is None else c.dt

    def _obs(self, spot, t, c: ContractBatch, hparams, position) -> Observation:
        """Observation in strike units (strike 1) at date t; contract fields broadcast."""
        dtype = spot.dtype
        dt = jnp.asarray(self._dt(c, hparams), dtype)
        b = lambda x: jnp.broadcast_to(jnp.asarray(x, dtype), spot.shape)
        return Observation(
            spot=spot, strike=b(1.0), time_to_maturity=b((self.n_steps - t) * dt),
            elapsed=b(t * dt), rate=b(hparams.contracts.rate), div_yield=b(0.0),
            drift=b(c.mu), vol=b(c.sigma), cost=b(c.cost), cost_multiplier=b(1.0),
            position=b(position))

    def episode(self, key, policy_params, state, hparams, contracts: ContractBatch, *,
                sample_actions=True, rao_blackwell=False):
        """The training episode in strike units. Returns a dict of ``(n_envs, N)`` arrays:
        ``spot`` (S_t/K), ``position`` (u_{t-1}), ``vol`` (action), ``hedge`` (u_t),
        ``reward`` (r_t); ``sample_actions=False`` takes the policy mean on the main path
        too (evaluation: then ``sum_t gamma^t r_t`` estimates V_0 of the mean policy);
        ``rao_blackwell=True`` computes the rewards' mean terms with conditional-mean hedge
        gains (same expectation, see :func:`portfolio_values`; the pathwise loss).
        """
        n, rs = self.n_steps, self.n_continuations
        policy = self._policy(state, policy_params)
        dtype = jnp.result_type(float)
        # one date spacing per env (contracts of different lives)
        dt = jnp.broadcast_to(jnp.asarray(self._dt(contracts, hparams), dtype), (self.n_envs,))
        gamma = jnp.exp(-jnp.asarray(hparams.contracts.rate, dtype) * dt)
        c = contracts
        growth = jnp.exp(c.mu * dt) if rao_blackwell else None
        k_path, k_act, k_cont = jax.random.split(key, 3)
        path_keys = jax.random.split(k_path, self.n_envs)
        sim_params = gbm.GBMParams(s0=c.s0 / c.strike, mu=c.mu, sigma=c.sigma)
        spots = jax.vmap(lambda k, p, h: gbm.simulate(k, p, 1, n, h).spot[0])(
            path_keys, sim_params, dt)                                       # (E, N+1)
        cb = jax.tree.map(lambda x: x[:, None], c)                           # (E, 1)
        s_idx = jnp.arange(n + 1)

        def continuations(k, s_t, t):
            """(E, RS, N+1): S^c_s = S_t for s <= t, a fresh GBM path from S_t after."""
            keys = jax.random.split(k, self.n_envs)
            p = gbm.GBMParams(s0=s_t, mu=c.mu, sigma=c.sigma)
            fresh = jax.vmap(lambda kk, pp, h: gbm.simulate(kk, pp, rs, n, h).spot)(keys, p, dt)
            return jnp.take(fresh, jnp.clip(s_idx - t, 0, n), axis=-1)

        def cont_hedges(cont, u_t, t):
            """(E, RS, N): u_t at s <= t, then the policy mean along the continuation."""

            def body(u_prev, s):
                def act(u_prev):
                    obs = self._obs(cont[..., s], s, cb, hparams, u_prev)
                    return policy(obs).astype(dtype)

                u = jax.lax.cond(s > t, act, lambda u: u, u_prev)
                return u, u

            u0 = jnp.broadcast_to(u_t[:, None], (self.n_envs, rs)).astype(dtype)
            _, us = jax.lax.scan(body, u0, jnp.arange(1, n))
            return jnp.concatenate([u0[None], us], axis=0).transpose(1, 2, 0)

        def step(u_prev, xs):
            t, k_a, k_c = xs
            obs = self._obs(spots[:, t], t, c, hparams, u_prev)
            mean, std = policy.dist(obs)
            if sample_actions:
                vol = mean + std * jax.random.normal(k_a, mean.shape, mean.dtype)
            else:
                vol = mean
            u_t = delta_at_vol(obs, vol, self.is_call).astype(dtype)
            cont = continuations(k_c, spots[:, t], t)
            hedges = cont_hedges(cont, u_t, t)
            r = step_reward(cont, hedges, 1.0, c.cost, gamma, t, hparams.risk_aversion, dt,
                            self.is_call, self.step_penalty_dt, growth)
            out = {"spot": spots[:, t], "position": u_prev, "vol": vol, "hedge": u_t,
                   "reward": r, "mean_vol": mean}
            return u_t, out

        xs = (jnp.arange(n), jax.random.split(k_act, n), jax.random.split(k_cont, n))
        _, out = jax.lax.scan(step, jnp.zeros((self.n_envs,), dtype), xs)
        return jax.tree.map(lambda a: jnp.moveaxis(a, 0, 1), out)

    def update(self, key, state: AdaptiveQLBSState, hparams: AdaptiveQLBSHParams):
        """One iteration (module docstring, steps 1-4). Jittable, scannable, no callbacks."""
        k_c, k_r = jax.random.split(key)
        contracts = hparams.contracts.sample(k_c, self.n_envs)
        pathwise = self.estimator == "pathwise"
        ep = self.episode(k_r, jax.lax.stop_gradient(state.params["policy"]), state, hparams,
                          contracts, sample_actions=not pathwise)
        ep = jax.lax.stop_gradient(ep)
        dtype = ep["reward"].dtype
        dt = jnp.asarray(self._dt(contracts, hparams), dtype)               # (E,)
        gamma = jnp.exp(-jnp.asarray(hparams.contracts.rate, dtype) * dt)
        returns = discounted_returns(ep["reward"], gamma)                    # (E, N)
        t = jnp.arange(self.n_steps)
        cb = jax.tree.map(lambda x: x[:, None], contracts)
        obs = self._obs(ep["spot"], t[None, :], cb, hparams, ep["position"])

        def loss_fn(params):
            baseline = self._baseline(state, params["baseline"], obs, t[None, :])
            if pathwise:
                # METHODS §4.3's pathwise estimator: -V_0 of the MEAN policy, differentiated
                # through the main path and every continuation (the same key as ``ep``)
                ret = self.episode(k_r, params["policy"], state, hparams, contracts,
                                   sample_actions=False,
                                   rao_blackwell=self.rao_blackwell)["reward"]
                pol = -jnp.mean(discounted_returns(ret, gamma)[:, 0])
                val = jnp.mean((returns - baseline) ** 2)
            else:
                mean, std = self._policy(state, params["policy"]).dist(obs)
                log_probs = gaussian_log_prob(ep["vol"], mean, std)
                pol, val = reinforce_losses(log_probs, returns, baseline, gamma[:, None])
            return pol + val, (pol, val)

        (loss, (pol, val)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        opt_state = state.opt_state
        hyper = dict(opt_state.hyperparams)
        hyper["learning_rate"] = jnp.asarray(self._learning_rate(hparams, state.step),
                                             jnp.asarray(hyper["learning_rate"]).dtype)
        opt_state = opt_state._replace(hyperparams=hyper)
        updates, opt_state = self._optimizer(hparams).update(grads, opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        # price error of the t = 0 price head vs BS at the true sigma, in strike units
        sig_hat = ep["mean_vol"][:, 0]
        tau = self.n_steps * dt
        s0, rate = ep["spot"][:, 0], hparams.contracts.rate
        c_hat = bs_price(s0, 1.0, tau, rate, sig_hat, 0.0, self.is_call)
        c_bs = bs_price(s0, 1.0, tau, rate, contracts.sigma, 0.0, self.is_call)
        metrics = {
            "loss": loss,
            "policy_loss": pol,
            "baseline_loss": val,
            "mean_reward": jnp.mean(ep["reward"]),
            "mean_return0": jnp.mean(returns[:, 0]),
            "mean_vol_err0": jnp.mean(jnp.abs(sig_hat - contracts.sigma)),
            "price_mae0": jnp.mean(jnp.abs(c_hat - c_bs)),
            "grad_norm": optax.tree.norm(grads),
        }
        return state.replace(params=params, opt_state=opt_state, step=state.step + 1), metrics

    def _learning_rate(self, hparams, step):
        """``hparams.learning_rate``, times the cosine decay of :attr:`lr_decay_steps`."""
        lr = jnp.asarray(hparams.learning_rate)
        if self.lr_decay_steps == 0:
            return lr
        frac = jnp.minimum(step.astype(lr.dtype) / self.lr_decay_steps, 1.0)
        return lr * (0.1 + 0.45 * (1.0 + jnp.cos(jnp.pi * frac)))

    def hedger(self, state: AdaptiveQLBSState, hparams=None) -> LatentVolPolicy:
        """The trained policy (mean vol -> BS delta) as a hedger for ``rollout.rollout``."""
        del hparams
        return self._policy(state)

    def implied_vol(self, state: AdaptiveQLBSState, obs):
        """``sigma_hat(s)``: the policy-mean vol at ``obs`` (any batch shape)."""
        mean, _ = self._policy(state).dist(obs)
        return mean

    def evaluation_contract(self, hparams: AdaptiveQLBSHParams) -> Contract:
        """The :class:`~jaxhedge.contracts.Contract` at the centre of the training distribution
        (host-side), with no entry cost and the unwind charged: the METHODS §4.2 ledger this
        agent trains on."""
        return hparams.contracts.centre(self.n_steps, self.option, charge_entry=False,
                                        charge_unwind=True)

    def price(self, state: AdaptiveQLBSState, hparams, contract: Contract):
        """The price head ``C_BS(S0, K, T, r; sigma_hat(s_0))`` (= -V(s_0)) of ``contract`` at
        t = 0, in the contract's money units; its numeric leaves may be batched (the price has
        their broadcast shape).

        The policy reads the contract in strike units, as in training (spot ``S0/K``, strike 1,
        no position yet), and the BS price is homogeneous of degree 1 in ``(S, K)``, so the
        money price is ``K`` times the strike-unit one. ``hparams`` is not needed.
        """
        del hparams
        if contract.option != self.option:
            raise ValueError(f"contract.option: must be {self.option!r}, the option this agent "
                             f"hedges (got {contract.option!r})")
        dtype = jnp.result_type(float)
        leaves = (contract.s0, contract.strike, contract.maturity, contract.rate,
                  contract.div_yield, contract.mu, contract.sigma, contract.cost)
        s0, strike, tau, rate, q, mu, sigma, cost = jnp.broadcast_arrays(
            *(jnp.asarray(x, dtype) for x in leaves))
        zero = jnp.zeros_like(s0)
        obs = Observation(spot=s0 / strike, strike=zero + 1.0, time_to_maturity=tau,
                          elapsed=zero, rate=rate, div_yield=q, drift=mu, vol=sigma, cost=cost,
                          cost_multiplier=zero + 1.0, position=zero)
        return strike * price_at_vol(obs, self.implied_vol(state, obs), self.is_call)

    def mc_value(self, key, state: AdaptiveQLBSState, hparams, contracts: ContractBatch):
        """Monte-Carlo ``-V_0`` (money units) of the trained MEAN policy, per contract.

        ``-sum_t gamma^t r_t`` on one main path per env with mean-vol actions, rewards from
        RS continuations as in training; ``contracts`` fields shaped ``(n_envs,)``
        (:func:`contract_batch` builds explicit ones). This is
        the value of Definition 1 (Proposition 1: non-decreasing in lambda), not the price
        head.
        """
        ep = self.episode(key, state.params["policy"], state, hparams, contracts,
                          sample_actions=False)
        dtype = ep["reward"].dtype
        gamma = jnp.exp(-jnp.asarray(hparams.contracts.rate, dtype)
                        * jnp.asarray(self._dt(contracts, hparams), dtype))
        g0 = discounted_returns(ep["reward"], gamma)[:, 0]
        return -g0 * contracts.strike


def contract_batch(*, s0, strike, mu, sigma, cost) -> ContractBatch:
    """An explicit :class:`~jaxhedge.contracts.ContractBatch` (e.g. for
    :meth:`AdaptiveQLBS.mc_value`): the arrays broadcast to one shape, default float dtype.

    >>> contract_batch(s0=1.0, strike=1.0, mu=0.0, sigma=[0.2, 0.3], cost=0.0).s0.shape
    (2,)
    """
    dtype = jnp.result_type(float)
    s0, strike, mu, sigma, cost = jnp.broadcast_arrays(
        *(jnp.asarray(x, dtype) for x in (s0, strike, mu, sigma, cost)))
    return ContractBatch(s0=s0, strike=strike, mu=mu, sigma=sigma, cost=cost)
