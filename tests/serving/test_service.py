"""The HTTP service through FastAPI's TestClient: every endpoint, every rejection audited."""
from __future__ import annotations

import datetime as dt

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
pytest.importorskip("flatbuffers")

from fastapi.testclient import TestClient  # noqa: E402

from jaxhedge.serving.advisor import advise  # noqa: E402
from jaxhedge.serving.inputs import parse_rows, parse_snapshot  # noqa: E402
from jaxhedge.serving.service import create_app  # noqa: E402

TOKEN = "s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
POSITIONS = [
    {"id": "a", "underlying": "SPY", "type": "call", "strike": 600, "expiry": "2030-12-20",
     "quantity": -50, "multiplier": 100},
    {"id": "b", "underlying": "SPY", "type": "put", "strike": 580, "expiry": "2030-12-20",
     "quantity": -30, "multiplier": 100}]


def body(age_s=0.0, **kw):
    ts = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=age_s)
    out = {"request_id": "req-1", "positions": POSITIONS, "holdings": {"SPY": 2000},
           "snapshot": {"timestamp": ts.isoformat(), "underlyings": {"SPY": {
               "spot": 603.5, "vol": 0.15, "rate": 0.04, "div_yield": 0.012,
               "cost": 0.0002, "reference_price": 603.2}}}}
    out.update(kw)
    return out


@pytest.fixture()
def client(delta_bundle, tmp_path):
    (tmp_path / "limits.toml").write_text('[limits]\nkill_file = "KILL"\nmax_order_shares = 500\n')
    app = create_app(delta_bundle, tmp_path / "limits.toml", tmp_path / "audit.sqlite",
                     token=TOKEN, max_body_bytes=20_000)
    with TestClient(app) as c:
        c.log = app.state.audit
        c.dir = tmp_path
        yield c


def test_advise_matches_the_python_api_and_is_audited(client, delta_bundle):
    b = body()
    r = client.post("/v1/advise", json=b, headers=AUTH)
    assert r.status_code == 200, r.text
    got = r.json()
    rows = client.log.rows()
    assert len(rows) == 1 and rows[0]["request_id"] == "req-1" and rows[0]["status"] == 200
    assert rows[0]["id"] == got["audit_id"]
    assert rows[0]["decision"]["orders"] == got["orders"]
    assert rows[0]["snapshot_sha256"] == got["meta"]["snapshot_sha256"]
    assert rows[0]["latency_ms"] > 0
    book = parse_rows(POSITIONS + [{"underlying": "SPY", "type": "stock", "quantity": 2000}])
    ref = advise(delta_bundle, book, parse_snapshot(b["snapshot"]), client.dir / "limits.toml")
    assert [o["signed_shares"] for o in got["orders"]] == [o["signed_shares"] for o in ref.orders]
    assert got["orders"][0]["shares"] <= 500
    assert any("max_order_shares" in o for o in rows[0]["overrides"]) == (
        got["orders"][0]["status"] == "reduced")


def test_model_and_health(client, delta_bundle):
    assert client.get("/healthz").json()["status"] == "ok"  # no token needed
    m = client.get("/v1/model", headers=AUTH).json()
    assert m["card"]["agent"] == "delta" and len(m["bundle_sha"]) == 64


@pytest.mark.parametrize("case, status", [
    ("no_token", 401), ("wrong_token", 401), ("too_big", 413), ("schema", 422),
    ("stale", 400), ("bad_number", 400)])
def test_rejections_are_refused_and_audited(client, case, status):
    headers = dict(AUTH)
    b = body()
    if case == "no_token":
        headers = {}
    elif case == "wrong_token":
        headers = {"Authorization": "Bearer nope"}
    elif case == "too_big":
        b["positions"] = POSITIONS * 200
    elif case == "schema":
        b["positions"] = [dict(POSITIONS[0], type="swap")]
    elif case == "stale":
        b = body(age_s=7200)
    elif case == "bad_number":
        b["snapshot"]["underlyings"]["SPY"]["spot"] = -1
    r = client.post("/v1/advise", json=b, headers=headers)
    assert r.status_code == status, r.text
    rows = client.log.rows()
    assert len(rows) == 1 and rows[0]["status"] == status
    assert "error" in rows[0]["decision"] and "orders" not in r.json()


def test_kill_switch_blocks_every_order_and_persists(client):
    r = client.post("/v1/kill", json={"active": True}, headers=AUTH)
    assert r.status_code == 200 and r.json()["killed"]
    assert (client.dir / "KILL").exists()
    got = client.post("/v1/advise", json=body(), headers=AUTH).json()
    assert all(o["status"] == "blocked" and "kill_switch" in o["reason"]
               for o in got["orders"] if o["desired_shares"] != 0)
    assert client.post("/v1/kill", json={"active": False}, headers=AUTH).json()["killed"] is False
    assert not (client.dir / "KILL").exists()
    assert [r["endpoint"] for r in client.log.rows()] == ["/v1/kill", "/v1/advise", "/v1/kill"]
