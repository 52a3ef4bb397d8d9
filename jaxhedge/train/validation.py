"""Validation criterion and early stopping for the latent-vol agents (RLOP, Adaptive-QLBS).

The criterion (docs/adaptive_qlbs.md and docs/rlop.md, "Validation criterion"): on a held-out
grid of GBM contracts at cost = drift = rate = 0 spanning the training distribution
(:func:`validation_grid`), the trained agent

* prices within ``price_tol`` of Black-Scholes: the root mean square of the relative price
  error over the grid points whose BS price is at least ``min_price`` of spot (relative
  errors of nearly worthless options say nothing), and
* hedges at t = 0 with its MEAN policy within ``hedge_tol`` shares of the BS delta (mean
  absolute distance over the grid),

and, when ``gates``, passes every sanity gate of :func:`jaxhedge.gates.agent_gates` (run only
once the two numbers pass: they are cheap, the gates compile a function each time).

:class:`EarlyStopping` evaluates it on the host between compiled chunks (never inside the
scan), appends one row per evaluation to ``RUN_DIR/validation.jsonl``, and asks the runner to
stop (``ctx.stop_reason``), from update ``min_steps`` on, when every member passes, or
after ``patience`` evaluations without a better score
(``score = max(price_rmse / price_tol, hedge_mae / hedge_tol)``; it passes at
``score <= 1``). The worst points (``price_err``, ``hedge_err``: maxima) are recorded beside
them; why means and not maxima: docs/rlop.md, "Validation criterion". The runner
checkpoints every chunk before the callbacks run, so the stopping state is the newest
checkpoint. Resume is exact: the rows from the resumed step on are dropped and that step is evaluated again (the criterion is a deterministic function
of the state), so the patience counter and the stop decision are those of a run that never
stopped.
"""
from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxhedge import pricing
from jaxhedge.contracts import Contract
from jaxhedge.runinfo import atomic_write_text
from jaxhedge.train.callbacks import read_jsonl

__all__ = ["ValidationConfig", "EarlyStopping", "validation_grid", "evaluate_member",
           "read_validation"]

_FILE = "validation.jsonl"


@dataclasses.dataclass(frozen=True)
class ValidationConfig:
    """The ``[validation]`` section of a training job.

    Attributes:
      enabled: evaluate the criterion between chunks and stop early on it.
      price_tol: largest RMS relative distance of the price to Black-Scholes.
      hedge_tol: largest mean distance of the t = 0 hedge to the BS delta, in shares.
      min_price: the price check covers contracts whose BS price is at least this fraction
        of spot.
      gates: also require every sanity gate (``jaxhedge check``) to pass.
      patience: stop after this many evaluations without a better score (0: never).
      n_points: grid points per axis (sigma, moneyness, maturity).
      min_steps: no stop (criterion or patience) before this update; every evaluation is
        still run and recorded. Why: an anchored head (``anchor_ratio``) starts AT
        Black-Scholes, so it meets the criterion before it has learnt anything; the study
        presets train it at least this long (docs/decisions.md, "Anchored latent-vol heads").
    """

    enabled: bool = False
    price_tol: float = 0.05
    hedge_tol: float = 0.03
    min_price: float = 2e-3
    gates: bool = True
    patience: int = 0
    n_points: int = 5
    min_steps: int = dataclasses.field(default=0, metadata={"range": (0, None)})

    def __post_init__(self):
        for name in ("price_tol", "hedge_tol", "min_price"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and np.isfinite(v) and v > 0):
                raise ValueError(f"{name}: must be a finite number > 0 (got {v!r})")
        if not isinstance(self.patience, int) or self.patience < 0:
            raise ValueError(f"patience: must be an integer >= 0 (got {self.patience!r})")
        if not isinstance(self.min_steps, int) or self.min_steps < 0:
            raise ValueError(f"min_steps: must be an integer >= 0 (got {self.min_steps!r})")
        if not isinstance(self.n_points, int) or not 2 <= self.n_points <= 50:
            raise ValueError(f"n_points: must be an integer in [2, 50] (got {self.n_points!r})")


def _mid_quantiles(lo: float, hi: float, n: int) -> np.ndarray:
    """``n`` points at the centres of ``n`` equal bins of ``[lo, hi]`` (``lo`` if fixed)."""
    return lo + (hi - lo) * (np.arange(n) + 0.5) / n


def validation_grid(agent, hparams, n_points: int = 5) -> Contract:
    """Held-out GBM contracts spanning the training distribution, leaves ``(n, n, n)``.

    Axes: sigma over ``[sigma_lo, sigma_hi]`` (in log sigma when the distribution draws it
    log-uniformly), spot over ``[s0_lo / strike_hi,
    s0_hi / strike_lo]`` at strike 1, maturity ``n_steps * dt`` over the dt range; bin
    centres, so no point is a training draw's boundary. Cost, drift, rate and dividend 0.
    """
    d = jax.tree.map(lambda x: float(np.asarray(x)), hparams.contracts)
    dt_hi = max(d.dt, d.dt_hi)
    sig = d.sigma_bin_centres(n_points)
    spot = _mid_quantiles(d.s0_lo / d.strike_hi, d.s0_hi / d.strike_lo, n_points)
    tau = agent.n_steps * _mid_quantiles(d.dt, dt_hi, n_points)
    s, m, t = np.meshgrid(sig, spot, tau, indexing="ij")
    f = lambda x: jnp.asarray(x, jnp.result_type(float))  # noqa: E731
    zero = f(np.zeros_like(s))
    return Contract(s0=f(m), strike=zero + 1.0, maturity=f(t), sigma=f(s), mu=zero, rate=zero,
                    div_yield=zero, cost=zero, n_steps=agent.n_steps, option=agent.option,
                    charge_entry=False, charge_unwind=True)


def _grid_outputs(agent):
    """Jitted ``(state, hparams, grid) -> (price, hedge)`` (compiled once per agent)."""
    def fn(state, hparams, grid):
        return (agent.price(state, hparams, grid),
                agent.hedger(state, hparams)(grid.observation()))
    return jax.jit(fn)


def evaluate_member(agent, hparams, state, cfg: ValidationConfig, outputs=None) -> dict:
    """The criterion's numbers for one member (``outputs``: a cached :func:`_grid_outputs`).

    Returns ``price_err`` (max relative price error), ``price_rmse`` (RMS of it),
    ``hedge_err`` (max |u - delta|), ``hedge_mae``, ``score`` and ``passed``; with
    ``cfg.gates`` and the numbers passing, ``gates_failed`` (names) decides ``passed``.
    """
    grid = validation_grid(agent, hparams, cfg.n_points)
    outputs = outputs or _grid_outputs(agent)
    price, hedge = (np.asarray(x, np.float64) for x in outputs(state, hparams, grid))
    is_call = agent.option == "call"
    bs = np.asarray(pricing.bs_price(grid.s0, grid.strike, grid.maturity, 0.0, grid.sigma, 0.0,
                                     is_call), np.float64)
    delta = np.asarray(pricing.bs_delta(grid.s0, grid.strike, grid.maturity, 0.0, grid.sigma,
                                        0.0, is_call), np.float64)
    keep = bs >= cfg.min_price * np.asarray(grid.s0)
    rel = np.abs(price[keep] / bs[keep] - 1.0)
    herr = np.abs(hedge - delta)
    finite = np.isfinite(rel).all() and np.isfinite(herr).all()
    out = {"price_err": float(rel.max()) if finite else float("inf"),
           "price_rmse": float(np.sqrt(np.mean(rel**2))) if finite else float("inf"),
           "hedge_err": float(herr.max()) if finite else float("inf"),
           "hedge_mae": float(herr.mean()) if finite else float("inf")}
    out["score"] = max(out["price_rmse"] / cfg.price_tol, out["hedge_mae"] / cfg.hedge_tol)
    out["passed"] = bool(out["score"] <= 1.0)
    if cfg.gates and out["passed"]:
        from jaxhedge.gates import agent_gates, failed

        bad = failed(agent_gates(agent, hparams, state))
        out["gates_failed"] = bad
        out["passed"] = not bad
    return out


def read_validation(run_dir: str | Path) -> list[dict]:
    """Rows of ``RUN_DIR/validation.jsonl`` (a torn last line is skipped)."""
    return read_jsonl(Path(run_dir) / _FILE)


class EarlyStopping:
    """A :class:`~jaxhedge.train.callbacks.Callback`: the criterion every chunk, and the stop.

    Every member is evaluated; the run stops when all pass (``stop_reason`` "criterion met
    at step N") or when the worst member's score has not improved for ``cfg.patience``
    evaluations ("no improvement ..."). ``run.json`` gains ``validation``: the criterion,
    the step it was first met (or None), the best and the last evaluation.

    ``evaluate(agent, hparams, state) -> dict`` with at least ``score`` and ``passed``
    replaces the latent-vol criterion (:func:`evaluate_member`); it must be a deterministic
    function of the member's state for resume to be exact.
    """

    def __init__(self, cfg: ValidationConfig, evaluate=None):
        self.cfg = cfg
        self.rows: list[dict] = []
        self._evaluate_member = evaluate

    # -------------------------------------------------------------- bookkeeping
    def _best(self) -> tuple[float, int]:
        """(best score so far, evaluations since it was reached)."""
        best, since = float("inf"), 0
        for r in self.rows:
            if r["score"] < best:
                best, since = r["score"], 0
            else:
                since += 1
        return best, since

    def _evaluate(self, ctx, step: int) -> None:
        t0 = time.perf_counter()
        agent = _agent_of(ctx)
        if self._evaluate_member is None:
            outputs = _grid_outputs(agent)
            self._evaluate_member = lambda a, hp, st: evaluate_member(a, hp, st, self.cfg,
                                                                      outputs)
        members = []
        for h in range(ctx.n_hparam_sets):
            hp = jax.tree.map(lambda x: np.asarray(x)[h], ctx.hparams)
            for s in range(ctx.n_seeds):
                state = jax.tree.map(lambda x: x[h, s], ctx.train_state.agent_state)
                members.append(self._evaluate_member(agent, hp, state))
        row = {"step": step, "passed": all(m["passed"] for m in members),
               "score": max(m["score"] for m in members),
               "members": members, "eval_s": time.perf_counter() - t0}
        self.rows.append(row)
        with open(ctx.run_dir / _FILE, "a") as f:
            f.write(json.dumps(row) + "\n")
        if step < self.cfg.min_steps:
            return
        if row["passed"]:
            ctx.stop_reason = f"criterion met at step {step:,}"
        elif self.cfg.patience and self._best()[1] >= self.cfg.patience:
            ctx.stop_reason = (f"no improvement of the validation score in {self.cfg.patience} "
                               f"evaluations (best {self._best()[0]:.3g}, needs <= 1)")

    # -------------------------------------------------------------- protocol
    def on_start(self, ctx) -> None:
        ctx.run_dir.mkdir(parents=True, exist_ok=True)
        start = ctx.start_step if ctx.resumed_from is not None else 0
        # rows from the resumed step on were written by a process that did not checkpoint
        # past it (or did, and is re-decided below): drop them, evaluate that step again
        self.rows = [r for r in read_validation(ctx.run_dir) if r["step"] < start]
        atomic_write_text(ctx.run_dir / _FILE, "".join(json.dumps(r) + "\n" for r in self.rows))
        if start > 0:
            self._evaluate(ctx, start)

    def on_chunk(self, ctx, step: int, rows: list[dict], summary) -> None:
        self._evaluate(ctx, step)

    def on_end(self, ctx, info: dict | None) -> None:
        if info is None:
            return
        # met = passed where a pass stops the run (from min_steps on)
        met = next((r["step"] for r in self.rows
                    if r["passed"] and r["step"] >= self.cfg.min_steps), None)
        best = min(self.rows, key=lambda r: r["score"]) if self.rows else None
        info["validation"] = {"criterion": dataclasses.asdict(self.cfg), "met_at_step": met,
                              "n_evaluations": len(self.rows), "best": best,
                              "last": self.rows[-1] if self.rows else None}


def _agent_of(ctx):
    """The run's agent (the runner puts it in the context)."""
    agent = getattr(ctx, "agent", None)
    if agent is None:
        raise RuntimeError("EarlyStopping: the run context carries no agent")
    return agent
