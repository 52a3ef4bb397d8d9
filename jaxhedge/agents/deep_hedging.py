r"""Deep hedging (Buehler, Gonon, Teichmann, Wood 2019; METHODS §4.5).

A network maps the observation features (:func:`jaxhedge.nets.observation_features`) to the
hedge; training backpropagates a convex risk measure of the terminal P&L ``Pi_T`` through the
simulated market and the one ledger (:func:`jaxhedge.rollout.simulate_paths` then
:func:`jaxhedge.rollout.run_on_paths`, i.e. exactly what :func:`jaxhedge.rollout.rollout`
runs, so a key gives the same paths in training, pricing and evaluation; pathwise gradient,
the market path itself does not depend on the parameters). ``Pi_T``
includes the premium ``hparams.env.premium`` (the env's reference premium when the
:class:`EnvParams` come from ``HedgingEnv.default_params``).

Training market: the env's own market (``env.market`` with ``hparams.env.market``), or,
when ``DeepHedging.path_sampler`` is set, that sampler's paths around the contract of
``hparams.env`` (``path_sampler(key, contract, n_paths) -> MarketPaths``, a frozen hashable
object such as :class:`jaxhedge.markets.mixture.ScenarioMixture`: robust training on stress
scenarios; the premium stays the env's, the calm reference price).

Objectives (``DeepHedging.objective``), all from :mod:`jaxhedge.risk`:

* ``"entropic"``: ``rho(X) = (1/lambda) log E exp(-lambda X)``, :func:`risk.entropic_risk`
  (log-sum-exp stable), ``lambda = hparams.risk_aversion`` in 1/money units.
* ``"es"``: expected shortfall of the loss ``-Pi_T`` at tail probability ``hparams.alpha`` in
  the Rockafellar--Uryasev form ``w + E[(-X - w)^+]/alpha``
  (:func:`risk.cvar_rockafellar_uryasev`), minimised jointly over the network and the
  learned threshold ``w``.
* ``"oce"``: optimized certainty equivalent ``w + E[l(-X - w)]`` (:func:`risk.oce`) with the
  exponential loss ``l(u) = (exp(lambda u) - 1)/lambda`` (Buehler et al.'s OCE form of the
  entropic measure; its minimum over ``w`` is the entropic risk). The exponent is capped at
  ``lambda u <= 60`` so float32 never overflows.

The learned threshold is stored as ``w / s0`` (``s0 = hparams.env.market.s0``) so that one
Adam learning rate moves it at the scale of the P&L whatever the money unit; ``init``
starts it at its optimal value for the initial network (VaR_alpha of the loss for ES, the
entropic risk for OCE), computed on one batch of paths.

No-transaction band (``band=True``, Imaki, Imajo, Ito, Minami, Nakagawa 2021): the network
reads every feature except the previous position (the band is a function of the market
state, as in Imaki et al.; the position enters only through the clip), outputs ``(a, b)``
and the hedge is ``clip(u_prev, Delta - softplus(a - c), Delta +
softplus(b - c))`` with ``Delta`` the BS delta at the observed vol and ``c =``
:data:`BAND_OFFSET` (so an untrained network starts with a narrow band, ~0.13 each side,
instead of ``softplus(0) = 0.69``, which would leave the entry at zero shares). Without the
band the network outputs the number of shares directly (no delta prior).

Indifference price (:meth:`DeepHedging.price`): the cash equivalent of the trained hedge,
``premium + rho(Pi_T)`` on fresh paths -- the cash that, added to the premium, makes the
hedged short position acceptable (``rho <= 0``), i.e. the risk measure of the hedged P&L
without premium, ``rho(Pi_T - premium)`` by translation invariance. ``rho`` is the entropic
risk (``"entropic"``), ``ES_alpha(-Pi_T)`` computed exactly (``"es"``) or the OCE at the
learned threshold (``"oce"``, an upper bound of its minimum over ``w``). With zero costs and
a perfect hedge it is the replication price.

``price(state, hparams, contract)`` prices any :class:`jaxhedge.contracts.Contract` on the
agent's training market (:meth:`DeepHedging.contract_env`: the market keeps its kind and
its other parameters, takes the contract's s0, mu and calm vol; strike, life, dates, rate,
dividend, cost rate and premium are the contract's). ``evaluation_contract(hparams)`` is
the trained contract, and pricing it gives the price of ``price(state, hparams)``.

>>> agent = DeepHedging(EnvConfig(market="gbm", n_steps=4), n_paths=64, widths=(8,))
>>> hp = agent.default_hparams()
>>> state = agent.init(jax.random.key(0), hp)
>>> c = agent.evaluation_contract(hp)
>>> float(c.s0), float(c.strike), c.n_steps
(100.0, 100.0, 4)
>>> agent.price(state, hp, c).shape
()
>>> agent.price(state, hp, c.replace(strike=jnp.array([95.0, 105.0]))).shape
(2,)
"""
from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import optax
from flax import nnx, struct

from jaxhedge import nets, risk
from jaxhedge.contracts import Contract
from jaxhedge.env import EnvConfig, EnvParams, HedgingEnv
from jaxhedge.markets import MARKETS
from jaxhedge.pricing import bs_delta
from jaxhedge.rollout import RolloutResult, run_on_paths, simulate_paths

__all__ = [
    "OBJECTIVES",
    "BAND_OFFSET",
    "DeepHedging",
    "DeepHedgingHParams",
    "DeepHedgingState",
    "DeepHedger",
]

OBJECTIVES = ("entropic", "es", "oce")
#: Shift inside the band's softplus: initial half-widths softplus(-2) ~ 0.127 shares.
BAND_OFFSET = 2.0
_OCE_EXP_CAP = 60.0
_PRICE_SEED = 0x5EED
_POSITION = nets.FEATURE_NAMES.index("position")
assert _POSITION == nets.N_FEATURES - 1


@struct.dataclass
class DeepHedgingHParams:
    """Dynamic (vmappable) hyperparameters.

    Attributes:
      env: the environment's :class:`EnvParams` (market, strike, maturity, costs, premium...),
        so sigma, eps, etc. can be swept.
      learning_rate: Adam step size.
      risk_aversion: entropic / OCE lambda (1/money units).
      alpha: ES tail probability (used by ``"es"`` only).
    """

    env: EnvParams
    learning_rate: jax.Array | float = 1e-3
    risk_aversion: jax.Array | float = 1.0
    alpha: jax.Array | float = 0.05


@struct.dataclass
class DeepHedgingState:
    """Agent state.

    Attributes:
      graphdef: the network's NNX graphdef (static pytree field, never traced).
      params: network parameters (``nnx.State`` pytree of arrays).
      threshold: learned ES/OCE threshold in units of ``s0`` (``w = threshold * s0``);
        unused (zero gradient) for ``"entropic"``.
      opt_state: ``optax.inject_hyperparams(optax.adam)`` state over ``(params, threshold)``.
      step: number of updates done.
    """

    graphdef: Any = struct.field(pytree_node=False)
    params: Any
    threshold: jax.Array
    opt_state: Any
    step: jax.Array


@struct.dataclass
class DeepHedger:
    """Pytree-callable network hedger ``obs -> shares`` (works with :func:`rollout.rollout`)."""

    graphdef: Any = struct.field(pytree_node=False)
    params: Any
    band: bool = struct.field(pytree_node=False, default=False)
    is_call: bool = struct.field(pytree_node=False, default=True)
    #: indices into :data:`jaxhedge.nets.FEATURE_NAMES` the network reads (None: the default
    #: set, every feature; the band variant every feature but the position)
    columns: tuple[int, ...] | None = struct.field(pytree_node=False, default=None)

    def net_output(self, obs):
        features = nets.observation_features(obs)
        if self.columns is not None:
            features = features[..., jnp.asarray(self.columns)]
        elif self.band:  # the band depends on the market state only, not on the position
            features = features[..., :_POSITION]
        return nets.apply(self.graphdef, self.params, features)

    def band_edges(self, obs):
        """``(lower, upper)`` of the no-transaction band (band variant only)."""
        z = self.net_output(obs)
        delta = bs_delta(obs.spot, obs.strike, obs.time_to_maturity, obs.rate, obs.vol,
                         obs.div_yield, self.is_call).astype(z.dtype)
        lower = delta - jax.nn.softplus(z[..., 0] - BAND_OFFSET)
        upper = delta + jax.nn.softplus(z[..., 1] - BAND_OFFSET)
        return lower, upper

    def __call__(self, obs):
        if self.band:
            lower, upper = self.band_edges(obs)
            return jnp.clip(obs.position.astype(lower.dtype), lower, upper)
        return self.net_output(obs)[..., 0]


@dataclasses.dataclass(frozen=True)
class DeepHedging:
    """Deep hedging agent (static configuration; see the module docstring).

    Attributes:
      env: environment config (market, n_steps, option type).
      n_paths: simulated paths per training iteration.
      widths: hidden widths of the :class:`jaxhedge.nets.MLP` (ReLU).
      objective: "entropic", "es" or "oce".
      band: no-transaction-band network around the BS delta instead of a free hedge.
      alpha: default ES tail probability put in :meth:`default_hparams` (the value used is
        ``hparams.alpha``, which is dynamic).
      risk_aversion / learning_rate: defaults for :meth:`default_hparams`.
      features: names from :data:`jaxhedge.nets.FEATURE_NAMES` the network reads, in that
        order; empty (default) for all of them (band: all but the position). E.g.
        pfhedge's ``Hedger`` inputs are ``("log_moneyness", "time_to_maturity", "vol",
        "position")`` (:mod:`jaxhedge.bench.pfhedge_match`). A band network may not read
        the position (its band must not depend on the holding it clips).
      path_sampler: None (train on the env's own market) or a frozen, hashable
        ``sampler(key, contract, n_paths) -> MarketPaths`` drawing the training (and
        pricing) paths around the contract of ``hparams.env`` (module docstring), e.g.
        :class:`jaxhedge.markets.mixture.ScenarioMixture`.
    """

    env: EnvConfig = EnvConfig(market="gbm", n_steps=20)
    n_paths: int = 2048
    widths: tuple[int, ...] = (32, 32)
    objective: str = "entropic"
    band: bool = False
    alpha: float = 0.05
    risk_aversion: float = 1.0
    learning_rate: float = 1e-3
    features: tuple[str, ...] = ()
    path_sampler: Any = None
    name: str = "deep_hedging"
    #: its price is an indifference price of one contract, not a surface (jaxhedge.gates)
    price_surface: ClassVar[bool] = False

    def __post_init__(self):
        if self.objective not in OBJECTIVES:
            raise ValueError(f"deep_hedging.objective: must be one of {OBJECTIVES} "
                             f"(got {self.objective!r})")
        if not isinstance(self.n_paths, int) or self.n_paths < 2:
            raise ValueError(
                f"deep_hedging.n_paths: must be an integer >= 2 (got {self.n_paths!r})")
        if not (0.0 < self.alpha <= 1.0):
            raise ValueError(f"deep_hedging.alpha: must be in (0, 1] (got {self.alpha!r})")
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))
        object.__setattr__(self, "features", tuple(str(f) for f in self.features))
        unknown = [f for f in self.features if f not in nets.FEATURE_NAMES]
        if unknown or len(set(self.features)) != len(self.features):
            raise ValueError(f"deep_hedging.features: must be distinct names from "
                             f"{nets.FEATURE_NAMES} (got {list(self.features)})")
        if self.band and "position" in self.features:
            raise ValueError("deep_hedging.features: the band network may not read 'position'")
        if self.path_sampler is not None:
            if not callable(self.path_sampler):
                raise ValueError(f"deep_hedging.path_sampler: must be None or callable "
                                 f"(key, contract, n_paths) -> MarketPaths "
                                 f"(got {type(self.path_sampler).__name__})")
            if self.env.market != "gbm":  # the samplers scale from the calm GBM contract
                raise ValueError(f"deep_hedging.env.market: robust training builds its mixture "
                                 f"around a GBM contract (got {self.env.market!r})")

    # ------------------------------------------------------------------ helpers
    @property
    def hedging_env(self) -> HedgingEnv:
        return HedgingEnv(self.env)

    def default_hparams(self, market_params=None, **env_overrides) -> DeepHedgingHParams:
        """Hparams for ``market_params`` (default: the market's defaults with s0 = 100), K = s0.

        ``env_overrides`` go to ``HedgingEnv.default_params`` (strike, maturity, costs, ...);
        the premium is the env's reference premium unless given. The default s0 = 100 with
        ``risk_aversion = 1`` is Buehler et al.'s scale: lambda is per unit of money, so with
        s0 = 1 the same risk appetite is lambda = 100.
        """
        if market_params is None:
            market_params = MARKETS[self.env.market].params_cls(s0=100.0)
        env_overrides.setdefault("strike", market_params.s0)
        env_params = self.hedging_env.default_params(market_params, **env_overrides)
        return DeepHedgingHParams(env=env_params, learning_rate=self.learning_rate,
                                  risk_aversion=self.risk_aversion, alpha=self.alpha)

    @property
    def columns(self) -> tuple[int, ...] | None:
        """Indices of :attr:`features` in :data:`jaxhedge.nets.FEATURE_NAMES` (None: default)."""
        return tuple(nets.FEATURE_NAMES.index(f) for f in self.features) or None

    def _network(self, key) -> nnx.Module:
        if self.features:
            in_dim = len(self.features)
        else:
            in_dim = nets.N_FEATURES - 1 if self.band else nets.N_FEATURES
        return nets.MLP(in_dim, 2 if self.band else 1, self.widths,
                        rngs=nnx.Rngs(params=key))

    @staticmethod
    def _optimizer(hparams):
        return optax.inject_hyperparams(optax.adam)(learning_rate=hparams.learning_rate)

    def _hedger(self, graphdef, params) -> DeepHedger:
        return DeepHedger(graphdef=graphdef, params=params, band=self.band,
                          is_call=self.env.is_call, columns=self.columns)

    def simulate(self, key, hedger, hparams, n_paths: int | None = None,
                 keep_paths: bool = False, remat: bool = False) -> RolloutResult:
        """``n_paths`` episodes of ``hedger`` on the training market of ``hparams.env``.

        Without a path sampler: :func:`jaxhedge.rollout.rollout` unjitted (same key and
        ``n_paths`` -> the same paths as ``rollout``, common random numbers); with one: its
        paths around ``hparams.env``'s contract (same key, same paths). Differentiable in the
        hedger's parameters. ``keep_paths`` as in ``run_on_paths`` (off by default: training
        needs only the P&L and costs). ``remat``: recompute the dates' activations in the
        backward pass (``run_on_paths``; the training step sets it).
        """
        n = self.n_paths if n_paths is None else n_paths
        return self._episodes(key, hedger, self.env, hparams.env, n, keep_paths, remat)

    def _episodes(self, key, hedger, config: EnvConfig, env_params: EnvParams, n: int,
                  keep_paths: bool = False, remat: bool = False) -> RolloutResult:
        env = HedgingEnv(config)
        if self.path_sampler is None:
            paths = simulate_paths(key, env, env_params, n)
        else:
            contract = Contract.from_env(config, env_params)
            paths = jax.lax.stop_gradient(self.path_sampler(key, contract, n))
        return run_on_paths(env, env_params, hedger, paths, keep_paths=keep_paths,
                            remat=remat)

    def contract_env(self, hparams: DeepHedgingHParams,
                     contract: Contract) -> tuple[EnvConfig, EnvParams]:
        """The training market with ``contract`` in it (jittable; module docstring).

        The market keeps its kind and other parameters and takes the contract's s0, mu and
        calm vol, read back as :meth:`Contract.from_env` reads it (``sigma``; Heston
        ``v0 = sigma^2``; the first regime's sigma). Strike, maturity, rate, dividend, the
        proportional cost rate, the premium (``contract.premium()``), dates and option type
        are the contract's; the other cost coefficients and the ledger flags stay the
        training ones (the flags are traced under the trainer's vmap).
        """
        spec = MARKETS[self.env.market]
        if spec.with_calm_vol is None:
            raise ValueError(f"deep_hedging.price: market {spec.name!r} cannot take a "
                             "contract's volatility (its MarketSpec has no with_calm_vol)")
        m = spec.with_calm_vol(hparams.env.market.replace(s0=contract.s0, mu=contract.mu),
                               contract.sigma)
        params = hparams.env.replace(
            market=m, strike=contract.strike, maturity=contract.maturity, rate=contract.rate,
            div_yield=contract.div_yield,
            costs=hparams.env.costs.replace(proportional=contract.cost),
            premium=contract.premium())
        config = dataclasses.replace(self.env, n_steps=contract.n_steps, option=contract.option)
        return config, params

    def risk_objective(self, pnl, threshold, hparams):
        """Training objective of ``pnl`` (last axis: paths) at threshold ``w = threshold * s0``."""
        s0 = jnp.asarray(hparams.env.market.s0, pnl.dtype)
        w = threshold.astype(pnl.dtype) * s0
        lam = jnp.asarray(hparams.risk_aversion, pnl.dtype)
        if self.objective == "entropic":
            return risk.entropic_risk(pnl, lam)
        if self.objective == "es":
            return risk.cvar_rockafellar_uryasev(pnl, w, hparams.alpha)
        return risk.oce(pnl, w, lambda u: jnp.expm1(jnp.minimum(lam * u, _OCE_EXP_CAP)) / lam)

    # ------------------------------------------------------------------ protocol
    def init(self, key, hparams: DeepHedgingHParams) -> DeepHedgingState:
        """Build the network, start the threshold at its optimum for it, init Adam."""
        k_net, k_sim = jax.random.split(key)
        graphdef, params = nets.split(self._network(k_net))
        pnl = self.simulate(k_sim, self._hedger(graphdef, params), hparams).pnl
        s0 = jnp.asarray(hparams.env.market.s0, pnl.dtype)
        if self.objective == "es":
            w0 = risk.value_at_risk(-pnl, hparams.alpha)
        elif self.objective == "oce":
            w0 = risk.entropic_risk(pnl, hparams.risk_aversion)
        else:
            w0 = jnp.zeros((), pnl.dtype)
        threshold = jax.lax.stop_gradient(w0 / s0)
        opt_state = self._optimizer(hparams).init((params, threshold))
        return DeepHedgingState(graphdef=graphdef, params=params, threshold=threshold,
                                opt_state=opt_state, step=jnp.zeros((), jnp.int32))

    def update(self, key, state: DeepHedgingState, hparams: DeepHedgingHParams):
        """One iteration: ``n_paths`` episodes, risk of Pi_T, one Adam step. Jittable."""

        def loss_fn(trainable):
            params, threshold = trainable
            out = self.simulate(key, self._hedger(state.graphdef, params), hparams,
                                remat=True)
            return self.risk_objective(out.pnl, threshold, hparams), out

        trainable = (state.params, state.threshold)
        (loss, out), grads = jax.value_and_grad(loss_fn, has_aux=True)(trainable)
        opt_state = state.opt_state
        # the learning rate in hparams is authoritative (dynamic, vmappable)
        hyper = dict(opt_state.hyperparams)
        hyper["learning_rate"] = jnp.asarray(hparams.learning_rate,
                                             jnp.asarray(hyper["learning_rate"]).dtype)
        opt_state = opt_state._replace(hyperparams=hyper)
        updates, opt_state = self._optimizer(hparams).update(grads, opt_state, trainable)
        params, threshold = optax.apply_updates(trainable, updates)
        new_state = state.replace(params=params, threshold=threshold, opt_state=opt_state,
                                  step=state.step + 1)
        s0 = jnp.asarray(hparams.env.market.s0, out.pnl.dtype)
        metrics = {
            "loss": loss,
            "mean_pnl": jnp.mean(out.pnl),
            "std_pnl": jnp.std(out.pnl),
            "mean_cost": jnp.mean(out.cost),
            "threshold": state.threshold.astype(out.pnl.dtype) * s0,
        }
        return new_state, metrics

    def hedger(self, state: DeepHedgingState, hparams: DeepHedgingHParams | None = None):
        """The trained network as a pytree-callable hedger ``obs -> shares``."""
        del hparams  # the hedger reads everything it needs from the observation
        return self._hedger(state.graphdef, state.params)

    def evaluation_contract(self, hparams: DeepHedgingHParams) -> Contract:
        """The contract the agent was trained on: ``Contract.from_env(env, hparams.env)``."""
        return Contract.from_env(self.env, hparams.env)

    def price(self, state: DeepHedgingState, hparams: DeepHedgingHParams,
              contract: Contract | None = None, *, key=None, n_paths: int | None = None):
        """Indifference (ask) price ``premium + rho(Pi_T)`` of ``contract`` (module docstring).

        ``contract`` is hedged on the agent's training market (:meth:`contract_env`); None
        prices the contract in ``hparams.env`` as trained (its premium the env's). Its
        numeric leaves may carry a batch shape (the price has that shape; the contracts are
        priced one after another, each on the same paths' random numbers). ``rho`` is the
        training risk measure, evaluated on ``n_paths`` (default ``4 * self.n_paths``) fresh
        paths from ``key`` (default a fixed key that the training loop does not use).
        Jittable.
        """
        key = jax.random.key(_PRICE_SEED) if key is None else key
        n = 4 * self.n_paths if n_paths is None else n_paths
        if contract is None:
            return self._price_on(state, hparams, self.env, hparams.env, key, n)
        if not isinstance(contract, Contract):
            raise TypeError(f"deep_hedging.price: contract must be a jaxhedge.contracts.Contract "
                            f"(got {type(contract).__name__})")
        shape = jnp.broadcast_shapes(*(jnp.shape(x) for x in jax.tree.leaves(contract)))
        if not shape:
            config, env_params = self.contract_env(hparams, contract)
            return self._price_on(state, hparams, config, env_params, key, n)
        flat = jax.tree.map(lambda x: jnp.broadcast_to(x, shape).reshape(-1), contract)

        def one(c):
            config, env_params = self.contract_env(hparams, c)
            return self._price_on(state, hparams, config, env_params, key, n)

        # lax.map, not vmap: one contract's paths in memory at a time
        return jax.lax.map(one, flat).reshape(shape)

    def _price_on(self, state, hparams, config: EnvConfig, env_params: EnvParams, key, n: int):
        # through _hedger (a subclass may change the network's inputs), for the contract's option
        hedger = dataclasses.replace(self, env=config)._hedger(state.graphdef, state.params)
        pnl = self._episodes(key, hedger, config, env_params, n).pnl
        hp = hparams.replace(env=env_params)  # risk_objective reads s0 from hparams.env
        if self.objective == "es":
            rho = risk.expected_shortfall(-pnl, hp.alpha)
        else:
            rho = self.risk_objective(pnl, state.threshold, hp)
        return jnp.asarray(env_params.premium, pnl.dtype) + rho
