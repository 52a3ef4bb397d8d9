r"""Paired comparisons of two hedgers over the SAME episodes: block-bootstrap confidence
intervals of metric differences, and the directional exposure that can pass for a "win".

Why paired and why blocks. Two hedgers run on the same real-data episodes share every
market move, so the difference of their metrics has far less noise than either metric: the
bootstrap resamples episodes once and recomputes BOTH hedgers' metrics on the same draw.
Episodes that start on nearby days overlap in time (a 28-day hedge started on Monday and one
started on Tuesday see 27 common days), so they are not independent: resampling single
episodes would understate the noise. We resample START DAYS in circular moving blocks of
``block`` consecutive days (Künsch 1989) and keep every episode of a drawn day, which
preserves the dependence within a block.

A resample is represented by integer counts per start day, ``(n_boot, n_days)``, so every
replicate is a weighted statistic over the original episodes and the whole bootstrap is one
vmapped, jitted computation with static shapes.

Directional exposure. A short call hedged with too many shares gains when the underlying
rises: in a rally that looks like a smaller shortfall, but it is a bet, not a hedge.
:func:`directional_slope` regresses each episode's P&L on the underlying's return over the
episode; a hedge's slope should be near zero.

Shapes: ``pnl``, ``cost``: ``(n,)`` per episode; ``day``: ``(n,)`` integer start-day index in
``[0, n_days)`` (days in time order); counts ``(n_boot, n_days)``.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

#: Metrics compared by :func:`paired_bootstrap`, in table order.
PAIRED_METRICS = ("rmse", "mean_cost", "shortfall_prob", "es_5")


def block_counts(key, n_days: int, block: int, n_boot: int) -> jax.Array:
    """How often each start day is drawn in ``n_boot`` circular moving-block resamples.

    Each resample draws ``ceil(n_days / block)`` block starts uniformly, takes ``block``
    consecutive days (wrapping around) from each, and keeps the first ``n_days`` days, so
    every row sums to ``n_days``.

    >>> c = block_counts(jax.random.key(0), 10, 3, 4)
    >>> c.shape, [int(r) for r in c.sum(axis=1)]
    ((4, 10), [10, 10, 10, 10])
    """
    if n_days < 1 or block < 1 or n_boot < 1:
        raise ValueError(f"block_counts: need n_days, block, n_boot >= 1 "
                         f"(got {n_days}, {block}, {n_boot})")
    block = min(block, n_days)
    n_blocks = -(-n_days // block)
    starts = jax.random.randint(key, (n_boot, n_blocks), 0, n_days)
    days = (starts[..., None] + jnp.arange(block)) % n_days
    days = days.reshape(n_boot, -1)[:, :n_days]
    return jax.vmap(lambda d: jnp.bincount(d, length=n_days))(days)


def weighted_es(losses, weights, alpha):
    """Expected shortfall at tail probability ``alpha`` of ``losses`` under sample weights.

    The weighted analogue of :func:`jaxhedge.risk.expected_shortfall`: with equal weights it
    gives the same Acerbi-Tasche value (the top ``n alpha`` mass averaged exactly).

    >>> float(weighted_es(jnp.array([4.0, 3.0, 2.0, 1.0]), jnp.ones(4), 0.5))
    3.5
    """
    w = weights / jnp.sum(weights)
    order = jnp.argsort(-losses)
    l_sorted, w_sorted = losses[order], w[order]
    upto = jnp.cumsum(w_sorted)
    before = upto - w_sorted
    share = jnp.clip(jnp.minimum(upto, alpha) - before, 0.0, None)
    return jnp.sum(share * l_sorted) / alpha


def weighted_stats(pnl, cost, weights) -> jax.Array:
    """``(4,)``: RMSE, mean cost, shortfall probability and ES 5% of the shortfall, weighted.

    Same definitions as :func:`jaxhedge.risk.hedge_metrics` (``rmse``, ``mean_cost``,
    ``shortfall_prob``, ``es_5``) with episode ``i`` counted ``weights[i]`` times.
    """
    w = weights.astype(pnl.dtype)
    total = jnp.sum(w)
    mean = lambda x: jnp.sum(w * x) / total  # noqa: E731
    shortfall = jnp.maximum(-pnl, 0.0)
    return jnp.stack([jnp.sqrt(mean(pnl * pnl)), mean(cost),
                      mean((pnl < 0).astype(pnl.dtype)), weighted_es(shortfall, w, 0.05)])


@functools.partial(jax.jit, static_argnames=("n_days",))
def _replicates(pnl_a, cost_a, pnl_b, cost_b, day, counts, n_days: int):
    del n_days
    return jax.vmap(lambda c: _paired_diff(pnl_a, cost_a, pnl_b, cost_b, c[day]))(counts)


def _paired_diff(pnl_a, cost_a, pnl_b, cost_b, weights):
    # one vmapped computation over the pair, so identical hedgers differ by exactly 0
    stats = jax.vmap(weighted_stats, in_axes=(0, 0, None))(
        jnp.stack([pnl_a, pnl_b]), jnp.stack([cost_a, cost_b]), weights)
    return stats[0] - stats[1]


def paired_bootstrap(pnl_a, cost_a, pnl_b, cost_b, day, key, *, n_boot: int = 2000,
                     block: int = 5, level: float = 0.95) -> dict[str, dict[str, float]]:
    """Difference ``metric(a) - metric(b)`` with a paired block-bootstrap percentile CI.

    Args:
      pnl_a, cost_a, pnl_b, cost_b: ``(n,)`` per-episode P&L and cost of hedgers a and b on
        the same episodes (same order).
      day: ``(n,)`` start-day index of each episode in ``[0, n_days)``, time-ordered; days
        with no episode are allowed.
      key: PRNG key (same key, same intervals).
      n_boot, block, level: replicates, block length in start days, CI level.

    Returns:
      ``{metric: {"diff", "lo", "hi"}}`` for :data:`PAIRED_METRICS`; ``diff`` is the
      full-sample difference, ``lo``/``hi`` the percentile interval.
    """
    pnl_a, cost_a, pnl_b, cost_b = (jnp.asarray(x, jnp.result_type(float))
                                    for x in (pnl_a, cost_a, pnl_b, cost_b))
    day = np.asarray(day)
    n = pnl_a.shape[0]
    if not (cost_a.shape == pnl_b.shape == cost_b.shape == day.shape == (n,)) or n == 0:
        raise ValueError("paired_bootstrap: pnl_a, cost_a, pnl_b, cost_b and day must share "
                         f"one non-empty shape (n,) (got {pnl_a.shape}, {cost_a.shape}, "
                         f"{pnl_b.shape}, {cost_b.shape}, {day.shape})")
    if not 0 < level < 1:
        raise ValueError(f"paired_bootstrap: level must be in (0, 1) (got {level})")
    if day.min() < 0:
        raise ValueError("paired_bootstrap: day must be >= 0")
    n_days = int(day.max()) + 1
    counts = block_counts(key, n_days, block, n_boot)
    reps = np.asarray(_replicates(pnl_a, cost_a, pnl_b, cost_b, jnp.asarray(day), counts,
                                  n_days))
    ones = jnp.ones((n,), pnl_a.dtype)
    full = np.asarray(_paired_diff(pnl_a, cost_a, pnl_b, cost_b, ones))
    q = [(1 - level) / 2, (1 + level) / 2]
    out = {}
    for i, name in enumerate(PAIRED_METRICS):
        col = reps[:, i]
        col = col[np.isfinite(col)]
        lo, hi = (np.quantile(col, q) if col.size else (np.nan, np.nan))
        out[name] = {"diff": float(full[i]), "lo": float(lo), "hi": float(hi)}
    return out


def directional_slope(pnl, underlying_return) -> dict[str, float]:
    """OLS slope of the P&L on the underlying's return over each episode, and its R².

    ``pnl``, ``underlying_return``: ``(n,)``. A hedged short option's P&L should not depend
    on the direction of the market: a large |slope| (in P&L per unit of return) with a
    material R² means the "hedge" carried a directional position.

    >>> r = jnp.array([-0.1, 0.0, 0.1, 0.2])
    >>> d = directional_slope(3.0 * r + 1.0, r)
    >>> round(d["slope"], 6), round(d["r2"], 6)
    (3.0, 1.0)
    """
    x = np.asarray(underlying_return, np.float64)
    y = np.asarray(pnl, np.float64)
    if x.shape != y.shape or x.ndim != 1 or x.size < 2:
        raise ValueError("directional_slope: pnl and underlying_return must share a shape (n,) "
                         f"with n >= 2 (got {y.shape}, {x.shape})")
    xc, yc = x - x.mean(), y - y.mean()
    sxx, syy = float(xc @ xc), float(yc @ yc)
    if sxx == 0.0:
        return {"slope": float("nan"), "r2": float("nan")}
    slope = float(xc @ yc) / sxx
    r2 = (slope * slope * sxx / syy) if syy > 0 else float("nan")
    return {"slope": slope, "r2": float(r2)}


# --- simulated paths: independent, so the bootstrap block is one path ----------------------


def resample_indices(key, n: int, replicate) -> jax.Array:
    """``(n,)`` path indices of bootstrap replicate ``replicate``: ``n`` draws with
    replacement from ``range(n)``, keyed ``fold_in(key, replicate)`` (so any one replicate
    can be re-drawn on its own, and a batch of them is a ``vmap``).

    >>> i = resample_indices(jax.random.key(0), 5, 3)
    >>> i.shape, bool((i >= 0).all() & (i < 5).all())
    ((5,), True)
    """
    return jax.random.randint(jax.random.fold_in(key, replicate), (n,), 0, n)


#: Below this many paths the bootstrap's ES looks at every path; above, at the largest
#: :data:`TAIL_SHARE` of the losses only (:func:`path_replicates`).
EXACT_TAIL_PATHS = 4096
TAIL_SHARE = 0.15


@functools.partial(jax.jit, static_argnames=("n_boot", "batch"))
def path_replicates(pnls, costs, key, n_boot: int, batch: int = 16) -> jax.Array:
    """``(n_boot, H, 4)``: the :func:`weighted_stats` of ``H`` hedgers (``pnls``, ``costs``:
    ``(H, n)`` on the same paths) on every replicate, path ``i`` counted as often as
    :func:`resample_indices` drew it in that replicate.

    Same definitions as :func:`weighted_stats`, computed without a sort per replicate
    (3x slower with a sort per replicate; docs/stress.md): the losses are sorted once,
    and the ES reads the counts of the largest ``m`` losses only (``m = n`` up to
    :data:`EXACT_TAIL_PATHS` paths, else ``ceil(TAIL_SHARE n)``). That is exact whenever
    those paths carry at least 5% of the replicate (its top 5% then lies among them); a
    replicate where they do not gets NaN ES (with ``n > 4096`` the chance is below
    ``exp(-n KL(0.05 || 0.15)) < 1e-90``). Replicates run ``batch`` at a time
    (``lax.map``): memory ``O(batch x H x n)``, not ``O(n_boot x n)``.
    """
    n = pnls.shape[-1]
    m = n if n <= EXACT_TAIL_PATHS else int(np.ceil(TAIL_SHARE * n))
    tail_loss, tail_idx = jax.lax.top_k(jnp.maximum(-pnls, 0.0), m)  # (H, m), descending
    per_path = jnp.stack([pnls * pnls, costs, (pnls < 0).astype(pnls.dtype)], -1)
    alpha_mass = 0.05 * n  # the replicate's total count is n

    def one(b):
        count = jnp.bincount(resample_indices(key, n, b), length=n)
        means = jnp.einsum("n,hnk->hk", count.astype(pnls.dtype), per_path) / n
        in_tail = count[tail_idx]  # (H, m) integer counts, largest loss first
        upto = jnp.cumsum(in_tail, -1)  # exact (integers)
        share = jnp.clip(jnp.minimum(upto.astype(pnls.dtype), alpha_mass)
                         - (upto - in_tail).astype(pnls.dtype), 0.0, None)
        es = jnp.sum(share * tail_loss, -1) / alpha_mass
        es = jnp.where(upto[:, -1] >= alpha_mass, es, jnp.nan)
        return jnp.stack([jnp.sqrt(means[:, 0]), means[:, 1], means[:, 2], es], -1)

    # whole batches only (replicate b depends on b alone, so the padding is dropped
    # unchanged): lax.map's remainder would compile the body a second time
    batch = min(batch, n_boot)
    n_batches = -(-n_boot // batch)
    reps = jax.lax.map(jax.vmap(one), jnp.arange(n_batches * batch).reshape(n_batches, batch))
    return reps.reshape(n_batches * batch, *reps.shape[2:])[:n_boot]


# one compiled call (eager, weighted_stats would dispatch and compile op by op)
_every_hedger_stats = jax.jit(jax.vmap(weighted_stats, in_axes=(0, 0, None)))


def paired_path_bootstrap(pnls, costs, reference: int, key, *, n_boot: int = 1000,
                          level: float = 0.95, batch: int = 16) -> list[dict[str, dict]]:
    """:func:`paired_bootstrap` for SIMULATED paths, every hedger against one reference.

    Simulated paths are independent draws, so the resampled unit is one path (block length
    1; no dependence to preserve) and all hedgers share each replicate's draw.

    Args:
      pnls, costs: ``(H, n)`` per-path P&L and cost of ``H`` hedgers on the same paths.
      reference: row of the reference hedger (e.g. BS delta).
      key: PRNG key (same key, same intervals).
      n_boot, level, batch: replicates, CI level, replicates per compiled batch.

    Returns:
      One dict per hedger, ``{metric: {"diff", "lo", "hi"}}`` for :data:`PAIRED_METRICS`:
      ``metric(hedger) - metric(reference)`` on all paths and its percentile interval
      (exactly 0 for the reference itself).
    """
    pnls, costs = (jnp.asarray(x, jnp.result_type(float)) for x in (pnls, costs))
    if pnls.ndim != 2 or pnls.shape != costs.shape or pnls.shape[1] == 0:
        raise ValueError("paired_path_bootstrap: pnls and costs must share one shape (H, n) "
                         f"with n >= 1 (got {pnls.shape}, {costs.shape})")
    if not 0 <= reference < pnls.shape[0]:
        raise ValueError(f"paired_path_bootstrap: reference must be in [0, {pnls.shape[0]}) "
                         f"(got {reference})")
    if not 0 < level < 1 or n_boot < 1:
        raise ValueError(f"paired_path_bootstrap: need 0 < level < 1 and n_boot >= 1 "
                         f"(got {level}, {n_boot})")
    reps = np.asarray(path_replicates(pnls, costs, key, n_boot, batch), np.float64)
    full = np.asarray(_every_hedger_stats(pnls, costs, jnp.ones((pnls.shape[1],), pnls.dtype)),
                      np.float64)
    q = [(1 - level) / 2, (1 + level) / 2]
    out = []
    for h in range(pnls.shape[0]):
        diff = reps[:, h] - reps[:, reference]
        row = {}
        for i, name in enumerate(PAIRED_METRICS):
            col = diff[:, i][np.isfinite(diff[:, i])]
            lo, hi = np.quantile(col, q) if col.size else (np.nan, np.nan)
            row[name] = {"diff": float(full[h, i] - full[reference, i]), "lo": float(lo),
                         "hi": float(hi)}
        out.append(row)
    return out
