r"""RLOP: forward replication with stacked expiries (METHODS §4.3; arXiv 2601.01709 Def. 2,
arXiv 2205.05600).

One training episode = one GBM path per environment, ``n_envs`` environments, each with its
own contract drawn from ``hparams.contracts`` (a :class:`jaxhedge.contracts.ContractDistribution`;
default :data:`PAPER_CONTRACTS`: ``mu ~ N(0, 4)``, ``sigma ~ U(0.01, 2.01)``,
``S0 ~ U(0.3, 1.7)``, ``K = 1``, cost ``eps ~ U(0, 0.01)``); fresh paths every update.
Presets are TOML files, ``experiments/rlop/<preset>.toml`` (sections ``[agent]``,
``[hparams]``, ``[hparams.contracts]``, ``[train]``; :class:`jaxhedge.train.jobs.RLOPJob`).

**Stacked expiries.** Along the path S_0..S_N the agent runs N portfolios at once, one per
expiry i = 1..N, held as an ``(n_envs, N)`` array (column i-1 is expiry i). Portfolio i starts
from the price estimator's value ``Pi_0^(i) = C_hat(S_0, K, i dt)`` and at date t < i holds
``u_t^(i)`` chosen from an observation whose remaining time is ITS OWN ``(i - t) dt``
(the published reference code pairs the portfolios with reversed remaining times; we do
not). It evolves

    Pi_{t+1} = e^{r dt}(Pi_t - u_t S_t) + u_t S_{t+1} - TC(u_{t+1} - u_t, S_{t+1}),

computed by :mod:`jaxhedge.ledger` (a batched ``LedgerState``, proportional eps per env),
``u_i^(i) := 0`` (the position is unwound at expiry; its cost is charged when
``charge_unwind``, the papers' training convention) and, as in the formula, no cost on the
entry trade unless ``charge_entry``. After its expiry a column is frozen (masked), so at the
end of the scan column i-1 holds ``Pi_i^(i)``. The time loop is one ``lax.scan`` over t; the
expiries are an array axis (:func:`stacked_replication`).

**Rewards.** Portfolio i is settled at i with ``H(h(S_i), Pi_i^(i))``, zero before; with the
signed error ``x = h - Pi`` (shortfall when positive) the objectives are

* ``"abs"``: ``-|x|`` and ``"squared"``: ``-x^2`` (the papers' H),
* ``"shortfall"``: ``-max(0, x)^p`` (:func:`risk.shortfall`),
* ``"shortfall_prob"``: ``-sigmoid(k x)`` (:func:`risk.smooth_shortfall_probability` with
  temperature 1/k), k annealed geometrically from ``k_start`` to ``k_end`` over
  ``anneal_steps`` updates (k in 1/money units: S0 ~ 1 here),
* ``"cvar"``: CVaR_alpha of the shortfall in the Rockafellar--Uryasev form
  ``w + (SF - w)^+ / alpha`` (:func:`risk.cvar_rockafellar_uryasev`, per sample) with a
  learned threshold ``w`` (its mean over samples is the CVaR objective).
  The project additions (METHODS §4.3); the paper preset uses ``"squared"``.

**Price estimator.** ``C_hat = price_at_vol(obs_0, vol_hat)``: a BS price at the MEAN latent
vol of a separate small :class:`nets.GaussianVolHead`. It is trained by regression toward
``stop_gradient(C_hat) + (h(S_i) - Pi_i^(i))``, i.e. to the fixed point where the mean signed
terminal error is zero (the policy's objective sees the premium detached).

**Policy.** The latent-vol Gaussian policy of :mod:`jaxhedge.agents.latent_vol`.

* ``estimator="reinforce"`` (the paper): vol ~ N(mu_pi, sigma_pi), hedge = BS delta at vol.
  Each (date t, expiry i) pair with t < i is one sample; its return is the discounted
  terminal reward of its own portfolio, ``G_t^(i) = gamma^(i-1-t) H_i``
  (:func:`discounted_returns`), and a learned baseline ``b(s)`` (an MLP on the same
  features) gives the advantage. Returns, baselines and advantages are PER-SAMPLE vectors
  of the same shape (:func:`per_sample_advantage` refuses to broadcast; the published code
  broadcast an (n, 1) baseline against (n,) returns into an n x n matrix).
* ``estimator="pathwise"`` (project addition): the hedge is the delta at the policy MEAN (no
  sampling) and the gradient of ``-mean H`` flows through the simulated ledger to the
  network (the path does not depend on the parameters).

Deviations / choices (documented):
* ``GaussianVolHead`` bounds the latent vol to ``(vol_min, vol_max)`` (default (0.01, 3.0),
  so that sigma up to 2.01 of the paper's distribution is reachable).
* The REINFORCE value loss is averaged over the active (t, i) pairs only.
* ``dt`` of the paper preset is 1/52 (weekly dates, four of them); the papers' text does
  not fix it beyond N = 4, so it is an hparam.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax
from flax import nnx, struct

from jaxhedge import ledger, nets, risk
from jaxhedge.agents import latent_vol
from jaxhedge.agents.latent_vol import (LatentVolPolicy, delta_at_vol, discounted_returns,
                                        price_at_vol, reinforce_losses, start_observation)
from jaxhedge.contracts import Contract, ContractBatch, ContractDistribution
from jaxhedge.env import Observation
from jaxhedge.markets import gbm

__all__ = [
    "OBJECTIVES",
    "ESTIMATORS",
    "RLOP",
    "RLOPHParams",
    "RLOPState",
    "Replication",
    "PAPER_CONTRACTS",
    "stacked_replication",
    "per_sample_advantage",
    "terminal_reward",
]

OBJECTIVES = ("abs", "squared", "shortfall", "shortfall_prob", "cvar")
ESTIMATORS = ("reinforce", "pathwise")


# ---------------------------------------------------------------------------- hparams / state
# The papers' training distribution: mu ~ N(0, 2^2), sigma ~ U(0.01, 2.01), S0 ~ U(0.3, 1.7),
# K = 1, eps ~ U(0, 0.01), r = 0, weekly dates (dt = 1/52, our choice: the papers fix N = 4 only).
PAPER_CONTRACTS = ContractDistribution(dt=1.0 / 52, rate=0.0, mu_mean=0.0, mu_std=2.0,
                                       sigma_lo=0.01, sigma_hi=2.01, s0_lo=0.3, s0_hi=1.7,
                                       strike_lo=1.0, strike_hi=1.0, cost_lo=0.0, cost_hi=0.01)


@struct.dataclass
class RLOPHParams:
    """Dynamic (vmappable) hyperparameters: learning rates and the training distribution.

    ``contracts`` (:class:`jaxhedge.contracts.ContractDistribution`): each environment's
    contract (s0, strike, mu, sigma, cost) is drawn from it every update; its ``dt`` and
    ``rate`` are the dates' spacing and the risk-free rate. Default: the papers'.
    """

    lr_policy: float = 1e-3
    lr_price: float = 1e-3
    contracts: ContractDistribution = PAPER_CONTRACTS


@struct.dataclass
class RLOPState:
    """Agent state: the three networks' params, the CVaR threshold, two Adam states, step."""

    policy_def: Any = struct.field(pytree_node=False)
    price_def: Any = struct.field(pytree_node=False)
    baseline_def: Any = struct.field(pytree_node=False)
    policy: Any
    price: Any
    baseline: Any
    threshold: jax.Array
    opt_policy: Any
    opt_price: Any
    step: jax.Array


@struct.dataclass
class Replication:
    """Outcome of :func:`stacked_replication`; ``n`` envs, ``N`` expiries (column i-1 = expiry i).

    Attributes:
      terminal: (n, N) Pi_i^(i), each portfolio's value at its own expiry.
      payoff: (n, N) h(S_i).
      hedges: (N_t, n, N) u_t^(i) (zero for t >= i).
      tau: (N_t, n, N) the remaining time each hedge was chosen with ((i - t) dt when active).
      active: (N_t, N) bool, t < i.
      aux: whatever the hedge function returned beside the hedge, stacked (N_t, n, N).
      cost: (n, N) total transaction cost of each portfolio.
    """

    terminal: jax.Array
    payoff: jax.Array
    hedges: jax.Array
    tau: jax.Array
    active: jax.Array
    aux: Any
    cost: jax.Array


# ---------------------------------------------------------------------------- pure pieces
#: up to this many dates, and from this many (env, date, expiry) cells on,
#: :func:`stacked_replication` unrolls its date loop and feeds the hedge function only the
#: live expiries of each date (see there). Below the cell count the unrolled program's
#: extra compile time (~2 s on 2 CPU cores) outweighs what the dead cells cost.
LIVE_CELLS_MAX_DATES = 8
LIVE_CELLS_MIN_CELLS = 8192


def live_cells_default(n_envs: int, n_steps: int) -> bool:
    """Whether :func:`stacked_replication` evaluates live cells only by default."""
    return (n_steps <= LIVE_CELLS_MAX_DATES
            and n_envs * n_steps * n_steps >= LIVE_CELLS_MIN_CELLS)


def stacked_replication(spots, premiums, strike, rate, dt, costs: ledger.CostModel,
                        hedge_fn: Callable, keys=None, *, drift=0.0, vol=0.2,
                        is_call=True, charge_entry=False, charge_unwind=True,
                        live_only: bool | None = None) -> Replication:
    """All expiries' portfolios along ``spots`` (n, N+1), one step per date.

    ``premiums`` (n, N): Pi_0^(i). ``strike``, ``drift``, ``vol``, ``dt``, ``costs`` fields
    broadcast against (n,) (one per env). ``hedge_fn(key_t, obs) -> (u, aux)`` maps an
    :class:`Observation` with fields (n, N) (expiry i in column i-1, remaining time
    ``(i - t) dt``, previous position ``u_{t-1}^(i)``) to hedges (n, N) and any aux pytree;
    ``keys`` (N,) one per date (or None). Inactive columns (t >= i) get hedge 0, and a
    placeholder remaining time ``dt`` so no NaN is produced there (their position is the
    closed-out 0).

    The portfolios are one batched :class:`jaxhedge.ledger.LedgerState` (n, N): at each date
    ``ledger.trade`` (the entry trade at t = 0 charged only if ``charge_entry``), then
    ``ledger.accrue``, then ``ledger.close_out`` on the column whose expiry is t + 1
    (charged if ``charge_unwind``); ``ledger.where(active, ...)`` freezes a column after its
    expiry. Column i-1 is exactly ``ledger.replay`` of the tape ``u_0^(i)..u_{i-1}^(i)`` on
    ``S_0..S_i`` (tested).

    ``live_only`` (None: ``N <= LIVE_CELLS_MAX_DATES`` and ``n N^2 >=
    LIVE_CELLS_MIN_CELLS``): the date loop is unrolled at trace
    time and date t calls ``hedge_fn`` on the live columns t..N-1 only, (n, N-t) instead of
    (n, N); hedges and aux are zero-padded back to (n, N). Why: a ``lax.scan`` needs one
    shape for every date, so it evaluates the network on all n N^2 cells of the triangle,
    of which n N (N+1)/2 are live (16 k for 10 k at the paper's N = 4), forward and
    backward. Same numbers either way (tested); the scan is kept for long horizons, where
    unrolling would grow the program with N.

    Shapes (n = 3 envs, N = 4 expiries; a flat path and no costs keep each premium):

    >>> rep = stacked_replication(jnp.ones((3, 5)), jnp.full((3, 4), 0.05), 1.0, 0.0, 0.25,
    ...                           ledger.CostModel(), lambda k, o: (0.5 + 0 * o.spot, ()))
    >>> rep.terminal.shape, rep.payoff.shape, rep.hedges.shape, rep.active.shape
    ((3, 4), (3, 4), (4, 3, 4), (4, 4))
    >>> round(float(rep.terminal[0, 3]), 6)
    0.05
    """
    spots = jnp.asarray(spots)
    n, n_dates = spots.shape
    big_n = n_dates - 1
    dtype = spots.dtype
    cast = lambda x: jnp.asarray(x, dtype)
    rate = cast(rate)
    col = lambda x: jnp.broadcast_to(cast(x), (n,))[:, None]  # (n, 1)
    strike_c, drift_c, vol_c = col(strike), col(drift), col(vol)
    dt = col(dt)  # one date spacing per env (contracts of different lives)
    costs = jax.tree.map(col, costs)
    params = ledger.LedgerParams(costs=costs, rate=rate, div_yield=jnp.zeros((), dtype), dt=dt,
                                 charge_entry=charge_entry, charge_unwind=charge_unwind)
    expiry = jnp.arange(1, big_n + 1)  # (N,)
    if keys is None:
        keys = jax.random.split(jax.random.key(0), big_n)

    def body(account: ledger.LedgerState, xs, first: int = 0):
        # ``first``: static index of the first column handed to hedge_fn (live_only)
        t, key, s_now, s_next = xs
        s_now, s_next = s_now[:, None], s_next[:, None]
        active = expiry > t  # (N,)
        tau = jnp.where(active, (expiry - t) * dt, dt).astype(dtype)  # (n, N)
        width = big_n - first
        cols = lambda x: jnp.broadcast_to(x, (n, big_n))[:, first:]  # noqa: E731
        obs = Observation(
            spot=cols(s_now), strike=cols(strike_c), time_to_maturity=cols(tau),
            elapsed=jnp.broadcast_to(t * dt, (n, width)).astype(dtype),
            rate=jnp.broadcast_to(rate, (n, width)),
            div_yield=jnp.zeros((n, width), dtype),
            drift=cols(drift_c), vol=cols(vol_c), cost=cols(costs.proportional),
            cost_multiplier=jnp.ones((n, width), dtype),
            position=account.shares[:, first:],
        )
        u, aux = hedge_fn(key, obs)
        if first:  # zero-pad the dead columns back to (n, N)
            pad = lambda a: jnp.pad(a, [(0, 0)] * (a.ndim - 1) + [(first, 0)])  # noqa: E731
            u, aux = pad(u), jax.tree.map(pad, aux)
        u = jnp.where(active, u.astype(dtype), 0.0)
        # trade at t (the entry trade at t = 0 pays costs only if charge_entry), let (t, t+1]
        # pass, and at its expiry i = t + 1 close the portfolio out (u_i^(i) := 0)
        moved = ledger.accrue(
            ledger.trade(account, u, s_now, params, charge=(t > 0) | charge_entry),
            s_next, params)
        moved = ledger.where(expiry == t + 1, ledger.close_out(moved, s_next, params), moved)
        account = ledger.where(active, moved, account)  # frozen after its expiry
        return account, (u, jnp.broadcast_to(tau, (n, big_n)), aux)

    account = ledger.open_account(cast(premiums) * jnp.ones((n, big_n), dtype))
    xs = (jnp.arange(big_n), keys, spots[:, :-1].T, spots[:, 1:].T)
    if live_only is None:
        live_only = live_cells_default(n, big_n)
    if live_only:
        outs = []
        for t in range(big_n):  # trace-time unroll: date t sees columns t..N-1
            account, out = body(account, jax.tree.map(lambda a: a[t], xs), first=t)
            outs.append(out)
        hedges, taus, aux = jax.tree.map(lambda *a: jnp.stack(a), *outs)
    else:
        account, (hedges, taus, aux) = jax.lax.scan(body, account, xs)
    payoff = ledger.payoff(spots[:, 1:], strike_c, is_call)
    active = expiry[None, :] > jnp.arange(big_n)[:, None]
    # every column is closed out by the end: its cash is Pi_i^(i)
    return Replication(terminal=account.cash, payoff=payoff, hedges=hedges, tau=taus,
                       active=active, aux=aux, cost=account.cost)


def per_sample_advantage(returns, baseline):
    """``returns - baseline`` as a per-sample vector of ``returns``' shape.

    ``baseline`` may carry trailing singleton axes (a network's (n, 1) output); it is
    reshaped, never broadcast against another sample axis (the published code's (n,1) - (n,)
    gave an n x n matrix). Raises ValueError when the sizes differ.
    """
    returns = jnp.asarray(returns)
    baseline = jnp.asarray(baseline)
    if baseline.size != returns.size:
        raise ValueError(f"per_sample_advantage: baseline {baseline.shape} vs returns "
                         f"{returns.shape}: one baseline per sample is required")
    return returns - baseline.reshape(returns.shape)


def terminal_reward(objective: str, payoff, terminal, *, k=1.0, power=2.0, alpha=0.05,
                    threshold=0.0):
    """Per-sample reward H(h, Pi) of ``objective`` (see the module docstring), shape of Pi."""
    pnl = terminal - payoff  # Pi - h: the hedger's P&L, negative = shortfall
    if objective == "abs":
        return -jnp.abs(pnl)
    if objective == "squared":
        return -pnl * pnl
    if objective == "shortfall":
        return -risk.shortfall(pnl) ** power
    if objective == "shortfall_prob":
        return -risk.smooth_shortfall_probability(pnl[..., None], 1.0 / k)
    if objective == "cvar":
        # RU per sample with L = SF: w + (SF - w)^+/alpha; mean over samples = RU objective
        return -risk.cvar_rockafellar_uryasev(-risk.shortfall(pnl)[..., None], threshold, alpha)
    raise ValueError(f"rlop.objective: unknown {objective!r}")


# ---------------------------------------------------------------------------- the agent
@dataclasses.dataclass(frozen=True)
class RLOP:
    """RLOP agent (static configuration; see the module docstring).

    Attributes:
      n_envs: environments (one path each) per update.
      n_steps: N, dates per path = number of stacked expiries.
      objective: one of :data:`OBJECTIVES`.
      estimator: "reinforce" (paper) or "pathwise".
      width / n_blocks / layers_per_block: the policy's residual network.
      price_width / price_blocks: the price estimator's (smaller) residual network.
      baseline_widths: the REINFORCE baseline MLP.
      vol_min / vol_max: latent-vol bounds of both heads.
      option: "call" or "put".
      power: p of the "shortfall" objective.
      cvar_alpha: tail probability of the "cvar" objective.
      k_start / k_end / anneal_steps: sharpness schedule of "shortfall_prob" (1/money units).
      charge_entry / charge_unwind: ledger flags (METHODS §2; paper training: unwind only).
      init_vol / init_std: where the policy's and the price head's latent vol (and the
        policy's std) start (see :meth:`_start_head_at`).
      ignored_inputs: feature names (:data:`nets.FEATURE_NAMES`) every network reads as 0
        (for inputs held at 0 in training: :mod:`jaxhedge.agents.latent_vol`; why:
        docs/rlop.md, "Study preset").
      lr_decay_steps: 0 keeps both learning rates constant; ``k > 0`` multiplies them by a
        cosine from 1 down to 0.1 over updates ``0..k`` (then 0.1).
      anchor_ratio: 0 keeps the papers' latent-vol map for both heads; ``r > 1`` makes them
        anchored (:class:`nets.GaussianVolHead`: the contract's vol times ``r^tanh(z)``;
        why: docs/rlop.md, "Study preset").
    """

    n_envs: int = 1000
    n_steps: int = 4
    objective: str = "squared"
    estimator: str = "reinforce"
    width: int = 64
    n_blocks: int = 2
    layers_per_block: int = 2
    price_width: int = 32
    price_blocks: int = 1
    baseline_widths: tuple[int, ...] = (32, 32)
    vol_min: float = 0.01
    vol_max: float = 3.0
    option: str = "call"
    power: float = 2.0
    cvar_alpha: float = 0.1
    k_start: float = 10.0
    k_end: float = 200.0
    anneal_steps: int = 500
    charge_entry: bool = False
    charge_unwind: bool = True
    init_vol: float = 0.25
    init_std: float = 0.1
    ignored_inputs: tuple[str, ...] = ()
    # own range: the config loader's rule for ``lr_*`` names is a rate's (0, 10]
    lr_decay_steps: int = dataclasses.field(default=0, metadata={"range": (0, None)})
    anchor_ratio: float = 0.0
    name: str = "rlop"

    def __post_init__(self):
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective: must be one of {OBJECTIVES} (got {self.objective!r})")
        if self.estimator not in ESTIMATORS:
            raise ValueError(f"estimator: must be one of {ESTIMATORS} (got {self.estimator!r})")
        if self.option not in ("call", "put"):
            raise ValueError(f"option: must be 'call' or 'put' (got {self.option!r})")
        if not isinstance(self.lr_decay_steps, int) or self.lr_decay_steps < 0:
            raise ValueError("lr_decay_steps: must be an integer >= 0 "
                             f"(got {self.lr_decay_steps!r})")
        for name in ("n_envs", "n_steps", "width", "n_blocks", "layers_per_block",
                     "price_width", "anneal_steps"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name}: must be >= 1 (got {getattr(self, name)!r})")
        if not 0.0 < self.cvar_alpha <= 1.0:
            raise ValueError(f"cvar_alpha: must be in (0, 1] (got {self.cvar_alpha!r})")
        if not self.vol_min < self.init_vol < self.vol_max:
            raise ValueError(f"init_vol: must be in (vol_min, vol_max) (got {self.init_vol!r})")
        if not 0.01 < self.init_std < 0.91:
            raise ValueError(f"init_std: must be in (0.01, 0.91) (got {self.init_std!r})")
        if self.k_start <= 0 or self.k_end <= 0:
            raise ValueError("k_start: k_start and k_end must be > 0")
        object.__setattr__(self, "baseline_widths", tuple(int(w) for w in self.baseline_widths))
        object.__setattr__(self, "ignored_inputs",
                           latent_vol.check_ignored(self.ignored_inputs, "rlop"))
        object.__setattr__(self, "anchor_ratio", latent_vol.check_anchor(
            self.anchor_ratio, self.ignored_inputs, "rlop"))

    @property
    def is_call(self) -> bool:
        return self.option == "call"

    def default_hparams(self) -> RLOPHParams:
        return RLOPHParams()

    # ------------------------------------------------------------------ networks
    def _networks(self, key):
        k1, k2, k3 = jax.random.split(key, 3)
        policy = nets.GaussianVolHead(nets.N_FEATURES, self.width, self.n_blocks,
                                      self.layers_per_block, vol_min=self.vol_min,
                                      vol_max=self.vol_max, anchor_ratio=self.anchor_ratio,
                                      rngs=nnx.Rngs(params=k1))
        price = nets.GaussianVolHead(nets.N_FEATURES, self.price_width, self.price_blocks, 1,
                                     vol_min=self.vol_min, vol_max=self.vol_max,
                                     anchor_ratio=self.anchor_ratio, rngs=nnx.Rngs(params=k2))
        baseline = nets.MLP(nets.N_FEATURES, 1, self.baseline_widths, rngs=nnx.Rngs(params=k3))
        for head in (policy, price):
            self._start_head_at(head)
        return nets.split(policy), nets.split(price), nets.split(baseline)

    def _start_head_at(self, head: nets.GaussianVolHead):
        """Start a latent-vol head near ``init_vol`` / ``init_std`` everywhere.

        Why: the BS delta of an in-the-money call is NOT monotone in the latent vol (d1 =
        log(S/K)/(v sqrt(tau)) + v sqrt(tau)/2 is smallest at v* = sqrt(2 log(S/K)/tau)), so
        from the head's default start at the middle of (vol_min, vol_max) (1.5 for
        vol_max = 3) the gradient drives ITM latent vols UP into the vol_max saturation, a
        local optimum with hedges well below delta (docs/rlop.md). Starting low (below v* for the
        typical contract) puts the policy on the branch that contains the market vol. The
        head's output weights are shrunk (x0.1) so the start is nearly constant; the biases
        are the logits of the start values under the head's own maps.
        """
        frac = (self.init_vol - head.vol_min) / (head.vol_max - head.vol_min)
        frac_std = (self.init_std - 0.01) / 0.9
        lin = head.trunk.head
        lin.kernel[...] = 0.1 * lin.kernel[...]
        lin.bias[...] = jnp.asarray(
            [math.log(frac / (1 - frac)), math.log(frac_std / (1 - frac_std))],
            lin.bias[...].dtype)
        # an anchored head starts at ratio 1 instead (init_vol unused): the contract's own
        # vol, on the market vol's branch by construction
        if head.anchor_ratio:
            head.start_at_anchor()

    @staticmethod
    def _adam(lr):
        return optax.inject_hyperparams(optax.adam)(learning_rate=lr)

    def _policy(self, state: RLOPState, params=None) -> LatentVolPolicy:
        return LatentVolPolicy(graphdef=state.policy_def,
                               params=state.policy if params is None else params,
                               is_call=self.is_call, ignored=self.ignored_inputs)

    def _price_vol(self, price_def, price_params, obs):
        mean, _ = nets.apply(price_def, price_params,
                             latent_vol.features(obs, self.ignored_inputs), anchor=obs.vol)
        return mean

    def temperature_k(self, step):
        """Sharpness k of "shortfall_prob" at update ``step`` (geometric annealing)."""
        frac = jnp.clip(jnp.asarray(step, jnp.float32) / self.anneal_steps, 0.0, 1.0)
        return self.k_start * (self.k_end / self.k_start) ** frac

    # ------------------------------------------------------------------ simulation
    def simulate_paths(self, key, batch: ContractBatch, dt):
        """(n, N+1) GBM paths, one per env with its own (s0, mu, sigma) and date spacing
        ``dt`` (a scalar or one per env) (markets.gbm)."""
        n = batch.s0.shape[0]
        keys = jax.random.split(key, n)
        dt = jnp.broadcast_to(jnp.asarray(dt, jnp.result_type(batch.s0)), (n,))
        one = lambda k, s0, mu, sig, h: gbm.simulate(
            k, gbm.GBMParams(s0=s0, mu=mu, sigma=sig), 1, self.n_steps, h).spot[0]
        return jax.vmap(one)(keys, batch.s0, batch.mu, batch.sigma, dt)

    @staticmethod
    def batch_dt(batch: ContractBatch, hparams):
        """Each env's date spacing: the batch's ``dt``, else the distribution's fixed one."""
        return hparams.contracts.dt if batch.dt is None else batch.dt

    def premiums(self, price_def, price_params, batch: ContractBatch, hparams, dtype):
        """(n, N) C_hat(S_0, K, i dt) for i = 1..N."""
        obs = self._start_obs(batch, hparams, dtype)
        return price_at_vol(obs, self._price_vol(price_def, price_params, obs), self.is_call)

    def _start_obs(self, batch: ContractBatch, hparams, dtype) -> Observation:
        """(n, N) observations at t = 0 for every expiry i dt, i = 1..N."""
        n, big_n = batch.s0.shape[0], self.n_steps
        shape = (n, big_n)
        dt = jnp.broadcast_to(jnp.asarray(self.batch_dt(batch, hparams), dtype), (n,))
        tau = jnp.arange(1, big_n + 1, dtype=dtype)[None, :] * dt[:, None]
        b = lambda x: jnp.broadcast_to(jnp.asarray(x, dtype)[..., None] if jnp.ndim(x) else
                                       jnp.asarray(x, dtype), shape)
        obs = Observation(spot=b(batch.s0), strike=b(batch.strike),
                          time_to_maturity=jnp.broadcast_to(tau, shape),
                          elapsed=jnp.zeros(shape, dtype), rate=b(hparams.contracts.rate),
                          div_yield=jnp.zeros(shape, dtype), drift=b(batch.mu),
                          vol=b(batch.sigma), cost=b(batch.cost),
                          cost_multiplier=jnp.ones(shape, dtype),
                          position=jnp.zeros(shape, dtype))
        return obs

    def replicate(self, key, state: RLOPState, hparams, policy_params, premiums, paths,
                  batch: ContractBatch, mode: str) -> Replication:
        """Stacked replication with the policy: ``mode`` "sample" (REINFORCE) or "mean"."""
        policy = self._policy(state, policy_params)

        def hedge_fn(k, obs):
            if mode == "mean":
                mean, _ = policy.dist(obs)
                return delta_at_vol(obs, mean, self.is_call), ()
            # the noise of all N columns, then the live ones (stacked_replication's
            # live_only hands date t columns t..N-1): the same draws with or without it
            mean, std = policy.dist(obs)
            noise = jax.random.normal(k, mean.shape[:-1] + (self.n_steps,), mean.dtype)
            vol, logp = latent_vol.score_sample(mean, std,
                                                noise[..., self.n_steps - mean.shape[-1]:])
            b = nets.apply(state.baseline_def, state.baseline,
                           latent_vol.features(obs, self.ignored_inputs))[..., 0]
            return delta_at_vol(obs, vol, self.is_call), (logp, b)

        keys = jax.random.split(key, self.n_steps)
        return stacked_replication(
            paths, premiums, batch.strike, hparams.contracts.rate, self.batch_dt(batch, hparams),
            ledger.CostModel(proportional=batch.cost), hedge_fn, keys, drift=batch.mu,
            vol=batch.sigma, is_call=self.is_call, charge_entry=self.charge_entry,
            charge_unwind=self.charge_unwind)

    # ------------------------------------------------------------------ protocol
    def init(self, key, hparams: RLOPHParams) -> RLOPState:
        (pdef, pparams), (cdef, cparams), (bdef, bparams) = self._networks(key)
        dtype = jnp.result_type(float)
        threshold = jnp.zeros((), dtype)
        return RLOPState(
            policy_def=pdef, price_def=cdef, baseline_def=bdef, policy=pparams,
            price=cparams, baseline=bparams, threshold=threshold,
            opt_policy=self._adam(hparams.lr_policy).init((pparams, bparams, threshold)),
            opt_price=self._adam(hparams.lr_price).init(cparams),
            step=jnp.zeros((), jnp.int32))

    def _rewards(self, rep: Replication, state, threshold):
        return terminal_reward(self.objective, rep.payoff, rep.terminal,
                               k=self.temperature_k(state.step), power=self.power,
                               alpha=self.cvar_alpha, threshold=threshold)

    def losses(self, key, state: RLOPState, hparams, trainable=None):
        """(policy loss, (price loss, metrics)) of one batch; ``trainable`` = (policy, baseline,
        threshold, price) params (default: the state's)."""
        if trainable is None:
            trainable = (state.policy, state.baseline, state.threshold, state.price)
        pparams, bparams, threshold, cparams = trainable
        k_mkt, k_path, k_act = jax.random.split(key, 3)
        batch = hparams.contracts.sample(k_mkt, self.n_envs)
        paths = self.simulate_paths(k_path, batch, self.batch_dt(batch, hparams))
        dtype = paths.dtype
        prem = self.premiums(state.price_def, cparams, batch, hparams, dtype)
        prem_sg = jax.lax.stop_gradient(prem)
        st = state.replace(baseline=bparams)
        mode = "mean" if self.estimator == "pathwise" else "sample"
        rep = self.replicate(k_act, st, hparams, pparams, prem_sg, paths, batch, mode)
        rewards = self._rewards(rep, state, threshold)  # (n, N)
        objective = -jnp.mean(rewards)

        if self.estimator == "pathwise":
            policy_loss = objective
            value_loss = jnp.zeros((), dtype)
        else:
            logp, base = rep.aux  # (N_t, n, N)
            big_n = self.n_steps
            dt = jnp.asarray(self.batch_dt(batch, hparams), dtype)
            gamma = jnp.exp(-jnp.asarray(hparams.contracts.rate, dtype) * dt)
            gamma = jnp.reshape(gamma, jnp.shape(gamma) + (1,))  # per env, against (n, N_i)
            # reward of portfolio i arrives after the action at t = i - 1
            onehot = jnp.eye(big_n, dtype=dtype)  # [i-1, t]
            per_t = jax.lax.stop_gradient(rewards)[:, :, None] * onehot[None]  # (n, N_i, N_t)
            returns = discounted_returns(per_t, gamma)  # (n, N_i, N_t)
            active = rep.active.T[None]  # (1, N_i, N_t)
            logp_it = jnp.transpose(logp, (1, 2, 0))  # (n, N_i, N_t)
            base_it = jnp.transpose(base, (1, 2, 0))
            returns = jnp.where(active, returns, jax.lax.stop_gradient(base_it))
            logp_it = jnp.where(active, logp_it, 0.0)
            flat = lambda a: a.reshape(-1)
            _ = per_sample_advantage(flat(returns), flat(base_it))  # shape check
            pol, value_loss = reinforce_losses(flat(logp_it), flat(returns), flat(base_it))
            frac = jnp.mean(jnp.broadcast_to(active, returns.shape).astype(dtype))
            policy_loss = pol / frac
            value_loss = value_loss / frac
            if self.objective == "cvar":  # the threshold's own (exact) gradient
                policy_loss = policy_loss + jnp.mean(-self._rewards(
                    rep.replace(terminal=jax.lax.stop_gradient(rep.terminal)), state,
                    threshold))
        # price: regression to C_sg + (h - Pi), fixed point mean signed error = 0
        err = jax.lax.stop_gradient(rep.payoff - rep.terminal)
        target = prem_sg + err
        price_loss = jnp.mean((prem - target) ** 2)
        metrics = {
            "loss": objective,
            "value_loss": value_loss,
            "price_loss": price_loss,
            "mean_error": jnp.mean(err),
            "rmse": jnp.sqrt(jnp.mean(err * err)),
            "shortfall_prob": jnp.mean((rep.terminal < rep.payoff).astype(dtype)),
            "mean_cost": jnp.mean(rep.cost),
            "threshold": threshold,
        }
        return policy_loss + value_loss + price_loss, metrics

    def update(self, key, state: RLOPState, hparams: RLOPHParams):
        """One iteration: n_envs fresh paths, stacked replication, one Adam step per group."""
        trainable = (state.policy, state.baseline, state.threshold, state.price)
        grads, metrics = jax.grad(
            lambda tr: self.losses(key, state, hparams, tr), has_aux=True)(trainable)
        g_pol = grads[:3]
        g_price = grads[3]

        def step(opt, lr, g, params):
            hyper = dict(opt.hyperparams)
            hyper["learning_rate"] = jnp.asarray(lr, jnp.asarray(hyper["learning_rate"]).dtype)
            opt = opt._replace(hyperparams=hyper)
            upd, opt = self._adam(lr).update(g, opt, params)
            return optax.apply_updates(params, upd), opt

        (pparams, bparams, threshold), opt_policy = step(
            state.opt_policy, self._decayed(hparams.lr_policy, state.step), g_pol,
            trainable[:3])
        cparams, opt_price = step(state.opt_price, self._decayed(hparams.lr_price, state.step),
                                  g_price, state.price)
        new_state = state.replace(policy=pparams, baseline=bparams, threshold=threshold,
                                  price=cparams, opt_policy=opt_policy, opt_price=opt_price,
                                  step=state.step + 1)
        return new_state, metrics

    def _decayed(self, lr, step):
        """``lr`` times the cosine decay of :attr:`lr_decay_steps` (``lr`` itself when 0)."""
        if self.lr_decay_steps == 0:
            return lr
        lr = jnp.asarray(lr)
        frac = jnp.minimum(step.astype(lr.dtype) / self.lr_decay_steps, 1.0)
        return lr * (0.1 + 0.45 * (1.0 + jnp.cos(jnp.pi * frac)))

    def evaluate(self, key, state: RLOPState, hparams, n_envs: int | None = None,
                 bs_premium: bool = False) -> dict:
        """Deterministic (mean-hedge) objective and errors on fresh episodes from ``key``.

        ``bs_premium``: start every portfolio from the BS price at the env's true sigma
        instead of the learned price (isolates the hedge's quality from the price's).
        """
        n = self.n_envs if n_envs is None else n_envs
        k_mkt, k_path = jax.random.split(key)
        batch = hparams.contracts.sample(k_mkt, n)
        paths = self.simulate_paths(k_path, batch, self.batch_dt(batch, hparams))
        if bs_premium:
            obs = self._start_obs(batch, hparams, paths.dtype)
            prem = price_at_vol(obs, obs.vol, self.is_call)
        else:
            prem = self.premiums(state.price_def, state.price, batch, hparams, paths.dtype)
        rep = self.replicate(key, state, hparams, state.policy, prem, paths, batch, "mean")
        rewards = self._rewards(rep, state, state.threshold)
        err = rep.payoff - rep.terminal
        return {"loss": -jnp.mean(rewards), "mse": jnp.mean(err * err),
                "mean_error": jnp.mean(err),
                "shortfall_prob": jnp.mean((err > 0).astype(err.dtype))}

    def hedger(self, state: RLOPState, hparams: RLOPHParams | None = None) -> LatentVolPolicy:
        """The policy's mean hedge as a pytree-callable hedger (works with rollout)."""
        del hparams
        return self._policy(state)

    def evaluation_contract(self, hparams: RLOPHParams) -> Contract:
        """The centre of the training distribution (host-side), for ``eval`` and run.json."""
        return hparams.contracts.centre(self.n_steps, self.option, self.charge_entry,
                                        self.charge_unwind)

    def price(self, state: RLOPState, hparams, contract: Contract):
        """Learned price of ``contract`` at t = 0: the BS price at the price estimator's latent
        vol (leaves of ``contract`` may be batched; the price has their shape)."""
        del hparams
        if contract.option != self.option:
            raise ValueError(f"contract.option: this RLOP prices {self.option!r} options "
                             f"(got {contract.option!r})")
        obs = start_observation(contract)
        return price_at_vol(obs, self._price_vol(state.price_def, state.price, obs),
                            self.is_call)
