"""``jaxhedge check RUN_DIR``: exit 0 when every gate passes, 1 with the failed gate named."""
from __future__ import annotations

import json

import pytest

from jaxhedge.cli import main
from jaxhedge.train import run_training
from tests.serving.scaled_agent import ScaledVolAgent


def _run(tmp_path, name, **agent_kw):
    agent = ScaledVolAgent(**agent_kw)
    run_training(agent, agent.default_hparams(), n_steps=1, chunk=1, run_dir=tmp_path / name,
                 progress=False, tensorboard=False)
    return tmp_path / name


@pytest.mark.parametrize("kw, failed", [
    (dict(), []),                      # BS itself: every gate passes
    (dict(scale=1.25), ["bs_price"]),  # BS at 1.25 sigma: a valid surface, 25% off BS
    (dict(shift=-0.6), ["hedge_ratio"]),  # hedges below zero out of the money
], ids=["bs", "scaled-vol", "shifted-hedge"])
def test_check_exit_code_and_failed_gates(tmp_path, capsys, kw, failed):
    run = _run(tmp_path, "run", **kw)
    out = tmp_path / "gates.json"
    code = main(["check", str(run), "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == (1 if failed else 0)
    report = json.loads(out.read_text())
    assert [g["name"] for g in report["gates"] if g["status"] == "FAIL"] == failed
    assert report["passed"] is (not failed)
    assert ("GATE FAILED: " + ", ".join(failed)) in printed if failed else "all gates passed" in printed


def test_check_of_a_missing_run_is_one_line_exit_2(tmp_path, capsys):
    assert main(["check", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no checkpoint" in err[0]
