"""Load benchmark of the advisor service on loopback (issue 14, item 6). Bounded in count and time.

    python benchmarks/serve.py --out benchmarks/results/serve_cpu.json

1. Starts ``jaxhedge serve`` (this checkout, ``python -m jaxhedge.serving.command serve``) on
   127.0.0.1 with a fresh audit DB and a BS-delta bundle (exported into a temp dir unless
   ``--bundle`` is given).
2. For books of 1, 100 and 10,000 positions: one warm-up request (compiles the padded size),
   then sequential ``POST /v1/advise`` requests until ``--requests`` are done or
   ``--seconds`` pass; reports requests/s and p50/p99 latency (client side, wall clock) and
   the server's own p50 (the audit rows' latency_ms: validation to decision, without HTTP
   parsing and the reply's transfer).
3. Crash test: after one warm-up request, ``--workers`` threads send 100-position requests;
   after ``--crash-after``
   seconds the server gets SIGKILL. Every request acknowledged with 200 before the kill must
   have its row in the audit DB; then the server is restarted on the same DB and must answer.

Needs the ``serve`` extra (fastapi, uvicorn, httpx) and flatbuffers.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(bundle, audit, port):
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, "-m", "jaxhedge.serving.command", "serve",
                             "--bundle", str(bundle), "--audit", str(audit), "--port",
                             str(port), "--max-body-mb", "64"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    import httpx

    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {proc.stderr.read().decode()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("server did not start within 120 s")


def request_body(n: int, rng) -> dict:
    ts = dt.datetime.now(dt.timezone.utc).isoformat()
    strikes = np.round(rng.uniform(480, 720, n), 1)
    expiries = rng.choice(["2027-03-19", "2027-06-18", "2027-12-17"], n)
    qty = rng.integers(-50, 51, n)
    positions = [{"id": f"p{i}", "underlying": "SPY", "type": "call" if i % 2 else "put",
                  "strike": float(strikes[i]), "expiry": str(expiries[i]),
                  "quantity": float(qty[i] or 1), "multiplier": 100.0} for i in range(n)]
    return {"request_id": uuid.uuid4().hex, "positions": positions, "holdings": {"SPY": 0.0},
            "snapshot": {"timestamp": ts, "underlyings": {"SPY": {
                "spot": 600.0, "vol": 0.16, "rate": 0.04, "div_yield": 0.012, "cost": 2e-4,
                "reference_price": 600.0}}}}


def measure(client, url, n, max_requests, max_seconds, rng) -> dict:
    r = client.post(url, json=request_body(n, rng))  # warm-up: compiles this padded size
    r.raise_for_status()
    lat, t_start = [], time.perf_counter()
    while len(lat) < max_requests and time.perf_counter() - t_start < max_seconds:
        body = request_body(n, rng)
        t0 = time.perf_counter()
        r = client.post(url, json=body)
        lat.append(time.perf_counter() - t0)
        r.raise_for_status()
    wall = time.perf_counter() - t_start
    ms = 1e3 * np.asarray(lat)
    return {"positions": n, "requests": len(lat), "seconds": round(wall, 3),
            "requests_per_s": round(len(lat) / wall, 2),
            "p50_ms": round(float(np.percentile(ms, 50)), 2),
            "p99_ms": round(float(np.percentile(ms, 99)), 2),
            "max_ms": round(float(ms.max()), 2)}


def crash_test(bundle, audit, port, workers, crash_after, rng_seed) -> dict:
    import httpx

    proc = start_server(bundle, audit, port)
    url = f"http://127.0.0.1:{port}/v1/advise"
    acked, errors, stop = [], [], threading.Event()
    lock = threading.Lock()

    def worker(k):
        rng = np.random.default_rng(rng_seed + k)
        with httpx.Client(timeout=30) as c:
            while not stop.is_set():
                body = request_body(100, rng)
                try:
                    r = c.post(url, json=body)
                except httpx.HTTPError:
                    with lock:
                        errors.append(body["request_id"])
                    if stop.is_set():
                        return
                    continue
                if r.status_code == 200:
                    with lock:
                        acked.append(r.json()["request_id"])

    warm = httpx.post(url, json=request_body(100, np.random.default_rng(rng_seed)), timeout=120)
    warm.raise_for_status()  # compile first: the kill must land among served requests
    acked.append(warm.json()["request_id"])
    threads = [threading.Thread(target=worker, args=(k,)) for k in range(workers)]
    for t in threads:
        t.start()
    time.sleep(crash_after)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    with lock:
        acked_at_kill = list(acked)
    stop.set()
    for t in threads:
        t.join(timeout=60)
    db = sqlite3.connect(audit)
    logged = {r[0] for r in db.execute("SELECT request_id FROM requests WHERE status = 200")}
    db.close()
    missing = sorted(set(acked_at_kill) - logged)
    proc = start_server(bundle, audit, port)
    try:
        r = httpx.post(url, json=request_body(100, np.random.default_rng(rng_seed)), timeout=60)
        restarted_ok = r.status_code == 200
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return {"workers": workers, "killed_after_s": crash_after,
            "acknowledged_before_kill": len(acked_at_kill),
            "audited_200_rows": len(logged), "acknowledged_missing_from_audit": len(missing),
            "failed_in_flight": len(errors), "restarted_server_answered": restarted_ok}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bundle", type=Path, default=None)
    p.add_argument("--sizes", default="1,100,10000")
    p.add_argument("--requests", type=int, default=200, help="max timed requests per size")
    p.add_argument("--seconds", type=float, default=30.0, help="max timed seconds per size")
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--crash-after", type=float, default=5.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/serve_cpu.json")
    args = p.parse_args(argv)
    import httpx

    sys.path.insert(0, str(ROOT))
    from jaxhedge.runinfo import atomic_write_json, run_metadata

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        bundle = args.bundle
        if bundle is None:
            from jaxhedge.serving.export import bundle_classical

            bundle = bundle_classical(tmp / "delta", "delta")
        port = free_port()
        proc = start_server(bundle, tmp / "audit.sqlite", port)
        rng = np.random.default_rng(args.seed)
        results = []
        try:
            with httpx.Client(timeout=120) as client:
                for n in (int(s) for s in args.sizes.split(",")):
                    res = measure(client, f"http://127.0.0.1:{port}/v1/advise", n,
                                  args.requests, args.seconds, rng)
                    print(json.dumps(res), flush=True)
                    results.append(res)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        db = sqlite3.connect(tmp / "audit.sqlite")
        server_ms = [r[0] for r in db.execute(
            "SELECT latency_ms FROM requests WHERE status = 200 ORDER BY id")]
        db.close()
        i = 0
        for res in results:  # rows are in request order: warm-up, then the timed ones
            chunk = server_ms[i + 1:i + 1 + res["requests"]]
            res["server_p50_ms"] = round(float(np.percentile(chunk, 50)), 2)
            i += 1 + res["requests"]
        crash = crash_test(bundle, tmp / "crash.sqlite", free_port(), args.workers,
                           args.crash_after, args.seed)
        print(json.dumps(crash), flush=True)
    meta = run_metadata()
    out = {"command": "python benchmarks/serve.py " + " ".join(argv or sys.argv[1:]),
           "transport": "HTTP/1.1 on 127.0.0.1, one sequential client per size",
           "bundle": "BS delta (jaxhedge export --classical delta)" if args.bundle is None
           else str(args.bundle),
           "results": results, "crash_test": crash,
           "machine": meta["device"], "versions": meta["versions"], "git_sha": meta["git_sha"],
           "measured_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
    atomic_write_json(args.out, out)
    print(f"wrote {args.out}")
    ok = crash["acknowledged_missing_from_audit"] == 0 and crash["restarted_server_answered"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
