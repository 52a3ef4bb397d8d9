"""Every ```python block of README.md runs, in order, in one scratch directory (so a later
block may read what an earlier one saved, e.g. ``runs/dh-heston``)."""
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"^```python\n(.*?)^```", README.read_text(), flags=re.S | re.M)


def test_readme_has_python_examples():
    assert len(BLOCKS) >= 3  # the API quick start, loading, and the env/rollout level


def test_readme_python_blocks_run(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    for i, code in enumerate(BLOCKS):
        try:
            exec(compile(code, f"README.md python block {i + 1}", "exec"), {"__name__": "readme"})
        except Exception as err:  # noqa: BLE001 - name the failing block
            pytest.fail(f"README.md python block {i + 1} failed: {type(err).__name__}: {err}")
    printed = capsys.readouterr().out
    assert "mean_pnl" in printed  # the rollout block prints the metric dict
    assert (tmp_path / "runs" / "dh-heston" / "run.json").is_file()
