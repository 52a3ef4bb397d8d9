"""``jaxhedge hedge``: results, table, and one-line errors with exit status 2."""
import json
import subprocess
import sys

import pytest

from jaxhedge.cli import main

REQUIRED_KEYS = {"mean_pnl", "std_pnl", "shortfall_prob", "es_5", "es_10", "mean_cost",
                 "turnover", "path_steps_per_s"}


def test_hedge_writes_results_json(tmp_path, capsys):
    rc = main(["hedge", "--market", "gbm", "--agent", "delta", "--paths", "2000", "--steps",
               "16", "--cost", "0.001", "--seed", "3", "--out", str(tmp_path)])
    assert rc == 0
    res = json.loads((tmp_path / "results.json").read_text())
    assert REQUIRED_KEYS <= set(res)
    assert res["mean_cost"] > 0 and 0 <= res["shortfall_prob"] <= 1
    assert res["es_10"] <= res["es_5"] + 1e-9  # ES of the shortfall grows deeper in the tail
    assert res["config"]["paths"] == 2000 and res["git_sha"] is None or isinstance(
        res["git_sha"], str)
    out = capsys.readouterr().out
    assert "P(shortfall)" in out and "delta" in out


def test_same_seed_same_numbers(tmp_path):
    args = ["hedge", "--market", "merton", "--agent", "ww", "--paths", "500", "--steps", "8",
            "--cost", "0.01", "--seed", "9"]
    assert main(args + ["--out", str(tmp_path / "a")]) == 0
    assert main(args + ["--out", str(tmp_path / "b")]) == 0
    a, b = (json.loads((tmp_path / d / "results.json").read_text()) for d in "ab")
    assert a["mean_pnl"] == b["mean_pnl"] and a["es_5"] == b["es_5"]


@pytest.mark.parametrize("args,needle", [
    (["--paths", "-5"], "--paths"),
    (["--paths", "ten"], "--paths"),
    (["--sigma", "0"], "--sigma"),
    (["--sigma", "-0.2"], "--sigma"),
    (["--market", "moon"], "--market"),
    (["--agent", "oracle"], "--agent"),
    (["--cost", "1.5"], "--cost"),
    (["--steps", "0"], "--steps"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, args, needle):
    rc = main(["hedge", "--out", str(tmp_path), *args])
    err = capsys.readouterr().err
    assert rc == 2
    assert needle in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "results.json").exists()


def test_console_script_bad_input_has_no_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "jaxhedge.cli", "hedge", "--paths", "-5",
                           "--out", str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "--paths" in proc.stderr


def test_demo_without_training_writes_table_and_plots(tmp_path):
    assert main(["demo", "--no-train", "--paths", "300", "--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "results.json").read_text())["rows"]
    assert {(r["market"], r["agent"]) for r in rows} == {
        (m, a) for m in ("calm", "stressed") for a in ("naked", "delta", "ww")}
    assert (tmp_path / "pnl_stressed.png").exists() and (tmp_path / "demo.md").exists()


@pytest.mark.slow
def test_demo_marks_every_trained_agent_that_fails_a_gate(tmp_path):
    """The demo's table carries the gate verdict of each trained agent: a label with
    ``[GATE FAILED: ...]`` exactly for the agents whose recorded checks failed."""
    from jaxhedge.demo import run_demo

    rows = run_demo(tmp_path, n_paths=300)
    gates = json.loads((tmp_path / "results.json").read_text())["gates"]
    assert set(gates) == {"deep-hedging", "rlop", "adaptive-qlbs"}
    labels = {r["agent"] for r in rows}
    for name, g in gates.items():
        bad = [c["name"] for c in g["checks"] if c["passed"] is False]
        want = f"{name} [GATE FAILED: {', '.join(bad)}]" if bad else name
        assert want in labels, (want, labels)
