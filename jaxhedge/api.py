"""The user API: fit, price, hedge, save and load a hedger in a few lines.

In the spirit of pfhedge's ``Hedger(model, inputs).fit(derivative); hedger.price(derivative)``:

>>> import jaxhedge
>>> h = jaxhedge.fit("delta", market=jaxhedge.GBM(s0=100, sigma=0.2),
...                  contract=jaxhedge.Call(100, 30 / 252, n_steps=10), cost=0.0)
>>> round(h.price(), 4)                       # the market's reference price: Black-Scholes
2.7524
>>> r = h.hedge(n_paths=1000, seed=0)         # metrics as in ``jaxhedge hedge``'s results.json
>>> r.pnl.shape, abs(r.metrics["mean_pnl"]) < 0.5
((1000,), True)

* Markets are small constructors that return the markets' params dataclasses:
  :func:`GBM`, :func:`Heston`, :func:`Merton`, :func:`Regime` (the market kind is found from
  the params type). Options: :func:`Call` / :func:`Put` -> :class:`Option` (strike,
  maturity in years, ``n_steps`` rebalancing dates, rate, dividend yield).
* :func:`fit` builds a classical hedger (``delta``, ``ww``, ``naked``: nothing to train; its
  price is the market's reference price, ``HedgingEnv.default_params``' premium) or trains a
  learning one (``deep-hedging``, ``rlop``, ``adaptive-qlbs``) with
  :func:`jaxhedge.train.run_training` (chunked ``lax.scan``) into a run directory in the
  format of ``jaxhedge train`` (``checkpoints/`` + ``run.json``; a temporary one unless
  ``run_dir=`` is given). :meth:`Hedger.save` copies that directory, so ``jaxhedge eval DIR``,
  ``jaxhedge train --resume DIR`` and :func:`load` work on it. The API's arguments are
  recorded under ``config["api"]`` of ``run.json``; :func:`load` also reads runs written by
  ``jaxhedge train`` (the contract then is the agent's evaluation contract).
* :meth:`Hedger.hedge` runs :func:`jaxhedge.hedge.run_hedge` (compiled
  :func:`jaxhedge.rollout.rollout` in chunks; the same key gives the same paths to every
  hedger) on the hedger's market, another market, or given :class:`MarketPaths`.
* RLOP and Adaptive-QLBS train on a :class:`~jaxhedge.contracts.ContractDistribution`
  centred on the contract, in units of the strike (their learning rates are tuned for
  S0 ~ K ~ 1; their features and prices are scale-free): S0/K +-10%, sigma +-25% around the
  market's calm vol, strike 1, the drift, rate and cost of the contract fixed,
  ``dt = maturity / n_steps``. Deep hedging trains on the market itself.

Bad arguments raise ``ValueError`` with one line naming the argument and the allowed range.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import shutil
import tempfile
import weakref
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxhedge import hedge as _hedge
from jaxhedge import markets as _markets
from jaxhedge import risk
from jaxhedge.agents.registry import build_hedger, hedger_names
from jaxhedge.codec import params_sha256
from jaxhedge.contracts import Contract, ContractDistribution
from jaxhedge.env import EnvConfig, HedgingEnv, validate_env_params
from jaxhedge.ledger import CostModel
from jaxhedge.markets import market_names, market_spec, spec_for_params
from jaxhedge.markets.base import MarketPaths
from jaxhedge.rollout import run_on_paths
from jaxhedge.runs import load_trained

__all__ = ["GBM", "Heston", "Merton", "Regime", "Option", "Call", "Put", "Hedger",
           "HedgeResult", "fit", "load", "LEARNING"]

LEARNING = ("deep-hedging", "rlop", "adaptive-qlbs")
#: Relative half-widths of the RL agents' training distribution around the contract.
S0_SPREAD, SIGMA_SPREAD = 0.10, 0.25


# --------------------------------------------------------------------------- markets
def GBM(s0: float = 100.0, mu: float = 0.0, sigma: float = 0.2):  # noqa: N802
    """Geometric Brownian motion (:class:`jaxhedge.markets.GBMParams`)."""
    return _checked(_markets.GBMParams(s0=float(s0), mu=float(mu), sigma=float(sigma)))


def Heston(s0: float = 100.0, mu: float = 0.0, v0: float = 0.04, kappa: float = 2.0,  # noqa: N802
           theta: float = 0.04, xi: float = 0.5, rho: float = -0.7):
    """Heston stochastic volatility (:class:`jaxhedge.markets.HestonParams`); defaults are
    ``jaxhedge hedge --market heston``'s."""
    return _checked(_markets.HestonParams(s0=float(s0), mu=float(mu), v0=float(v0),
                                          kappa=float(kappa), theta=float(theta), xi=float(xi),
                                          rho=float(rho)))


def Merton(s0: float = 100.0, mu: float = 0.0, sigma: float = 0.2,  # noqa: N802
           jump_intensity: float = 1.0, jump_mean: float = -0.10, jump_std: float = 0.15):
    """Merton jump diffusion (:class:`jaxhedge.markets.MertonParams`)."""
    return _checked(_markets.MertonParams(s0=float(s0), mu=float(mu), sigma=float(sigma),
                                          jump_intensity=float(jump_intensity),
                                          jump_mean=float(jump_mean), jump_std=float(jump_std)))


def Regime(s0: float = 100.0, mu: float = 0.0, calm_sigma: float = 0.2,  # noqa: N802
           stress_sigma: float = 0.6, **kwargs):
    """Two-state regime chain (:func:`jaxhedge.markets.two_state`; ``kwargs`` go there)."""
    return _checked(_markets.two_state(calm_sigma=float(calm_sigma),
                                       stress_sigma=float(stress_sigma), s0=float(s0),
                                       mu=float(mu), **kwargs))


def _checked(params):
    _markets.validate(params)
    return params


# --------------------------------------------------------------------------- options
@dataclasses.dataclass(frozen=True)
class Option:
    """A short European option: strike, maturity (years), ``n_steps`` rebalancing dates."""

    strike: float
    maturity: float
    n_steps: int = 30
    option: str = "call"
    rate: float = 0.0
    div_yield: float = 0.0

    def __post_init__(self):
        for name, ok, allowed in (("strike", lambda v: v > 0, "> 0"),
                                  ("maturity", lambda v: 0 < v <= 100, "in (0, 100] years"),
                                  ("rate", lambda v: -1 < v < 1, "in (-1, 1)"),
                                  ("div_yield", lambda v: -1 < v < 1, "in (-1, 1)")):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (
                    math.isfinite(v) and ok(v)):
                raise ValueError(f"contract.{name}: must be a number {allowed} (got {v!r})")
            object.__setattr__(self, name, float(v))
        if isinstance(self.n_steps, bool) or not isinstance(self.n_steps, int) or self.n_steps < 1:
            raise ValueError(f"contract.n_steps: must be an integer >= 1 (got {self.n_steps!r})")
        if self.option not in ("call", "put"):
            raise ValueError(f"contract.option: must be 'call' or 'put' (got {self.option!r})")


def Call(strike: float, maturity: float, n_steps: int = 30, rate: float = 0.0,  # noqa: N802
         div_yield: float = 0.0) -> Option:
    """A short European call (:class:`Option`)."""
    return Option(strike, maturity, n_steps, "call", rate, div_yield)


def Put(strike: float, maturity: float, n_steps: int = 30, rate: float = 0.0,  # noqa: N802
        div_yield: float = 0.0) -> Option:
    """A short European put (:class:`Option`)."""
    return Option(strike, maturity, n_steps, "put", rate, div_yield)


# --------------------------------------------------------------------------- results
@dataclasses.dataclass(frozen=True)
class HedgeResult:
    """What :meth:`Hedger.hedge` returns.

    Attributes:
      metrics: :func:`jaxhedge.risk.hedge_metrics` (``mean_pnl``, ``std_pnl``, ``rmse``,
        ``shortfall_prob``, ``es_5``, ...) plus ``premium`` and, on simulated markets,
        ``wall_s``, ``compile_s``, ``path_steps_per_s`` (the keys of ``jaxhedge hedge``'s
        results.json).
      pnl, cost: per-path terminal P&L ``Pi_T`` and transaction cost, ``(n_paths,)``.
    """

    metrics: dict
    pnl: np.ndarray
    cost: np.ndarray


# --------------------------------------------------------------------------- the hedger
@dataclasses.dataclass(frozen=True, eq=False)
class Hedger:
    """A classical or trained hedger with its market, contract and cost (from :func:`fit`
    or :func:`load`). ``agent``/``hparams``/``state`` are None for classical hedgers."""

    name: str
    market: Any
    contract: Option
    cost: float
    options: dict = dataclasses.field(default_factory=dict)
    agent: Any = None
    hparams: Any = None
    state: Any = None
    run_dir: Path | None = None
    charge_entry: bool = True
    charge_unwind: bool = True

    @property
    def is_learning(self) -> bool:
        return self.agent is not None

    @property
    def policy(self):
        """The pytree-callable ``obs -> shares`` that :func:`jaxhedge.rollout.rollout` runs."""
        if self.is_learning:
            return self.agent.hedger(self.state, self.hparams)
        return _classical(self.name, self.contract.option, **self.options)

    @property
    def params_sha256(self) -> str | None:
        """SHA-256 of this member's agent state (None: classical). ``run.json``'s
        ``params_sha256`` is the same hash over the whole (hparam sets, seeds) block."""
        return _params_sha256(self.state) if self.is_learning else None

    def setup(self, contract: Option | Contract | None = None, market=None):
        """``(HedgingEnv, EnvParams)`` of ``contract`` (default: the hedger's) on ``market``
        (default: the hedger's); the premium is that market's reference price. A
        :class:`~jaxhedge.contracts.Contract` brings its own calm GBM market."""
        if isinstance(contract, Contract):
            if market is not None:
                raise ValueError("market: give a market or a Contract (which has one), not both")
            return contract.env()
        c = self.contract if contract is None else _option(contract)
        return _setup(self.market if market is None else _market(market), c, self.cost,
                      self.charge_entry, self.charge_unwind)

    def price(self, contract: Option | Contract | None = None) -> float:
        """Price of ``contract`` (default: the hedger's) at t = 0.

        Classical hedgers: the market's reference price (Black-Scholes on GBM, Heston's or
        Merton's semi-analytic price). Learning agents: their own ``price(state, hparams,
        contract)`` (deep hedging: the indifference price on the hedger's market; RLOP and
        Adaptive-QLBS: the learned price head).
        """
        env, params = self.setup(contract)
        if not self.is_learning:
            return float(params.premium)
        return float(_learned_price(self.agent, self.state, self.hparams, env, params))

    def hedge(self, market_or_paths=None, n_paths: int = 100_000, seed: int = 0,
              contract: Option | None = None) -> HedgeResult:
        """Hedge the short ``contract`` on ``n_paths`` simulated paths of the hedger's market
        (or of ``market_or_paths``, a market's params), or on given paths (a
        :class:`~jaxhedge.markets.base.MarketPaths` with fields ``(n, n_steps + 1)``)."""
        if isinstance(market_or_paths, MarketPaths):
            return self._hedge_paths(market_or_paths, contract)
        _check_int("n_paths", n_paths, 1)
        _check_int("seed", seed, 0)
        env, params = self.setup(contract, market_or_paths)
        report = _hedge.run_hedge(env, params, self.policy, n_paths, seed=seed)
        metrics = {**report.metrics, "wall_s": report.wall_s, "compile_s": report.compile_s,
                   "path_steps_per_s": report.path_steps_per_s,
                   "premium": float(params.premium)}
        return HedgeResult(metrics, report.pnl, report.cost)

    def _hedge_paths(self, paths: MarketPaths, contract) -> HedgeResult:
        env, params = self.setup(contract)
        spot = np.asarray(paths.spot)
        if spot.ndim != 2 or spot.shape[1] != env.n_steps + 1:
            raise ValueError(f"market_or_paths: spot must have shape (n_paths, "
                             f"{env.n_steps + 1}) (got {spot.shape})")
        out = _run_paths(env, params, self.policy, paths, keep_paths=False)
        metrics = {k: float(v) for k, v in risk.hedge_metrics(out.pnl, out.cost,
                                                              out.turnover).items()}
        metrics["premium"] = float(params.premium)
        return HedgeResult(metrics, np.asarray(out.pnl), np.asarray(out.cost))

    def save(self, directory) -> Path:
        """Write the hedger as a run directory (``checkpoints/`` + ``run.json``, the format
        of ``jaxhedge train``; classical hedgers: ``run.json`` only). ``directory`` must be
        absent or empty."""
        out = Path(directory)
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise ValueError(f"directory: must be absent or an empty directory (got {out})")
        if self.is_learning:
            if self.run_dir is None:
                raise ValueError("directory: this hedger has no run directory to save")
            if out.resolve() != Path(self.run_dir).resolve():
                shutil.copytree(self.run_dir, out, dirs_exist_ok=True)  # out is absent or empty
            return out
        from jaxhedge.runinfo import atomic_write_json, run_metadata

        atomic_write_json(out / "run.json", {
            "status": "completed", "agent_name": self.name, "classical": True,
            "config": {"api": self._api_config()}, **run_metadata()})
        return out

    def _api_config(self) -> dict:
        return {"hedger": self.name, "market": _encode_market(self.market),
                "contract": dataclasses.asdict(self.contract), "cost": self.cost,
                "options": dict(self.options), "charge_entry": self.charge_entry,
                "charge_unwind": self.charge_unwind}


# --------------------------------------------------------------------------- fit / load
def fit(hedger: str, market=None, contract: Option | None = None, cost: float = 0.0, *,
        steps: int = 1000, seed: int = 0, chunk: int = 100, run_dir=None,
        progress: bool = False, **options) -> Hedger:
    """A hedger of kind ``hedger`` for the short ``contract`` on ``market``, paying ``cost``.

    Args:
      hedger: ``"delta"``, ``"ww"``, ``"naked"`` (classical; ``options``: e.g.
        ``risk_aversion`` for ``ww``) or ``"deep-hedging"``, ``"rlop"``, ``"adaptive-qlbs"``
        (trained for ``steps`` updates; ``options`` set fields of the agent, e.g.
        ``n_paths``, ``widths``, ``objective``, or of its hparams, e.g. ``learning_rate``).
      market: market params (:func:`GBM`, ...); default ``GBM()``.
      contract: :func:`Call` / :func:`Put`; default an ATM call, 30 days, 30 dates.
      cost: proportional transaction cost rate in [0, 1).
      steps, seed, chunk: training updates, seed, updates per compiled chunk.
      run_dir: train into this (absent or empty) directory instead of a temporary one.
    """
    names = tuple(hedger_names()) + LEARNING
    if hedger not in names:
        raise ValueError(f"hedger: must be one of {', '.join(names)} (got {hedger!r})")
    market = GBM() if market is None else _market(market)
    contract = Call(float(market.s0), 30 / 252) if contract is None else _option(contract)
    if isinstance(cost, bool) or not isinstance(cost, (int, float)) or not 0 <= cost < 1:
        raise ValueError(f"cost: must be a number in [0, 1) (got {cost!r})")
    cost = float(cost)
    if hedger in hedger_names():
        h = Hedger(hedger, market, contract, cost, dict(options))
        _ = h.policy  # unknown options fail here, not at hedge time
        env, params = h.setup()
        validate_env_params(env.config, params)
        return h
    for name, value, lo in (("steps", steps, 1), ("seed", seed, 0), ("chunk", chunk, 1)):
        _check_int(name, value, lo)
    agent, hparams = _build_learning(hedger, market, contract, cost, options)
    from jaxhedge.train import run_training

    temporary = run_dir is None
    out = Path(tempfile.mkdtemp(prefix="jaxhedge-fit-")) if temporary else Path(run_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"run_dir: must be absent or an empty directory (got {out})")
    charge_entry, charge_unwind = _flags(agent, hparams)
    probe = Hedger(hedger, market, contract, cost, dict(options),
                   charge_entry=charge_entry, charge_unwind=charge_unwind)
    run_training(agent, hparams, seed=seed, n_steps=steps, chunk=min(chunk, steps),
                 run_dir=out, config={"api": probe._api_config()}, progress=progress,
                 tensorboard=False)
    h = load(out)
    if temporary:
        weakref.finalize(h, shutil.rmtree, out, True)
    return h


def load(directory, member: int = 0) -> Hedger:
    """The hedger saved in ``directory`` by :meth:`Hedger.save`, :func:`fit` or ``jaxhedge
    train`` (``member`` of a multi-seed run: ``m = h * n_seeds + s``)."""
    path = Path(directory)
    info_path = path / "run.json"
    if not info_path.is_file() and not (path / "checkpoints").is_dir():
        raise ValueError(f"directory: no saved hedger at {path}")
    info = json.loads(info_path.read_text()) if info_path.is_file() else {}
    api = (info.get("config") or {}).get("api") if isinstance(info.get("config"), dict) else None
    if info.get("classical"):
        return Hedger(api["hedger"], _decode_market(api["market"]), Option(**api["contract"]),
                      api["cost"], dict(api["options"]), charge_entry=api["charge_entry"],
                      charge_unwind=api["charge_unwind"])
    _check_int("member", member, 0)
    agent, hparams, state = _load_trained(path, member)
    if api is not None:
        return Hedger(api["hedger"], _decode_market(api["market"]), Option(**api["contract"]),
                      api["cost"], dict(api["options"]), agent, hparams, state, path,
                      api["charge_entry"], api["charge_unwind"])
    # a run of `jaxhedge train`: the contract and market `jaxhedge eval` uses
    from jaxhedge.evaluate import evaluation_setup

    env, params = evaluation_setup(agent, hparams, None)
    option = Option(float(params.strike), float(params.maturity), env.n_steps,
                    env.config.option, float(params.rate), float(params.div_yield))
    name = getattr(agent, "name", type(agent).__name__).replace("_", "-")
    return Hedger(name, params.market, option, float(params.costs.proportional), {}, agent,
                  hparams, state, path, bool(params.charge_entry), bool(params.charge_unwind))


# --------------------------------------------------------------------------- internals
def _check_int(name: str, value, lo: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < lo:
        raise ValueError(f"{name}: must be an integer >= {lo} (got {value!r})")


def _option(contract) -> Option:
    if not isinstance(contract, Option):
        raise ValueError(f"contract: must be jaxhedge.Call(...) or jaxhedge.Put(...) "
                         f"(got {type(contract).__name__})")
    return contract


def _market(params):
    _market_kind(params)
    return _checked(params)


def _setup(market, c: Option, cost: float, charge_entry: bool, charge_unwind: bool):
    env = HedgingEnv(EnvConfig(market=_market_kind(market), n_steps=c.n_steps, option=c.option))
    params = env.default_params(market, strike=c.strike, maturity=c.maturity, rate=c.rate,
                                div_yield=c.div_yield, costs=CostModel(proportional=cost),
                                charge_entry=charge_entry, charge_unwind=charge_unwind)
    return env, params


_run_paths = jax.jit(run_on_paths, static_argnums=(0,), static_argnames=("keep_paths",))


def _encode_market(m) -> dict:
    return {"kind": _market_kind(m),
            "params": {f.name: np.asarray(getattr(m, f.name)).tolist()
                       for f in dataclasses.fields(m)}}


def _decode_market(d: dict):
    cls = _market_class(d["kind"])
    return cls(**{k: jnp.asarray(v) if isinstance(v, list) else v
                  for k, v in d["params"].items()})


def _market_kind(params) -> str:
    """Market name of a params instance (the market registry)."""
    try:
        return spec_for_params(params).name
    except (TypeError, ValueError):
        raise ValueError(f"market: must be the params of one of {', '.join(market_names())} "
                         f"(e.g. jaxhedge.GBM(...); got {type(params).__name__})") from None


def _market_class(kind: str):
    return market_spec(kind).params_cls


def _classical(name: str, option: str, **options):
    """A registered classical hedger (:mod:`jaxhedge.agents.registry`)."""
    return build_hedger(name, option, **options)


def _load_trained(run_dir, member: int):
    """``(agent, hparams, state)`` of one member (:func:`jaxhedge.runs.load_trained`)."""
    absl = logging.getLogger("absl")
    level = absl.level
    absl.setLevel(logging.ERROR)  # orbax's read-only notices are not news to a user
    try:
        return load_trained(run_dir, member)
    finally:
        absl.setLevel(level)


def _params_sha256(tree) -> str:
    return params_sha256(tree)


def _flags(agent, hparams=None) -> tuple[bool, bool]:
    """Ledger flags (charge_entry, charge_unwind) the agent trains with: those of its own
    evaluation contract (RLOP and Adaptive-QLBS: no entry cost)."""
    c = agent.evaluation_contract(agent.default_hparams() if hparams is None else hparams)
    return bool(c.charge_entry), bool(c.charge_unwind)


def _learned_price(agent, state, hparams, env, params):
    """``agent.price(state, hparams, contract)`` (the agent protocol) of the contract of
    ``(env, params)``."""
    return agent.price(state, _with_env(hparams, params), Contract.from_env(env.config, params))


def _with_env(hparams, params):
    # deep hedging prices on its own market: the contract's numbers ride in hparams.env
    return hparams.replace(env=params) if hasattr(hparams, "env") else hparams


def _build_learning(name: str, market, c: Option, cost: float, options: dict):
    """``(agent, hparams)`` of a learning hedger for the contract (module docstring)."""
    if name == "deep-hedging":
        from jaxhedge.agents.deep_hedging import DeepHedging

        agent_kw, hp_kw = _split_options(DeepHedging, options, {"env", "name"})
        agent = DeepHedging(env=EnvConfig(market=_market_kind(market), n_steps=c.n_steps,
                                          option=c.option), **agent_kw)
        hp = agent.default_hparams(market, strike=c.strike, maturity=c.maturity, rate=c.rate,
                                   div_yield=c.div_yield, costs=CostModel(proportional=cost))
        return agent, _replace_hparams(hp, hp_kw)
    if name == "rlop":
        from jaxhedge.agents.rlop import RLOP as cls
    else:
        from jaxhedge.agents.adaptive_qlbs import AdaptiveQLBS as cls
    agent_kw, hp_kw = _split_options(cls, options, {"n_steps", "option", "name"})
    agent = cls(n_steps=c.n_steps, option=c.option, **agent_kw)
    env, params = _setup(market, c, cost, *_flags(agent))
    calm = Contract.from_env(env.config, params)
    dist = _centred_distribution(calm, c)
    hp = _with_distribution(agent.default_hparams(), dist)
    return agent, _replace_hparams(hp, hp_kw)


def _centred_distribution(calm: Contract, c: Option) -> ContractDistribution:
    m, sigma = float(calm.s0) / c.strike, float(calm.sigma)
    return ContractDistribution(
        dt=c.maturity / c.n_steps, rate=c.rate, mu_mean=float(calm.mu), mu_std=0.0,
        sigma_lo=sigma * (1 - SIGMA_SPREAD), sigma_hi=sigma * (1 + SIGMA_SPREAD),
        s0_lo=m * (1 - S0_SPREAD), s0_hi=m * (1 + S0_SPREAD), strike_lo=1.0, strike_hi=1.0,
        cost_lo=float(calm.cost), cost_hi=float(calm.cost)).validate()


def _with_distribution(hp, dist: ContractDistribution):
    """The RL agents' hparams with ``dist`` as their training distribution."""
    return hp.replace(contracts=dist)


def _split_options(cls, options: dict, reserved: set) -> tuple[dict, dict]:
    agent_fields = {f.name for f in dataclasses.fields(cls) if f.init} - reserved
    agent_kw = {k: v for k, v in options.items() if k in agent_fields}
    return agent_kw, {k: v for k, v in options.items() if k not in agent_fields}


def _replace_hparams(hp, kw: dict):
    fields = {f.name for f in dataclasses.fields(hp)} - {"env"}
    bad = sorted(set(kw) - fields)
    if bad:
        raise ValueError(f"{bad[0]}: not an option of this hedger (agent or hparams fields; "
                         f"hparams: {', '.join(sorted(fields))})")
    return hp.replace(**kw)
