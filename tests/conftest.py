"""Shared pytest fixtures.

`x64` switches JAX to float64 for the duration of one test (a context manager, so
it never leaks into other tests run by the same worker).
"""
import jax
import pytest


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


def pytest_collection_modifyitems(config, items):
    """``gpu`` tests need an accelerator backend; on a CPU-only machine they are skipped
    with the reason (never silently passed)."""
    if jax.default_backend() != "cpu":
        return
    skip = pytest.mark.skip(reason="needs an accelerator (jax.default_backend() is 'cpu')")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
