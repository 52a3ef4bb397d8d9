"""The export and advise commands end to end on the shipped sample desk; bad input exits 2."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

pytest.importorskip("flatbuffers")  # jax.export serialization of bundles

from jaxhedge import serving  # noqa: E402
from jaxhedge.serving.command import main  # noqa: E402
from tests.serving.conftest import NOW  # noqa: E402

DESK = Path(__file__).resolve().parents[2] / "experiments" / "desk"
ARGS = ["--book", str(DESK / "book.csv"), "--market", str(DESK / "snapshot.json"),
        "--limits", str(DESK / "limits.toml"), "--now", NOW.isoformat()]


def test_advise_writes_orders_positions_and_advice(delta_bundle, tmp_path, capsys):
    out = tmp_path / "advice"
    assert main(["advise", "--bundle", str(delta_bundle), "--out", str(out), *ARGS]) == 0
    orders = list(csv.DictReader(open(out / "orders.csv")))
    positions = list(csv.DictReader(open(out / "positions.csv")))
    advice = json.loads((out / "advice.json").read_text())
    assert [o["underlying"] for o in orders] == ["SPY", "XOP"]
    assert len(positions) == 5 and advice["meta"]["bundle_sha"] == serving.load_bundle(
        delta_bundle).sha
    # the CLI and the Python API agree
    py = serving.advise(delta_bundle, DESK / "book.csv", DESK / "snapshot.json",
                        DESK / "limits.toml", now=NOW)
    assert [float(o["shares"]) for o in orders] == [o["shares"] for o in py.orders]
    assert advice["orders"] == json.loads(json.dumps(py.orders))
    assert "wrote" in capsys.readouterr().out


def test_stale_snapshot_exits_2_with_one_line(delta_bundle, tmp_path, capsys):
    args = ARGS[:-1] + ["2026-11-28T15:30:00+00:00"]
    assert main(["advise", "--bundle", str(delta_bundle), "--out", str(tmp_path / "o"),
                 *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: snapshot.timestamp") and "\n" not in err
    assert not (tmp_path / "o").exists()


def test_tampered_bundle_exits_2(delta_bundle, tmp_path, capsys):
    import shutil

    b = tmp_path / "b"
    shutil.copytree(delta_bundle, b)
    (b / "price.jaxexport").write_bytes(b"x")
    assert main(["advise", "--bundle", str(b), "--out", str(tmp_path / "o"), *ARGS]) == 2
    assert "price.jaxexport does not match" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["export", "--out", "X"], "exactly one of RUN_DIR or --classical"),
    (["export", "--classical", "detla", "--out", "X"], "did you mean 'delta'"),
    (["export", "no/such/run", "--out", "X"], "is not a directory"),
])
def test_export_bad_input_exits_2(tmp_path, capsys, argv, message):
    argv = [a if a != "X" else str(tmp_path / "b") for a in argv]
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_export_classical_writes_a_loadable_bundle(tmp_path, capsys):
    assert main(["export", "--classical", "delta", "--out", str(tmp_path / "b")]) == 0
    assert serving.load_bundle(tmp_path / "b").card["agent"] == "delta"
    assert "wrote bundle" in capsys.readouterr().out


def test_export_of_a_trained_run_directory(tmp_path, capsys):
    """``jaxhedge export RUN_DIR``: the run is rebuilt by the trainer's loader and bundled."""
    import numpy as np

    from jaxhedge.train import run_training
    from tests.serving.conftest import bs_delta_np
    from tests.serving.scaled_agent import ScaledVolAgent

    agent = ScaledVolAgent(scale=1.25)
    run_training(agent, agent.default_hparams(), n_steps=2, chunk=1, run_dir=tmp_path / "run",
                 progress=False, tensorboard=False)
    assert main(["export", str(tmp_path / "run"), "--out", str(tmp_path / "b")]) == 0
    b = serving.load_bundle(tmp_path / "b")
    assert b.card["source"] == {"run_dir": str(tmp_path / "run"), "member": 0}
    assert b.card["metrics"]["final_training_metrics"]["step"] == 2
    x = np.array([[1.05, 1.0, 0.1, 0, 0.01, 0, 0, 0.2, 0, 1, 0, 1]], np.float32)
    want = bs_delta_np(1.05, 1.0, 0.1, 0.01, 0.2 * 1.25, 0.0, True)
    np.testing.assert_allclose(np.asarray(b.hedge(x)), [want], atol=2e-6)
