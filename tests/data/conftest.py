"""Fixtures for the data-layer tests: the shared option files (skipped when absent)."""
import os
from pathlib import Path

import pytest


def shared_data_dir() -> Path:
    env = os.environ.get("JAXHEDGE_DATA_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3] / "shared" / "data" / "options"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    d = shared_data_dir()
    if not (d / "spy_preprocessed_calls_20q1.csv").is_file():
        pytest.skip(f"shared option data not found at {d} (set JAXHEDGE_DATA_DIR or check out "
                    "../shared next to the repo)")
    return d
