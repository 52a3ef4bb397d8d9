"""Audit log: one SQLite row per request (WAL journal, fsync on every commit).

Columns: ``time`` (UTC ISO), ``request_id``, ``endpoint``, ``status`` (HTTP-like: 200 done,
400 refused, 401/413/422 rejected), ``snapshot_sha256``, ``decision`` (JSON: the orders, or
the refusal), ``overrides`` (JSON list of the override and limit reasons), ``bundle_sha``,
``latency_ms``. A row is committed (``synchronous=FULL``) BEFORE the caller acknowledges
the request, so every acknowledged request survives a crash of the process.

``jaxhedge audit DB --since ISO --format csv|json`` prints the rows back.
"""
from __future__ import annotations

import csv
import datetime as dt
import io
import json
import sqlite3
import threading
from pathlib import Path

COLUMNS = ("id", "time", "request_id", "endpoint", "status", "snapshot_sha256", "decision",
           "overrides", "bundle_sha", "latency_ms")
_SCHEMA = """CREATE TABLE IF NOT EXISTS requests (
    id INTEGER PRIMARY KEY AUTOINCREMENT, time TEXT NOT NULL, request_id TEXT NOT NULL,
    endpoint TEXT NOT NULL, status INTEGER NOT NULL, snapshot_sha256 TEXT, decision TEXT,
    overrides TEXT, bundle_sha TEXT, latency_ms REAL)"""


class AuditLog:
    """Append-only request log in the SQLite file ``path`` (created if absent)."""

    def __init__(self, path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None,
                                       check_same_thread=False, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute(_SCHEMA)
            self._db.execute("CREATE INDEX IF NOT EXISTS requests_time ON requests(time)")
        except sqlite3.DatabaseError as err:
            raise ValueError(f"audit: {self.path} is not a usable SQLite database "
                             f"({err})") from None
        self._lock = threading.Lock()

    def record(self, request_id: str, endpoint: str, status: int, decision, *,
               snapshot_sha256: str | None = None, overrides=(), bundle_sha: str | None = None,
               latency_ms: float | None = None, time: dt.datetime | None = None) -> int:
        """Commit one row; returns its id."""
        t = (time or dt.datetime.now(dt.timezone.utc)).astimezone(dt.timezone.utc)
        row = (t.isoformat(timespec="microseconds"), str(request_id), endpoint, int(status),
               snapshot_sha256, json.dumps(decision, default=str), json.dumps(list(overrides)),
               bundle_sha, None if latency_ms is None else float(latency_ms))
        with self._lock:
            cur = self._db.execute(
                "INSERT INTO requests (time, request_id, endpoint, status, snapshot_sha256, "
                "decision, overrides, bundle_sha, latency_ms) VALUES (?,?,?,?,?,?,?,?,?)", row)
            return int(cur.lastrowid)

    def rows(self, since: dt.datetime | None = None) -> list[dict]:
        q = f"SELECT {', '.join(COLUMNS)} FROM requests"
        args: tuple = ()
        if since is not None:
            q += " WHERE time >= ?"
            args = (since.astimezone(dt.timezone.utc).isoformat(timespec="microseconds"),)
        with self._lock:
            out = [dict(zip(COLUMNS, r)) for r in self._db.execute(q + " ORDER BY id", args)]
        for r in out:
            r["decision"] = json.loads(r["decision"]) if r["decision"] else None
            r["overrides"] = json.loads(r["overrides"]) if r["overrides"] else []
        return out

    def close(self):
        with self._lock:
            self._db.close()


def advice_overrides(advice) -> list[str]:
    """Every override and limit reason of an :class:`~jaxhedge.serving.advisor.Advice`."""
    out = [f"{p['id']}: {p['reason']}" for p in advice.positions if p["reason"]]
    return out + [f"{o['underlying']}: {o['reason']}" for o in advice.orders if o["reason"]]


def format_rows(rows: list[dict], fmt: str) -> str:
    if fmt == "json":
        return json.dumps(rows, indent=2) + "\n"
    buf = io.StringIO()
    w = csv.DictWriter(buf, COLUMNS, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: json.dumps(v) if k in ("decision", "overrides") else v
                    for k, v in r.items()})
    return buf.getvalue()


def audit_arguments(p) -> None:
    p.add_argument("db", type=Path, help="audit SQLite file")
    p.add_argument("--since", default=None, metavar="ISO",
                   help="only requests at or after this time (ISO 8601 with offset)")
    p.add_argument("--format", choices=("csv", "json"), default="csv")


def run_audit(args) -> int:
    import sys

    from jaxhedge.serving.inputs import parse_timestamp

    since = None if args.since is None else parse_timestamp(args.since, "--since")
    if not Path(args.db).is_file():
        raise ValueError(f"DB: {args.db} does not exist")
    log = AuditLog(args.db)
    try:
        sys.stdout.write(format_rows(log.rows(since), args.format))
    finally:
        log.close()
    return 0
