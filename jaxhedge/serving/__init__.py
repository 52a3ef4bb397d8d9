"""From a trained hedger to guarded hedge orders on a desk (issue 14).

* :mod:`~jaxhedge.serving.bundle` -- ``jax.export`` policy bundles, verified on load;
* :mod:`~jaxhedge.serving.export` -- bundles from classical hedgers and trained agents;
* :mod:`~jaxhedge.serving.inputs` -- the book CSV and market snapshot JSON;
* :mod:`~jaxhedge.serving.guardrails` -- ranges, sanity clips, pre-trade limits, kill switch;
* :mod:`~jaxhedge.serving.advisor` -- ``advise(bundle, book, snapshot, limits)``;
* :mod:`~jaxhedge.serving.command` -- the ``export`` and ``advise`` subcommands.

See ``docs/desk.md``.
"""
from jaxhedge.serving.advisor import Advice, advise, write_advice
from jaxhedge.serving.bundle import Bundle, load_bundle
from jaxhedge.serving.guardrails import DeskConfig, load_limits

__all__ = ["Advice", "Bundle", "DeskConfig", "advise", "load_bundle", "load_limits",
           "write_advice"]
