"""Member axis sharded over 1 vs 4 fake CPU devices: every member bitwise the same.

Each device count needs a fresh process (XLA_FLAGS is read when JAX starts), so both runs
are subprocesses of tests/sweep/run_devices.py.
"""
import subprocess
import sys
from pathlib import Path

import pandas as pd

from .helpers import member_view, toy_file

HERE = Path(__file__).resolve().parent


def _run(n: int, path: Path, out: Path) -> pd.DataFrame:
    proc = subprocess.run([sys.executable, str(HERE / "run_devices.py"), str(n), str(path), str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout, pd.read_parquet(out / "results.parquet")


def test_one_vs_four_devices_bitwise(tmp_path):
    # block_size 3: one device runs 2 blocks of 3; four devices run one block padded to
    # 8 members (blocks.MIN_SHARE = 2 per device) and drop the padding
    path = toy_file(tmp_path, block_size=3, static="batch = [16]")
    log1, one = _run(1, path, tmp_path / "one")
    log4, four = _run(4, path, tmp_path / "four")
    assert "block sizes [3, 3]" in log1 and "block sizes [8]" in log4  # >= 2 per device
    pd.testing.assert_frame_equal(member_view(one), member_view(four))  # params_sha256 too
    assert len(one) == 6 and one["params_sha256"].nunique() == 6
