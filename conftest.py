"""Root pytest configuration: what to leave out of collection on a machine without an extra.

``make test`` collects the doctests of every module of the package (``--doctest-modules
jaxhedge``), which imports them. A module that exists only for an optional extra imports
that extra at its top; on a machine without it, the module is not collected (its tests
``importorskip`` the extra in the same way).
"""
import importlib.util

collect_ignore = []
if importlib.util.find_spec("fastapi") is None or importlib.util.find_spec("pydantic") is None:
    collect_ignore.append("jaxhedge/serving/service.py")  # extra: serve

# Property tests: CI must be reproducible — a clean clone runs the same examples every time
# (derandomize), so a property failure is seen on the author's machine before it lands.
# `HYPOTHESIS_PROFILE=explore pytest ...` draws fresh examples to search for new failures.
import os  # noqa: E402

from hypothesis import settings  # noqa: E402

settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
settings.register_profile("explore", derandomize=False, max_examples=200)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
