"""``jaxhedge shadow``: the study's real SPY/XOP episodes replayed through the desk's advisor.

For one asset-period and its hedging slices (bucket 14/28/56 d x target K/F 1.00/1.03),
:func:`shadow_replay` takes the episodes the study's policy mode hedges
(:func:`jaxhedge.data.build_episodes`, same arguments as
:func:`jaxhedge.reproduce.study.hedging_part`), calibrates each episode's (sigma, mu) on its
start-day anchor slice with the study's own calibration call
(:func:`jaxhedge.reproduce.study.fit_agent_surface`: the study config's surface method,
iterations and precision), then walks the
calendar: on every trading day the book is every live short call of every slice, and ONE
call of :func:`jaxhedge.serving.advisor.advise_observations` (the bundle's hedge behind the
position guards, the decision step ``advise`` uses) decides all of them. Each policy is
shown the study's observation: spot S/K and strike 1, tau, elapsed tau_0 - tau, the start
day's r and q_hat, the calibrated (sigma, mu), eps and its own previous (guarded) position.
Each slice's positions are then settled on the single ledger (:func:`jaxhedge.backtest.
backtest`) and scored with the study's metrics (:func:`jaxhedge.backtest.metrics`).

With no guardrail tripped and ``x64 = false`` this is the study's policy mode, to the bit
(``tests/serving/test_shadow.py``). Every guarded decision (ood, sanity, distance) is
counted per slice and listed. Pre-trade order limits (integer shares of an aggregated desk
book) do not apply to per-option hedge ratios and are not replayed (docs/desk.md).

The calibration needs the agent's differentiable price surface: a bundle's ``jax.export``
carries no derivatives, so the surface comes from the run the bundle was exported from
(its card's ``source``, or ``--run``), checked against the bundle's params sha256.
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from jaxhedge.serving.advisor import advise_observations
from jaxhedge.serving.bundle import Bundle, load_bundle

__all__ = ["ShadowResult", "shadow_replay", "SHADOW_COLUMNS", "OVERRIDE_COLUMNS",
           "bundle_surface", "episode_frame", "shadow_arguments", "run_shadow"]

METRICS = ["rmse", "avg_cost", "shortfall_prob", "es_5", "es_10", "n_hedges"]
SHADOW_COLUMNS = (["period", "asset", "bucket_days", "target_moneyness", "model", "mode"]
                  + METRICS + ["decisions", "overridden", "ood", "sanity", "distance"])
OVERRIDE_COLUMNS = ["date", "bucket_days", "target_moneyness", "start_date", "expiry",
                    "flags", "agent_hedge", "bs_delta", "used_hedge"]
GUARDS = ("ood", "sanity", "distance")
OUTPUT_FILES = ("shadow.csv", "pnl.csv", "overrides.csv", "shadow.json")


@dataclasses.dataclass
class ShadowResult:
    """rows: one per slice (SHADOW_COLUMNS); overrides: one per guarded decision
    (OVERRIDE_COLUMNS); slices: per slice the episode count and the skipped start days;
    positions / results / calibration / episodes: per (bucket, target) the (n, T) hedges,
    the ledger's :class:`~jaxhedge.backtest.BacktestResult`, the calibrated (sigma, mu) and
    the :class:`~jaxhedge.data.EpisodeBatch`; days, calls: trading days replayed and
    advisor calls made (one per day)."""

    rows: list[dict]
    overrides: list[dict]
    slices: dict
    positions: dict
    results: dict
    calibration: dict
    episodes: dict
    days: int
    calls: int
    wall_s: float


def _step_days(episodes) -> np.ndarray:
    """(n, T) calendar day (days since 1970) of every rebalancing date: the start day plus
    the accumulated ACT/365 gaps ``dt`` (whole days by construction)."""
    start = pd.to_datetime(list(episodes.start_dates)).to_numpy("datetime64[D]").astype(np.int64)
    gaps = np.rint(np.asarray(episodes.dt, np.float64) * 365.0).astype(np.int64)
    offset = np.concatenate([np.zeros((len(start), 1), np.int64),
                             np.cumsum(gaps, axis=1)[:, :-1]], axis=1)
    return start[:, None] + offset


def _static_obs(episodes, sigma, mu, cost) -> np.ndarray:
    """(n, T, 12) observations of the study's policy mode but the position (column 10),
    computed in the episodes' dtype and rounded once to the bundle's float32."""
    dtype = np.dtype(episodes.spots.dtype)
    tau = np.asarray(episodes.tau, dtype)[:, :-1]
    tau = np.where(tau > 0, tau, dtype.type(1e-6))  # as the study: padded dates may sit at 0
    spots = np.asarray(episodes.spots, dtype)[:, :-1]
    n, t = tau.shape
    col = lambda v: np.broadcast_to(np.asarray(v, dtype).reshape(-1, 1), (n, t))  # noqa: E731
    one = np.ones((n, t), dtype)
    fields = [spots / col(episodes.strike), one, tau, tau[:, :1] - tau, col(episodes.rate),
              col(episodes.q_hat), col(mu), col(sigma), dtype.type(cost) * one, one,
              0 * one, one]
    return np.stack(fields, axis=-1).astype(np.float32)


def _flag_names(flags, r) -> list[str]:
    """``ood:<input>`` for each input out of the card's range, then sanity, distance."""
    ood = [k[4:] for k in sorted(flags) if k.startswith("ood_") and flags[k][r]]
    return [f"ood:{k}" for k in ood] + [k for k in GUARDS[1:] if flags[k][r]]


def shadow_replay(bundle, pdata, surface, *, slices=None, config=None,
                  limits=None) -> ShadowResult:
    """Replay ``pdata``'s episodes through ``bundle`` day by day (module docstring).

    Args:
      bundle: a :class:`Bundle` or its directory.
      pdata: a :class:`jaxhedge.data.PeriodData` (``load_period``).
      surface: the agent with its calibration surface, a
        :class:`jaxhedge.reproduce.agents.TrainedAgent` (:func:`bundle_surface`).
      slices: (bucket days, target K/F) pairs (default the study's six).
      config: the study's :class:`~jaxhedge.reproduce.config.StudyConfig` (eps, the surface
        fit method and its iterations, precision); default ``experiments/paper/study.toml``.
      limits: DeskConfig or TOML path; its ``advisor.max_delta_distance`` guards here.
    """
    from jaxhedge.backtest import SLICES, backtest, metrics
    from jaxhedge.calibrate.surface import HEDGING_ANCHOR_TAU
    from jaxhedge.data import build_episodes
    from jaxhedge.reproduce.config import load_study_config
    from jaxhedge.reproduce.study import fit_agent_surface

    t0 = time.perf_counter()
    config = load_study_config() if config is None else config
    cost = config.cost
    dtype = jnp.float64 if config.x64 else jnp.float32
    bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
    slices = tuple(SLICES if slices is None else slices)
    built, info = [], {}
    for bucket, target in slices:
        episodes, report = build_episodes(pdata.chain, start=pdata.start, end=pdata.end,
                                          bucket_days=bucket, target_km=target, dtype=dtype,
                                          slice_key=(pdata.asset, pdata.period, bucket, target))
        info[f"{bucket}d K/F={target:.2f}"] = {"episodes": int(episodes.n_episodes),
                                               "skipped": report.to_dict()}
        if episodes.n_episodes == 0:
            continue
        # the study's own calibration call (hedging_part), so the two cannot drift apart
        _, fit = fit_agent_surface(surface, episodes.anchor, config.surface_methods[0], config,
                                   anchor_tau=HEDGING_ANCHOR_TAU)
        obs = _static_obs(episodes, fit.sigma, fit.mu, cost)
        built.append(((bucket, target), episodes, obs, _step_days(episodes), fit.sigma,
                      fit.mu))

    if not built:
        return ShadowResult([], [], info, {}, {}, {}, {}, 0, 0, time.perf_counter() - t0)
    # one flat table of decisions (slice j, episode i, date t), grouped by calendar day
    parts = []
    for j, (_, e, obs, d, _, _) in enumerate(built):
        m = np.asarray(e.step_mask)
        i, t = np.nonzero(m)
        parts.append((np.full(len(i), j), i, t, d[m], obs[m]))
    j_, i_, t_, day, x = (np.concatenate(a) for a in zip(*parts))
    first = np.cumsum([0] + [b[1].n_episodes for b in built])
    ep = first[j_] + i_  # global episode index
    order = np.lexsort((ep, day))  # by day: an episode has one rebalancing date per day
    held = np.zeros(first[-1], np.float32)
    used, agent, bs = (np.zeros(len(x), np.float32) for _ in range(3))
    flags: dict[str, np.ndarray] = {}
    days, calls = np.unique(day), 0
    for rows in np.split(order, np.searchsorted(day[order], days)[1:]):
        x[rows, 10] = held[ep[rows]]  # each policy's own previous (guarded) position
        dec = advise_observations(bundle, x[rows], limits)
        calls += 1
        used[rows], agent[rows], bs[rows] = dec["used_hedge"], dec["agent_hedge"], dec["bs_delta"]
        for k, v in dec["flags"].items():  # ood, sanity, distance and ood_<input>
            flags.setdefault(k, np.zeros(len(x), bool))[rows] = v
        held[ep[rows]] = used[rows]

    rows_out, overrides, positions, results = [], [], {}, {}
    any_flag = flags["ood"] | flags["sanity"] | flags["distance"]
    for j, ((bucket, target), e, *_) in enumerate(built):
        mine = j_ == j
        pos = np.full(np.asarray(e.step_mask).shape, np.nan, np.float32)
        pos[i_[mine], t_[mine]] = used[mine]
        for t in range(pos.shape[1]):  # padded dates hold the position, as the study's scan
            prev = pos[:, t - 1] if t else np.zeros(len(pos), np.float32)
            pos[:, t] = np.where(np.isnan(pos[:, t]), prev, pos[:, t])
        result = backtest(e, jnp.asarray(pos, e.spots.dtype), cost)
        met = metrics(result)
        positions[(bucket, target)], results[(bucket, target)] = pos, result
        rows_out.append({"period": pdata.period, "asset": pdata.asset, "bucket_days": bucket,
                         "target_moneyness": target, "model": bundle.card["agent"],
                         "mode": "shadow", **{k: met[k] for k in METRICS},
                         "decisions": int(mine.sum()),
                         "overridden": int((any_flag & mine).sum()),
                         **{k: int((flags[k] & mine).sum()) for k in GUARDS}})
        for r in np.flatnonzero(any_flag & mine):
            i = i_[r]
            overrides.append({
                "date": str(np.datetime64(int(day[r]), "D")), "bucket_days": bucket,
                "target_moneyness": target, "start_date": e.start_dates[i],
                "expiry": e.expiries[i], "flags": "|".join(_flag_names(flags, r)),
                "agent_hedge": float(agent[r]), "bs_delta": float(bs[r]),
                "used_hedge": float(used[r])})
    return ShadowResult(rows_out, sorted(overrides, key=lambda o: o["date"]), info, positions,
                        results, {b[0]: (np.asarray(b[4]), np.asarray(b[5])) for b in built},
                        {b[0]: b[1] for b in built}, int(len(days)), calls,
                        time.perf_counter() - t0)


def episode_frame(res: ShadowResult) -> pd.DataFrame:
    """One row per episode: slice, start day, expiry, terminal P&L and cost (the
    ledger's, in the episodes' precision)."""
    frames = []
    for (bucket, target), r in res.results.items():
        e = res.episodes[(bucket, target)]
        frames.append(pd.DataFrame({
            "bucket_days": bucket, "target_moneyness": target,
            "start_date": list(e.start_dates), "expiry": list(e.expiries),
            "pnl": np.asarray(r.pnl), "cost": np.asarray(r.cost)}))
    cols = ["bucket_days", "target_moneyness", "start_date", "expiry", "pnl", "cost"]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=cols)


# ----------------------------------------------------------------------------- the surface
_SURFACES: dict[tuple, object] = {}


def bundle_surface(bundle: Bundle, run_dir=None):
    """The agent of ``bundle`` with its calibration surface (``agent_price_fn`` at eps = 0, as the
    study's :mod:`jaxhedge.reproduce.agents`) of the run it was exported from (``run_dir``,
    else the card's ``source``); ValueError unless that run's parameters are the bundle's."""
    from jaxhedge.calibrate.surface import agent_price_fn
    from jaxhedge.reproduce.agents import TrainedAgent, model_of_agent
    from jaxhedge.runs import RunDirError, load_trained
    from jaxhedge.serving.bundle import _leaves, params_sha256

    source = bundle.card.get("source") or {}
    member = int(source.get("member", 0)) if isinstance(source, dict) else 0
    if run_dir is None:
        run_dir = source.get("run_dir") if isinstance(source, dict) else None
        if run_dir is None:
            raise ValueError(f"--run: bundle {bundle.path} names no source run (a "
                             f"{bundle.card.get('kind', 'classical')} bundle); give the run it "
                             f"was exported from (its price surface calibrates sigma, mu)")
    key = (bundle.sha, str(Path(run_dir).resolve()), member)
    if key in _SURFACES:  # the same object: fit_surface compiles once per surface (static arg)
        return _SURFACES[key]
    try:
        agent, hparams, state = load_trained(run_dir, member)
    except RunDirError as err:
        raise ValueError(f"--run: {str(err).splitlines()[0]}") from None
    params = jax.tree.map(np.asarray, {"hedger": agent.hedger(state, hparams), "state": state,
                                       "hparams": hparams})
    if params_sha256(_leaves(params)[0]) != bundle.card.get("params_sha256"):
        raise ValueError(f"--run: {run_dir} member {member} is not the run bundle "
                         f"{bundle.path} was exported from (params sha256 differs)")
    _SURFACES[key] = TrainedAgent(model_of_agent(agent), Path(run_dir), agent, hparams, state,
                                  agent_price_fn(agent, state, cost=0.0))
    return _SURFACES[key]


# ----------------------------------------------------------------------------- the command
def shadow_arguments(p) -> None:
    p.add_argument("--bundle", type=Path, required=True)
    p.add_argument("--data", type=Path, default=None,
                   help="folder with the shared option files (default: $JAXHEDGE_DATA_DIR or "
                        "../shared/data/options)")
    p.add_argument("--asset", required=True, help="spy or xop")
    p.add_argument("--period", required=True, help="2020q1 or 2025q2")
    p.add_argument("--slices", default=None, metavar="B:K,...",
                   help="bucket days:target K/F pairs, e.g. 28:1.00,56:1.03 (default all six)")
    p.add_argument("--run", type=Path, default=None, metavar="RUN_DIR",
                   help="the run the bundle was exported from (default: its model card's)")
    p.add_argument("--limits", type=Path, default=None,
                   help="limits TOML ([advisor] max_delta_distance applies)")
    p.add_argument("--config", type=Path, default=None,
                   help="study TOML for cost, calib_iters, x64 (default experiments/paper/"
                        "study.toml)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a study config field, e.g. x64=false")
    p.add_argument("--out", type=Path, default=None,
                   help="also write shadow.csv, pnl.csv, overrides.csv and shadow.json here")


def _slices(text):
    from jaxhedge.backtest import SLICES

    if text is None:
        return SLICES
    allowed = ", ".join(f"{b}:{k:.2f}" for b, k in SLICES)
    out = []
    for item in (t.strip() for t in text.split(",") if t.strip()):
        try:
            b, k = item.split(":")
            pair = (int(b), float(k))
        except ValueError:
            pair = None
        if pair not in SLICES:
            raise ValueError(f"--slices: unknown slice {item!r}; allowed: {allowed}")
        out.append(pair)
    if not out:
        raise ValueError(f"--slices: give at least one of {allowed}")
    return tuple(dict.fromkeys(out))


def _choice(field, value, allowed):
    v = value.strip().lower()
    if v not in allowed:
        raise ValueError(f"{field}: unknown {value!r}; allowed: {', '.join(allowed)}")
    return v


def run_shadow(args) -> int:
    """``jaxhedge shadow``: bad input is a one-line ValueError raised before any work."""
    from jaxhedge.data import ASSETS, PERIODS, load_period
    from jaxhedge.reproduce.command import default_data_dir
    from jaxhedge.reproduce.config import load_study_config
    from jaxhedge.serving import guardrails as gr
    from jaxhedge.validate import check_output_dir

    asset = _choice("--asset", args.asset, ASSETS)
    period = _choice("--period", args.period, tuple(PERIODS))
    slices = _slices(args.slices)
    data = args.data if args.data is not None else default_data_dir()
    if not Path(data).is_dir():
        raise ValueError(f"--data: no directory at {data} (give the folder holding the shared "
                         f"option files, or set $JAXHEDGE_DATA_DIR)")
    if args.out is not None:  # writable, not a system directory, no directory in the way
        check_output_dir("--out", args.out, OUTPUT_FILES)
    config = load_study_config(args.config, args.overrides)
    limits = gr.load_limits(args.limits) if args.limits is not None else None
    bundle = load_bundle(args.bundle)
    surface = bundle_surface(bundle, args.run)
    try:
        pdata = load_period(data, asset, period)
    except FileNotFoundError as err:
        raise ValueError(f"--data: {err}") from None
    x64_before = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", bool(config.x64))  # the study's precision
    try:
        res = shadow_replay(bundle, pdata, surface, slices=slices, config=config,
                            limits=limits)
    finally:
        jax.config.update("jax_enable_x64", x64_before)
    table = pd.DataFrame(res.rows, columns=SHADOW_COLUMNS)
    print(table.drop(columns=["period", "asset", "model", "mode"]).to_string(
        index=False, float_format=lambda v: f"{v:.4g}"))
    n_over = int(table["overridden"].sum())
    print(f"{bundle.card['agent']} on {asset} {period}: {res.days} trading days, {res.calls} "
          f"advisor calls, {int(table['decisions'].sum())} decisions, {n_over} overridden by "
          f"a guardrail{' (metrics differ from the study policy mode)' if n_over else ''}; "
          f"{res.wall_s:.1f}s")
    if args.out is not None:
        from jaxhedge.runinfo import atomic_write_json, atomic_write_text, run_metadata

        atomic_write_text(args.out / "shadow.csv", table.to_csv(index=False))
        atomic_write_text(args.out / "overrides.csv", pd.DataFrame(
            res.overrides, columns=OVERRIDE_COLUMNS).to_csv(index=False))
        atomic_write_text(args.out / "pnl.csv", episode_frame(res).to_csv(index=False))
        atomic_write_json(args.out / "shadow.json", {
            "bundle": str(bundle.path), "bundle_sha": bundle.sha, "agent": bundle.card["agent"],
            "asset": asset, "period": period, "config": dataclasses.asdict(config),
            "limits": None if limits is None else dataclasses.asdict(limits),
            "slices": res.slices, "days": res.days, "advisor_calls": res.calls,
            "overridden": n_over, "wall_s": res.wall_s, **run_metadata()})
        print(f"wrote {args.out}/shadow.csv, pnl.csv, overrides.csv, shadow.json")
    return 0
