"""HTTP service for order systems (extra ``serve``: FastAPI + uvicorn).

Endpoints (JSON):

* ``POST /v1/advise`` -- body :class:`AdviseRequest` (positions, holdings, snapshot, optional
  ``request_id`` and ``notional_today``) -> ``{request_id, audit_id, orders, positions,
  meta}``; a refused request (stale snapshot, invalid number) -> 400 ``{"detail": ...}``.
* ``GET /v1/model`` -- the bundle's model card and sha.
* ``GET /healthz`` -- liveness (no token needed).
* ``POST /v1/kill`` -- body ``{"active": true|false}``: sets the kill switch (and creates or
  removes the limits' ``kill_file`` when one is configured, so it survives a restart).

Every request, rejected ones included (401 token, 413 size, 422 schema), is written to the
audit log (:mod:`jaxhedge.serving.audit`) and committed before the response is sent.
Binds 127.0.0.1 unless told otherwise; with a token every endpoint but ``/healthz`` needs
``Authorization: Bearer <token>``; bodies over ``max_body_bytes`` are refused with 413.
"""
from __future__ import annotations

import dataclasses
import hmac
import json
import time
import uuid
from pathlib import Path
from typing import Literal

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from jaxhedge.serving import guardrails as gr
from jaxhedge.serving.advisor import advise
from jaxhedge.serving.audit import AuditLog, advice_overrides
from jaxhedge.serving.bundle import load_bundle
from jaxhedge.serving.inputs import parse_rows, parse_snapshot

MAX_POSITIONS = 100_000


class Position(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str | None = Field(None, max_length=64)
    underlying: str = Field(min_length=1, max_length=32)
    type: Literal["call", "put"]
    strike: float
    expiry: str = Field(max_length=10)
    quantity: float
    multiplier: float = 1.0


class QuoteModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    spot: float
    vol: float | None = None
    vol_points: list[list[float]] | None = Field(None, max_length=64)
    rate: float = 0.0
    div_yield: float = 0.0
    cost: float = 0.0
    reference_price: float | None = None


class SnapshotModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    timestamp: str = Field(max_length=40)
    underlyings: dict[str, QuoteModel]


class AdviseRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    request_id: str | None = Field(None, max_length=64)
    positions: list[Position] = Field(default_factory=list, max_length=MAX_POSITIONS)
    holdings: dict[str, float] = Field(default_factory=dict)
    snapshot: SnapshotModel
    notional_today: float = 0.0


class KillRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    active: bool


def create_app(bundle, limits=None, audit_db="audit.sqlite", *, token: str | None = None,
               max_body_bytes: int = 8 << 20) -> FastAPI:
    """The service for ``bundle`` (path), ``limits`` (TOML path, DeskConfig or None)."""
    b = load_bundle(bundle)
    cfg = limits if isinstance(limits, gr.DeskConfig) else (
        gr.DeskConfig() if limits is None else gr.load_limits(limits))
    log = AuditLog(audit_db)
    state = {"killed": False}
    app = FastAPI(title="jaxhedge desk advisor", version="1")
    app.state.audit = log
    app.state.bundle = b

    def current_limits() -> gr.DeskConfig:
        if not state["killed"]:
            return cfg
        return dataclasses.replace(cfg, limits=dataclasses.replace(cfg.limits,
                                                                   kill_switch=True))

    def reject(request: Request, status: int, detail: str) -> JSONResponse:
        log.record(request.headers.get("x-request-id") or uuid.uuid4().hex, request.url.path,
                   status, {"error": detail}, bundle_sha=b.sha)
        return JSONResponse({"detail": detail}, status_code=status)

    @app.middleware("http")
    async def guard(request: Request, call_next):
        size = request.headers.get("content-length")
        if size is not None and (not size.isdigit() or int(size) > max_body_bytes):
            return reject(request, 413, f"request body over {max_body_bytes} bytes")
        if size is None and request.method == "POST":
            if len(await request.body()) > max_body_bytes:
                return reject(request, 413, f"request body over {max_body_bytes} bytes")
        if token is not None and request.url.path != "/healthz":
            given = request.headers.get("authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
                return reject(request, 401, "missing or wrong bearer token")
        return await call_next(request)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, err: RequestValidationError):
        first = err.errors()[0] if err.errors() else {}
        where = ".".join(str(x) for x in first.get("loc", ()))
        return reject(request, 422, f"{where}: {first.get('msg', 'invalid request')}")

    @app.get("/healthz")
    def healthz():
        return {"status": "ok", "bundle_sha": b.sha, "killed": current_limits().limits.killed()}

    @app.get("/v1/model")
    def model():
        return {"bundle_sha": b.sha, "card": b.card}

    @app.post("/v1/kill")
    def kill(req: KillRequest):
        state["killed"] = req.active
        kill_file = cfg.limits.kill_file
        if kill_file is not None:
            if req.active:
                Path(kill_file).touch()
            else:
                Path(kill_file).unlink(missing_ok=True)
        rid = uuid.uuid4().hex
        audit_id = log.record(rid, "/v1/kill", 200, {"active": req.active}, bundle_sha=b.sha)
        return {"request_id": rid, "audit_id": audit_id,
                "killed": current_limits().limits.killed()}

    @app.post("/v1/advise")
    def advise_endpoint(req: AdviseRequest):
        t0 = time.perf_counter()
        rid = req.request_id or uuid.uuid4().hex
        snap_sha = None
        try:
            snap = parse_snapshot(req.snapshot.model_dump(exclude_none=True))
            snap_sha = snap.sha256
            rows = [p.model_dump() for p in req.positions] + [
                {"underlying": u, "type": "stock", "quantity": q} for u, q in req.holdings.items()]
            book = parse_rows(rows, "book")
            advice = advise(b, book, snap, current_limits(), notional_today=req.notional_today)
        except ValueError as err:
            msg = str(err).splitlines()[0]
            log.record(rid, "/v1/advise", 400, {"error": msg}, snapshot_sha256=snap_sha,
                       bundle_sha=b.sha, latency_ms=1e3 * (time.perf_counter() - t0))
            raise HTTPException(status_code=400, detail=msg) from None
        latency = 1e3 * (time.perf_counter() - t0)
        audit_id = log.record(rid, "/v1/advise", 200, {"orders": advice.orders},
                              snapshot_sha256=snap.sha256, overrides=advice_overrides(advice),
                              bundle_sha=b.sha, latency_ms=latency)
        # encoded here: FastAPI's generic encoder takes seconds on a 10,000-position reply
        return Response(json.dumps({"request_id": rid, "audit_id": audit_id,
                                    **advice.to_json()}), media_type="application/json")

    return app
