"""Audit log: rows round-trip, WAL mode, --since filter, csv/json output; CLI advise audits."""
from __future__ import annotations

import csv
import datetime as dt
import io
import json
import sqlite3
from pathlib import Path

import pytest

pytest.importorskip("flatbuffers")  # jax.export serialization of bundles

from jaxhedge.serving.audit import AuditLog  # noqa: E402
from jaxhedge.serving.command import main  # noqa: E402
from tests.serving.conftest import NOW  # noqa: E402

DESK = Path(__file__).resolve().parents[2] / "experiments" / "desk"
T0 = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.timezone.utc)


def test_rows_round_trip_and_since_filters(tmp_path, capsys):
    db = tmp_path / "a.sqlite"
    log = AuditLog(db)
    for i in range(3):
        log.record(f"r{i}", "/v1/advise", 200, {"orders": [{"shares": i}]},
                   snapshot_sha256="ab" * 32, overrides=[f"x{i}"], bundle_sha="cd" * 32,
                   latency_ms=1.5 * i, time=T0 + dt.timedelta(minutes=i))
    log.close()
    mode = sqlite3.connect(db).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"
    assert main(["audit", str(db), "--since", (T0 + dt.timedelta(minutes=1)).isoformat(),
                 "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["request_id"] for r in rows] == ["r1", "r2"]
    assert rows[1]["decision"] == {"orders": [{"shares": 2}]} and rows[1]["overrides"] == ["x2"]
    assert rows[1]["latency_ms"] == 3.0
    assert main(["audit", str(db), "--format", "csv"]) == 0
    got = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["request_id"] for r in got] == ["r0", "r1", "r2"]
    assert json.loads(got[0]["decision"]) == {"orders": [{"shares": 0}]}


@pytest.mark.parametrize("argv, message", [
    (["audit", "missing.sqlite"], "does not exist"),
    (["audit", "DB", "--since", "yesterday"], "--since: must be an ISO 8601 time"),
])
def test_audit_bad_input_exits_2(tmp_path, capsys, argv, message):
    AuditLog(tmp_path / "db.sqlite").close()
    argv = [str(tmp_path / "db.sqlite") if a == "DB" else
            str(tmp_path / a) if a.endswith(".sqlite") else a for a in argv]
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_cli_advise_audits_success_and_refusal(delta_bundle, tmp_path):
    db = tmp_path / "audit.sqlite"
    base = ["advise", "--bundle", str(delta_bundle), "--book", str(DESK / "book.csv"),
            "--market", str(DESK / "snapshot.json"), "--out", str(tmp_path / "o"),
            "--audit", str(db)]
    assert main(base + ["--now", NOW.isoformat()]) == 0
    assert main(base + ["--now", (NOW + dt.timedelta(days=1)).isoformat()]) == 2
    rows = AuditLog(db).rows()
    assert [r["status"] for r in rows] == [200, 400]
    out = json.loads((tmp_path / "o" / "advice.json").read_text())
    assert rows[0]["decision"]["orders"] == out["orders"]
    assert rows[0]["snapshot_sha256"] == out["meta"]["snapshot_sha256"]
    assert rows[0]["bundle_sha"] == out["meta"]["bundle_sha"]
    assert "stale snapshot" in rows[1]["decision"]["error"]
