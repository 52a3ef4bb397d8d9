"""``jaxhedge reproduce``: the papers' static-fit and after-cost hedging study, end to end.

For every asset x period (METHODS §5):

* **static** — every (day, bucket) slice of the period is calibrated in one vmapped call
  per model (BS, JD = Merton, SV = Heston; QLBS / RLOP by moving only the trained
  network's (sigma, mu) inputs), implied vols are inverted, and the equal-day-average
  IVRMSE x1e3 is tabulated per bucket x moneyness group (:mod:`jaxhedge.calibrate.static`);
* **hedging** — for each of the 6 slices (bucket 14/28/56 d x target K/F 1.00/1.03) the
  episodes of :func:`jaxhedge.data.build_episodes` are calibrated on their start-day
  anchor-expiry slice (one vmapped call per model) and hedged on the realized path by
  :func:`jaxhedge.backtest.backtest`, in ``surface-delta`` mode (every model: delta of the
  calibrated price function at fixed parameters) and, for QLBS / RLOP, ``policy`` mode
  (the trained policy network's hedge, fed the calibrated (sigma, mu)). Every row carries
  the directional columns and the paired block-bootstrap CIs of its difference to BS on
  the same episodes (:mod:`.versus_bs`).

Before any of it, every RL agent goes through the sanity gates (:mod:`.gating`); a
failing one is marked in every table and legend and not ranked (:mod:`.summary`). RL
surface fits sitting on a bound of their (sigma, mu) box are counted per bucket / slice.

Outputs (all written atomically) are listed in :func:`run_study`. Python loops here run
over assets, periods, slices and models (at most 2 x 2 x 6 x 5); every loop over days,
quotes, episodes or dates is inside a compiled, vmapped call.
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from jaxhedge.reproduce.config import MODEL_LABELS, StudyConfig
from jaxhedge.reproduce.gating import (BOUND_RTOL, NOT_GATED, bound_counts, display_name,
                                      surface_bounds)
from jaxhedge.reproduce.versus_bs import CI_COLUMNS, DIRECTIONAL_COLUMNS

__all__ = ["StudyRequest", "run_study", "load_inputs", "drop_rows", "static_part",
           "hedging_part", "bound_rows", "gate_cell", "model_of_label", "policy_positions",
           "surface_delta_fn", "fit_agent_surface", "surface_label", "STATIC_COLUMNS",
           "HEDGING_COLUMNS"]

STATIC_COLUMNS = ["period", "asset", "bucket_days", "group", "model", "fit", "ivrmse_x1e3",
                  "n_days", "surface_loss", "n_fits", "fits_on_bound", "gate"]
#: per-slice metrics; directional and vs-BS columns (:mod:`.versus_bs`); for RL surfaces the
#: episodes whose (sigma, mu) fit sits on a bound; the agent's gate verdict
HEDGING_COLUMNS = ["period", "asset", "bucket_days", "target_moneyness", "model", "mode",
                   "rmse", "avg_cost", "shortfall_prob", "es_5", "es_10", "n_hedges",
                   *DIRECTIONAL_COLUMNS, *CI_COLUMNS, "fits_on_bound", "gate"]
_METRICS = HEDGING_COLUMNS[6:12]
PARAMETRIC = ("bs", "jd", "sv")


@dataclasses.dataclass(frozen=True)
class StudyRequest:
    """What to run (the CLI's flags, validated by :func:`jaxhedge.reproduce.command`)."""

    data_dir: Path
    out: Path
    parts: tuple[str, ...] = ("static", "hedging")
    models: tuple[str, ...] = ("bs", "jd", "sv", "aqlbs", "rlop")
    assets: tuple[str, ...] = ("spy", "xop")
    periods: tuple[str, ...] = ("2020q1", "2025q2")


def _fitters():
    from jaxhedge.calibrate import fit_bs, fit_heston, fit_merton

    return {"bs": fit_bs, "jd": fit_merton, "sv": fit_heston}


def _dtype(config: StudyConfig):
    return jnp.float64 if config.x64 else jnp.float32


# ----------------------------------------------------------------------------- static
#: the ``fit`` column: which objective/optimiser produced each row (METHODS §5.4 asks the
#: table to say it). BS / JD / SV: bounded Levenberg-Marquardt on the unweighted price SSE.
FIT_NAMES = {"parametric": "LM", "authors": "authors: Adam", "authors-lm": "authors inputs: LM",
             "lm": "LM"}
_FIT_TAGS = {"authors": "authors", "authors-lm": "authors-LM", "lm": "LM"}


def surface_label(model: str, method: str, config: StudyConfig) -> str:
    """Static-table name of an RL model fitted by ``method``: the bare name for the first of
    ``config.surface_methods`` (the fit the hedging study uses), "<NAME> (<fit>)" else."""
    name = MODEL_LABELS[model]
    return name if method == config.surface_methods[0] else f"{name} ({_FIT_TAGS[method]})"


def fit_agent_surface(ta, batch, method: str, config: StudyConfig, anchor_tau=None):
    """(price_fn, SurfaceFit) of a trained agent's surface on ``batch`` by ``method`` (the
    authors' friction input and learning rate for their protocol)."""
    from jaxhedge.calibrate.surface import AUTHORS_LR, fit_surface, method_for
    from jaxhedge.reproduce.config import AGENT_OF_MODEL

    fn = method_for(ta.price_fn, method)
    return fn, fit_surface(fn, batch, method, anchor_tau=anchor_tau,
                           lr=AUTHORS_LR[AGENT_OF_MODEL[ta.model]], n_iter=config.calib_iters,
                           dtype=_dtype(config))


def static_part(pdata, models, agents: dict, config: StudyConfig,
                bounds_out: list | None = None) -> pd.DataFrame:
    """IVRMSE table (STATIC_COLUMNS but the last 3) of one asset-period over all its (day,
    bucket) slices. ``bounds_out`` receives one :func:`bound_rows` row per RL fit and
    bucket (fits sitting on a bound of their box).

    RL models are fitted by every method of ``config.surface_methods`` (rows side by side,
    labelled by :func:`surface_label`); ``surface_loss`` is their equal-day average of the
    final fit loss mean(w (C_model/F - C/F)^2) per bucket (NaN for BS / JD / SV, whose
    objective is the unweighted price SSE).
    """
    from jaxhedge.calibrate import market_iv, model_iv
    from jaxhedge.calibrate.static import ivrmse_table
    from jaxhedge.calibrate.surface import surface_prices
    from jaxhedge.data import static_slices

    dtype = _dtype(config)
    batch = static_slices(pdata.quotes)
    mkt = np.asarray(market_iv(batch, dtype=dtype))
    ivs, fits, losses = {}, {}, []
    buckets = np.asarray([k[1] for k in batch.keys])
    fitters = _fitters()
    for m in models:
        if m in PARAMETRIC:
            fit = fitters[m](batch, n_iter=config.calib_iters, dtype=dtype)
            ivs[MODEL_LABELS[m]] = np.asarray(model_iv(fit, batch, dtype=dtype))
            fits[MODEL_LABELS[m]] = FIT_NAMES["parametric"]
            continue
        for method in config.surface_methods:
            label = surface_label(m, method, config)
            fn, sf = fit_agent_surface(agents[m], batch, method, config)
            _add_bounds(bounds_out, pdata, label, sf, buckets)
            prices = surface_prices(fn, sf, batch, dtype=dtype)
            ivs[label] = np.asarray(model_iv(prices, batch, dtype=dtype))
            fits[label] = FIT_NAMES[method]
            losses.append(pd.DataFrame({"bucket_days": buckets, "model": label,
                                        "surface_loss": np.asarray(sf.loss, np.float64)}))
    table = ivrmse_table(batch, ivs, mkt, key_names=("date", "bucket_days"),
                         period=pdata.period, asset=pdata.asset)
    table["fit"] = table["model"].map(fits)
    if losses:
        mean_loss = pd.concat(losses).groupby(["bucket_days", "model"], as_index=False).mean()
        table = table.merge(mean_loss, on=["bucket_days", "model"], how="left")
    else:
        table["surface_loss"] = np.nan
    return table[STATIC_COLUMNS[:-3]]  # the study adds the bound counts and gates


def bound_rows(pdata, label: str, fit, buckets) -> list[dict]:
    """One row per bucket: how many of the per-slice (sigma, mu) fits of ``pdata`` (one per
    entry of ``buckets``) of the static table's model ``label`` sit on a bound
    (:func:`bound_counts`, with the box of the fit's method)."""
    sb, mb = surface_bounds(fit)
    sigma, mu = np.asarray(fit.sigma), np.asarray(fit.mu)
    buckets = np.asarray(buckets)
    return [{"period": pdata.period, "asset": pdata.asset, "bucket_days": int(b),
             "model": label, **bound_counts(sigma[buckets == b], mu[buckets == b],
                                                          sb, mb)}
            for b in sorted(set(buckets.tolist()))]


def _add_bounds(out: list | None, pdata, label, fit, buckets):
    if out is not None:
        out += bound_rows(pdata, label, fit, buckets)


# ----------------------------------------------------------------------------- hedging
_DELTA_FNS: dict[tuple, Callable] = {}


def surface_delta_fn(price_fn: Callable, method: str = "lm") -> Callable:
    """Central-difference delta (METHODS §5.6 step) of an agent surface at fixed fitted
    inputs, C(S, tau) by ``calibrate.surface.path_price_fn(price_fn, method)``.

    ``params`` per episode = ``calibrate.surface.path_params`` (sigma, mu, time scale;
    (sigma, mu) is enough for ``lm``). ``lm`` prices on the prepaid forward S e^{-q tau}
    (the agents train without dividends), so its spot derivative includes the e^{-q tau}
    of a dividend-paying underlying. One function object per (surface, method), so the
    backtest compiles once per agent.
    """
    from jaxhedge.backtest import fd_delta_fn
    from jaxhedge.calibrate.surface import path_price_fn

    key = (id(price_fn), method)
    if key not in _DELTA_FNS:
        _DELTA_FNS[key] = fd_delta_fn(path_price_fn(price_fn, method))
    return _DELTA_FNS[key]


def policy_positions(hedger, episodes, sigma, mu, cost: float):
    """(n, T) hedge of a trained policy along each episode's realized path.

    The observation at each rebalancing date is the one the agents train on, in strike
    units (spot S/K, strike 1: the networks saw S0, K ~ U(0.3, 1.7)), with the remaining
    time, the start day's r and q_hat, the calibrated (sigma, mu) of the start day held
    fixed, eps = ``cost`` and the position held so far (a ``lax.scan`` over dates).
    Padded dates hold the position.
    """
    from jaxhedge.env import Observation

    dtype = episodes.spots.dtype

    @jax.jit
    def run(spots, tau, mask, strike, rate, q_hat, sigma, mu):
        def one(spots, tau, mask, strike, rate, q_hat, sigma, mu):
            c = lambda v: jnp.asarray(v, dtype)

            def step(pos, xs):
                s, t, m = xs
                obs = Observation(spot=s / strike, strike=c(1.0), time_to_maturity=t,
                                  elapsed=tau[0] - t, rate=rate, div_yield=q_hat, drift=mu,
                                  vol=sigma, cost=c(cost), cost_multiplier=c(1.0), position=pos)
                u = jnp.where(m, jnp.asarray(hedger(obs), dtype), pos)
                return u, u

            _, us = jax.lax.scan(step, c(0.0), (spots[:-1], tau[:-1], mask))
            return us
        return jax.vmap(one)(spots, tau, mask, strike, rate, q_hat, sigma, mu)

    e = episodes
    return run(e.spots, jnp.where(e.tau > 0, e.tau, 1e-6), e.step_mask, e.strike, e.rate,
               e.q_hat, jnp.asarray(sigma, dtype), jnp.asarray(mu, dtype))


@dataclasses.dataclass
class SliceOutcome:
    rows: list[dict]
    pnls: dict[str, np.ndarray]
    cost_risk: list[dict]
    report: dict
    bootstrap_s: float = 0.0


def model_of_label(label: str) -> str:
    """Model key of a table label: "AQLBS" and "AQLBS (<fit>)" -> "aqlbs"."""
    base = str(label).split(" (")[0]
    return next((m for m, lab in MODEL_LABELS.items() if lab == base), base)


def gate_cell(model: str, agents: dict, labels: dict) -> str:
    """The ``gate`` column: "pass", "GATE FAILED: <checks>", or "not gated" (a closed form)."""
    if model not in agents:
        return NOT_GATED
    return labels.get(model, "") or "pass"


def hedging_part(pdata, bucket: int, target: float, models, agents: dict,
                 config: StudyConfig, labels: dict | None = None) -> SliceOutcome:
    """Backtest every model on one slice; rows follow HEDGING_COLUMNS.

    BS is always backtested (it is the reference of the directional and paired-bootstrap
    columns, :mod:`.versus_bs`); its row appears when ``"bs"`` is in ``models``.
    ``labels``: ``{model: gate label}`` ("" = passed), carried into the ``gate`` column,
    the P&L-CDF legend and the cost-risk map (:func:`display_name`).
    """
    from jaxhedge.backtest import backtest, metrics, model_delta_fn
    from jaxhedge.calibrate.surface import HEDGING_ANCHOR_TAU, path_params
    from jaxhedge.data import build_episodes
    from jaxhedge.reproduce.versus_bs import block_length, start_day_index, versus_bs

    labels = labels or {}
    dtype = _dtype(config)
    episodes, report = build_episodes(pdata.chain, start=pdata.start, end=pdata.end,
                                      bucket_days=bucket, target_km=target, dtype=dtype,
                                      slice_key=(pdata.asset, pdata.period, bucket, target))
    label = {"period": pdata.period, "asset": pdata.asset, "bucket_days": bucket,
             "target_moneyness": target}
    out = SliceOutcome([], {}, [], {"episodes": int(episodes.n_episodes),
                                    "skipped": report.to_dict()})
    if episodes.n_episodes == 0:
        return out
    fitters = _fitters()
    day = start_day_index(episodes.start_dates, pdata.quotes["date"])
    n_days = int(pdata.quotes["date"].nunique())
    block = block_length(np.asarray(episodes.n_hedges), n_days)
    out.report.update(block_days=block, period_days=n_days)
    s0 = np.asarray(episodes.spots[:, 0])
    st = np.asarray(episodes.terminal_spot)
    bs_fit = fitters["bs"](episodes.anchor, n_iter=config.calib_iters, dtype=dtype)
    ref = backtest(episodes, model_delta_fn, config.cost, params=bs_fit)

    def record(m, mode, result, on_bound=None):
        name = MODEL_LABELS[m]
        met = metrics(result)
        t0 = time.perf_counter()
        # BS against itself has no difference to report (NaN CI columns)
        vs = versus_bs(result, ref, s0, st, day, block, bootstrap=m != "bs")
        out.bootstrap_s += time.perf_counter() - t0
        out.rows.append({**label, "model": name, "mode": mode,
                         **{k: met[k] for k in _METRICS}, **vs,
                         "fits_on_bound": np.nan if on_bound is None else on_bound,
                         "gate": gate_cell(m, agents, labels)})
        tag = display_name(name if mode == "surface-delta" else f"{name} ({mode})",
                           labels.get(m, ""))
        out.pnls[tag] = np.asarray(result.pnl)
        out.cost_risk.append({"model": tag, "avg_cost": met["avg_cost"],
                              "rmse_before_cost": met["rmse_before_cost"]})

    for m in models:
        if m == "bs":
            record(m, "surface-delta", ref)
            continue
        if m in PARAMETRIC:
            fit = fitters[m](episodes.anchor, n_iter=config.calib_iters, dtype=dtype)
            record(m, "surface-delta", backtest(episodes, model_delta_fn, config.cost,
                                                params=fit))
            continue
        ta = agents[m]
        method = config.surface_methods[0]
        fn, sf = fit_agent_surface(ta, episodes.anchor, method, config,
                                   anchor_tau=HEDGING_ANCHOR_TAU)
        on_bound = bound_counts(sf.sigma, sf.mu, *surface_bounds(sf))["on_bound"]
        out.report.setdefault("fits_on_bound", {})[MODEL_LABELS[m]] = on_bound
        sigma, mu = jnp.asarray(sf.sigma, dtype), jnp.asarray(sf.mu, dtype)
        record(m, "surface-delta", backtest(episodes, surface_delta_fn(fn, method),
                                            config.cost,
                                            params=path_params(sf, episodes.tau[:, 0], dtype)),
               on_bound)
        positions = policy_positions(ta.agent.hedger(ta.state, ta.hparams), episodes, sigma,
                                     mu, config.cost)
        record(m, "policy", backtest(episodes, positions, config.cost), on_bound)
    return out


# ----------------------------------------------------------------------------- the run
def load_inputs(request: StudyRequest) -> dict:
    """Load and validate every requested file before any work: ``{(asset, period):
    PeriodData}``. A bad file raises ValueError (one line naming it); bad rows are dropped
    and counted in each ``PeriodData.report``."""
    from jaxhedge.data import load_period

    return {(a, p): load_period(request.data_dir, a, p)
            for p in request.periods for a in request.assets}


def drop_rows(inputs: dict) -> list[dict]:
    """``drops.csv`` rows: one (file, reason, count) per reason a file's rows were dropped."""
    from jaxhedge.data.loader import shared_file

    return [{"file": shared_file(".", a, p).name, "reason": reason, "count": n}
            for (a, p), pdata in inputs.items() for reason, n in pdata.report.counts.items()]


def run_study(request: StudyRequest, config: StudyConfig, agents: dict, log=print,
              progress=None, inputs: dict | None = None, gate_spec=None) -> dict:
    """Run the requested parts and write, under ``request.out``:

    ``static_ivrmse.csv|.md`` (STATIC_COLUMNS), ``hedging.csv|.md`` (HEDGING_COLUMNS),
    ``summary.md`` (excluded agents, fits on a bound, the verdict against BS with CIs,
    winners and static-vs-hedging rank correlations), ``figures/pnl_cdf_<asset>_<period>.png``
    and ``figures/cost_risk_<asset>_<period>.png``, ``drops.csv`` (file, reason, count:
    every input row dropped by validation) and ``study.json`` (request, config, agents and
    their gate results, per-file drop reports, per-slice episode counts, skip reasons and
    bootstrap block lengths, surface fits on a bound, timings, provenance). Returns the
    study.json content.

    Every agent in ``agents`` (trained by ``reproduce`` or loaded from ``--agents``) goes
    through the sanity gates first (:func:`jaxhedge.reproduce.gating.gate_agents`, with
    ``gate_spec``); a failing one is marked in every table and legend and left out of
    winners, rank correlations and the verdict.

    ``inputs``: the files already loaded by :func:`load_inputs` (else loaded here, all of
    them before any computation).

    ``progress(done, total, label)`` is called after each unit of work.
    """
    from jaxhedge.backtest import SLICES
    from jaxhedge.report.paper import cost_risk_map, pnl_cdf_grid
    from jaxhedge.reproduce.gating import gate_agents
    from jaxhedge.runinfo import atomic_write_json, atomic_write_text

    out = Path(request.out)
    t_start = time.perf_counter()
    combos = [(a, p) for p in request.periods for a in request.assets]
    n_units = len(combos) * (("static" in request.parts) + 6 * ("hedging" in request.parts))
    done = 0
    static_tables, hedging_rows, slices_info, timings, bounds = [], [], {}, {}, []

    if inputs is None:
        inputs = load_inputs(request)
    t0 = time.perf_counter()
    verdicts = gate_agents(agents, gate_spec)
    timings["gates"] = time.perf_counter() - t0
    labels = {m: v.label for m, v in verdicts.items()}
    boot_s = 0.0

    def tick(label):
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, n_units, label)

    for asset, period in combos:
        pdata = inputs[(asset, period)]
        tag = f"{asset} {period}"
        if "static" in request.parts:
            t0 = time.perf_counter()
            static_tables.append(static_part(pdata, request.models, agents, config,
                                             bounds_out=bounds))
            timings[f"static {tag}"] = time.perf_counter() - t0
            tick(f"{tag} static fit")
        if "hedging" in request.parts:
            pnls, points = {}, []
            t0 = time.perf_counter()
            for bucket, target in SLICES:
                res = hedging_part(pdata, bucket, target, request.models, agents, config,
                                   labels)
                hedging_rows += res.rows
                boot_s += res.bootstrap_s
                slices_info[f"{tag} {bucket}d K/F={target:.2f}"] = res.report
                if res.pnls:
                    pnls[(bucket, target)] = res.pnls
                points += [{**p, "label": f"{bucket}d {target:.2f}"} for p in res.cost_risk]
                tick(f"{tag} hedging {bucket}d K/F={target:.2f}")
            timings[f"hedging {tag}"] = time.perf_counter() - t0
            if pnls:
                pnl_cdf_grid(pnls, out / "figures" / f"pnl_cdf_{asset}_{period}.png",
                             title=f"{asset.upper()} {period}: terminal P&L per slice")
                cost_risk_map(points, out / "figures" / f"cost_risk_{asset}_{period}.png",
                              title=f"{asset.upper()} {period}: cost vs before-cost risk")
    timings["bootstrap"] = boot_s

    static = _static_frame(static_tables, bounds, agents, labels)
    hedging = pd.DataFrame(hedging_rows, columns=HEDGING_COLUMNS)
    _write_tables(out, request, config, static, hedging)
    atomic_write_text(out / "drops.csv", pd.DataFrame(
        drop_rows({c: inputs[c] for c in combos}),
        columns=["file", "reason", "count"]).to_csv(index=False))
    info = _study_json(request, config, agents, verdicts, inputs, combos, slices_info,
                       bounds, timings, t_start)
    atomic_write_json(out / "study.json", info)
    return info


def _static_frame(tables, bounds, agents, labels) -> pd.DataFrame:
    """The static rows with the fits-on-bound counts of their bucket and the gate column."""
    if not tables:
        return pd.DataFrame(columns=STATIC_COLUMNS)
    static = pd.concat(tables, ignore_index=True)
    keys = ["period", "asset", "bucket_days", "model"]
    counts = (pd.DataFrame(bounds)[keys + ["n", "on_bound"]] if bounds
              else pd.DataFrame(columns=keys + ["n", "on_bound"]))
    counts = counts.rename(columns={"n": "n_fits", "on_bound": "fits_on_bound"})
    static = static.merge(counts, on=keys, how="left")
    static["gate"] = [gate_cell(model_of_label(m), agents, labels) for m in static["model"]]
    return static[STATIC_COLUMNS]


def _write_tables(out: Path, request, config, static, hedging) -> None:
    from jaxhedge.reproduce.summary import (hedging_markdown, static_markdown,
                                            summary_markdown)
    from jaxhedge.runinfo import atomic_write_text

    if "static" in request.parts:
        atomic_write_text(out / "static_ivrmse.csv", static.to_csv(index=False))
        atomic_write_text(out / "static_ivrmse.md", static_markdown(static))
    if "hedging" in request.parts:
        atomic_write_text(out / "hedging.csv", hedging.to_csv(index=False))
        atomic_write_text(out / "hedging.md", hedging_markdown(hedging, config.cost))
    atomic_write_text(out / "summary.md", summary_markdown(static, hedging))


def _study_json(request, config, agents, verdicts, inputs, combos, slices_info, bounds,
                timings, t_start) -> dict:
    from jaxhedge.data.loader import shared_file
    from jaxhedge.reproduce import versus_bs
    from jaxhedge.runinfo import run_metadata

    return {"request": {k: (str(v) if isinstance(v, Path) else v)
                        for k, v in dataclasses.asdict(request).items()},
            "config": dataclasses.asdict(config),
            "agents": {m: str(a.run_dir) for m, a in agents.items()},
            "gates": {m: v.as_json() for m, v in verdicts.items()},
            "surface_bounds": {"rows": bounds, "rtol": BOUND_RTOL},
            "bootstrap": {"n_boot": versus_bs.N_BOOT, "seed": versus_bs.BOOT_SEED,
                          "level": versus_bs.LEVEL, "min_blocks": versus_bs.MIN_BLOCKS,
                          "block": "median n_hedges start days, capped at "
                                   "period days // min_blocks (per slice in slices)"},
            "drops": {shared_file(".", a, p).name: inputs[(a, p)].report.to_dict()
                      for a, p in combos},
            "slices": slices_info, "timings_s": timings,
            "wall_s": time.perf_counter() - t_start, **run_metadata()}
