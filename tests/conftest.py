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
