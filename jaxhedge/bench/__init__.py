"""Benchmark harness: the measurements behind ``jaxhedge bench`` and ``benchmarks/*.py``.

Modules (one measurement each; ``harness`` runs them all and ``command`` is the CLI body):

* :mod:`~jaxhedge.bench.timing` -- best-of timers and the fp32 matmul peak;
* :mod:`~jaxhedge.bench.throughput` -- env-only rollout vs vectorised numpy;
* :mod:`~jaxhedge.bench.training` -- a vmapped block of members vs the same members in turn;
* :mod:`~jaxhedge.bench.flops` -- FLOP counts derived from network shapes and the rows the
  Adaptive-QLBS update really evaluates (checked against XLA's cost analysis in the tests);
* :mod:`~jaxhedge.bench.pfhedge_match` -- the deep-hedging agent on pfhedge's standard
  example with pfhedge's four inputs;
* :mod:`~jaxhedge.bench.peers` -- runs ``benchmarks/peers/*_runner.py`` in the peers'
  own virtualenv as a subprocess (skipped with a reason when it is absent);
* :mod:`~jaxhedge.bench.harness` / :mod:`~jaxhedge.bench.report` -- one JSON, a markdown
  summary and a throughput-vs-batch-size plot.

Measured numbers live in ``docs/performance.md`` and ``benchmarks/results/``, not here.
"""
