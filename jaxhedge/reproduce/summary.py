"""Who wins each slice, and does the static-fit ranking predict the hedging ranking?

Inputs are the two result tables of ``jaxhedge reproduce``:

* static: columns ``period, asset, bucket_days, group, model, ivrmse_x1e3, n_days`` and,
  from the study, ``n_fits, fits_on_bound, gate``;
* hedging: columns ``period, asset, bucket_days, target_moneyness, model, mode, rmse,
  avg_cost, shortfall_prob, es_5, es_10, n_hedges`` and, from the study, the directional
  and paired-bootstrap columns of :mod:`.versus_bs`, ``fits_on_bound`` and ``gate``.

Every metric here is lower-is-better. Ties share the win (listed together).

Gates: a row whose ``gate`` reads ``GATE FAILED: ...`` is an agent that failed a sanity
gate. It stays in the tables, marked, but is left out of winners, rank correlations and
the verdict; ``summary.md`` opens with the excluded agents and the reason.

Rank correlation (decision, documented in experiments/paper/README.md): per period x
asset, each model gets a static score = its IVRMSE on the ``all`` group averaged over the
buckets, and a hedging score per metric = the metric averaged over the six hedging slices
(3 buckets x 2 target moneyness) in ``surface-delta`` mode (the papers' protocol). The
Spearman correlation of the two scores across models (ties get average ranks) is the
"how well does static fit predict hedging" number: +1 = the better fit always hedges
better, 0 = no relation, -1 = reversed. With five models a single correlation is coarse,
so the per-bucket correlations (static IVRMSE of bucket b against the hedging metric of
bucket b averaged over the two moneyness targets) are reported beside it.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from jaxhedge.report.tables import frame_markdown
from jaxhedge.reproduce.verdict import hedging_markdown, verdict_markdown

__all__ = ["spearman", "winners", "rank_correlations", "markdown", "summary_markdown",
           "gated_out", "ranked", "static_markdown", "hedging_markdown", "bounds_markdown"]

HEDGING_METRICS = ("rmse", "avg_cost", "shortfall_prob", "es_5", "es_10")
SLICE_COLUMNS = ("period", "asset", "bucket_days", "target_moneyness")
RANKED_MODE = "surface-delta"


def spearman(x, y) -> float:
    """Spearman rank correlation with average ranks for ties; NaN pairs are dropped.

    NaN when fewer than 3 pairs remain or either side is constant (no ranking to compare).

    >>> spearman([1, 2, 3, 4], [10, 20, 30, 40])
    1.0
    >>> spearman([1, 2, 3], [3, 2, 1])
    -1.0
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    if len(x) < 3:
        return float("nan")
    rx = pd.Series(x).rank(method="average").to_numpy()
    ry = pd.Series(y).rank(method="average").to_numpy()
    if rx.std() == 0 or ry.std() == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])


def winners(frame: pd.DataFrame, by: list[str], metrics, model_col: str = "model") -> pd.DataFrame:
    """One row per group of ``by``: the model(s) with the lowest value of each metric.

    Rows with a NaN metric do not compete; a group where every value is NaN gets "".
    """
    rows = []
    for key, g in frame.groupby(by, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        row = dict(zip(by, key))
        for m in metrics:
            vals = g[m].to_numpy(float)
            ok = np.isfinite(vals)
            if not ok.any():
                row[m] = ""
                continue
            best = vals[ok].min()
            row[m] = "+".join(sorted(g[model_col][ok & (vals <= best)].astype(str)))
        rows.append(row)
    return pd.DataFrame(rows, columns=[*by, *metrics])


def rank_correlations(static: pd.DataFrame, hedging: pd.DataFrame,
                      mode: str = RANKED_MODE) -> pd.DataFrame:
    """Spearman(static score, hedging score) across models, per period x asset.

    Columns: period, asset, scope ("all buckets" or "<b>d"), n_models, and one
    ``rho_<metric>`` per hedging metric. Only models present in both tables count.
    """
    st = static[static["group"] == "all"]
    hd = hedging[hedging["mode"] == mode]
    out = []
    for (period, asset), hg in hd.groupby(["period", "asset"], sort=True):
        sg = st[(st["period"] == period) & (st["asset"] == asset)]
        scopes = [("all buckets", None)] + [(f"{int(b)}d", b)
                                            for b in sorted(hg["bucket_days"].unique())]
        for scope, bucket in scopes:
            s = sg if bucket is None else sg[sg["bucket_days"] == bucket]
            h = hg if bucket is None else hg[hg["bucket_days"] == bucket]
            s_score = s.groupby("model")["ivrmse_x1e3"].mean()
            h_score = h.groupby("model")[list(HEDGING_METRICS)].mean()
            models = sorted(set(s_score.index) & set(h_score.index))
            row = {"period": period, "asset": asset, "scope": scope, "n_models": len(models)}
            for m in HEDGING_METRICS:
                row[f"rho_{m}"] = spearman(s_score.reindex(models), h_score[m].reindex(models))
            out.append(row)
    return pd.DataFrame(out)


def markdown(frame: pd.DataFrame, floatfmt: str = "{:.3f}") -> str:
    """A pandas frame as a GitHub markdown table (NaN cells left empty)."""
    return frame_markdown(frame, floatfmt)


def gated_out(*frames: pd.DataFrame) -> dict[str, str]:
    """``{model: "GATE FAILED: ..."}`` of every failed agent in the tables."""
    out = {}
    for f in frames:
        if "gate" in f:
            bad = f[f["gate"].astype(str).str.startswith("GATE FAILED")]
            out.update(dict(zip(bad["model"], bad["gate"])))
    return out


def ranked(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows that may be ranked: every row but those of gate-failed agents."""
    if "gate" not in frame:
        return frame
    return frame[~frame["gate"].astype(str).str.startswith("GATE FAILED")]


def static_markdown(static: pd.DataFrame) -> str:
    """``static_ivrmse.md``: the IVRMSE table (models in table order, failed agents'
    columns marked) and the RL surface fits sitting on a bound."""
    from jaxhedge.reproduce.gating import display_name

    wide = static.pivot_table(index=["period", "asset", "bucket_days", "group"],
                              columns="model", values="ivrmse_x1e3", sort=False)
    wide = wide[[m for m in static["model"].unique() if m in wide]]
    marks = gated_out(static)
    wide = wide.rename(columns={m: display_name(m, marks.get(m, "")) for m in wide.columns})
    return ("# IVRMSE x1e3 (equal-day average)\n\n" + markdown(wide.reset_index(), "{:.1f}")
            + "\n" + "\n".join(bounds_markdown(static)))


def bounds_markdown(static: pd.DataFrame) -> list[str]:
    """Lines: per period x asset x bucket x RL model, the (day, bucket) fits on a bound."""
    if "fits_on_bound" not in static:
        return []
    b = static.dropna(subset=["n_fits"]).drop_duplicates(
        ["period", "asset", "bucket_days", "model"])
    if not len(b):
        return []
    b = b[["period", "asset", "bucket_days", "model", "n_fits", "fits_on_bound"]].copy()
    b["share"] = b["fits_on_bound"] / b["n_fits"]
    return ["## RL surface fits sitting on a bound of (sigma, mu)", "",
            "Per (day, bucket) slice: a fit on a bound reaches the market only at the edge of "
            "its inputs (counted per model, period, asset, bucket).", "",
            markdown(b.astype({"n_fits": int, "fits_on_bound": int}), "{:.2f}"), ""]


def summary_markdown(static: pd.DataFrame, hedging: pd.DataFrame) -> str:
    """The ``summary.md`` text: agents excluded by the gates, RL fits on a bound, the
    verdict against BS, winners per slice per metric and the rank correlations."""
    parts = ["# Static IV fit vs after-cost hedging: summary", ""]
    marks = gated_out(static, hedging)
    if marks:
        parts += ["## Excluded from winners, rank correlations and the verdict", ""]
        parts += [f"- {m}: {why} (kept in the tables, marked)" for m, why in marks.items()]
        parts.append("")
    parts += bounds_markdown(static)
    if len(hedging):
        parts += verdict_markdown(ranked(hedging))
    static, hedging = ranked(static), ranked(hedging)
    if len(static):
        sw = winners(static, ["period", "asset", "bucket_days", "group"], ["ivrmse_x1e3"])
        parts += ["## Best static fit (lowest IVRMSE x1e3) per period, asset, bucket, group",
                  "", markdown(sw), ""]
    if len(hedging):
        for mode, g in hedging.groupby("mode", sort=True):
            hw = winners(g, list(SLICE_COLUMNS), list(HEDGING_METRICS))
            parts += [f"## Best hedger per slice ({mode} mode; lower is better)", "",
                      "Lowest value, whether or not the difference is significant (the "
                      "verdict above says which are).", "", markdown(hw), ""]
    if len(static) and len(hedging):
        rc = rank_correlations(static, hedging)
        parts += ["## Does static-fit rank predict hedging rank?", "",
                  f"Spearman correlation across models between IVRMSE (group `all`) and each "
                  f"hedging metric in `{RANKED_MODE}` mode; +1 = the better fit always hedges "
                  f"better, 0 = no relation, -1 = reversed.", "", markdown(rc, "{:+.2f}"), ""]
        headline = rc[rc["scope"] == "all buckets"]
        for _, r in headline.iterrows():
            parts.append(f"- {r['period']} {r['asset']}: rho(IVRMSE, ES 5%) = "
                         f"{_fmt(r['rho_es_5'])}, rho(IVRMSE, RMSE) = {_fmt(r['rho_rmse'])}, "
                         f"rho(IVRMSE, cost) = {_fmt(r['rho_avg_cost'])} "
                         f"over {r['n_models']} models.")
        parts += [f"- {m} left out of these correlations: {why}" for m, why in marks.items()]
        parts.append("")
    return "\n".join(parts)


def _fmt(x: float) -> str:
    return "n/a" if not np.isfinite(x) else f"{x:+.2f}"
