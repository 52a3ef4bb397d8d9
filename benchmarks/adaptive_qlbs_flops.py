"""One Adaptive-QLBS ``paper``-preset training iteration: time and achieved GFLOP/s.

    python -m benchmarks.adaptive_qlbs_flops

A thin entry point: the measurement and the FLOP count of the rows the update actually
evaluates (``E RS N(N-1)/2`` continuation rows, 3.0 M for the paper preset) live in
:func:`jaxhedge.bench.flops.adaptive_qlbs_episode` (``docs/performance.md``).
"""
from __future__ import annotations

from jaxhedge.bench.flops import adaptive_qlbs_episode
from jaxhedge.train.jobs import load_job


def paper_episode(repeats: int = 2) -> dict:
    return adaptive_qlbs_episode(*load_job("adaptive-qlbs", "paper").build(), repeats=repeats)


if __name__ == "__main__":
    print(paper_episode())
