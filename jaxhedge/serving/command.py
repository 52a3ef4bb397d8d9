"""The desk subcommands' arguments and bodies (``cli.py`` holds thin wrappers).

Each command is a pair ``<name>_arguments(parser)`` / ``run_<name>(args) -> int`` (listed in
:data:`COMMANDS`). Bad input raises ValueError (one line naming the field) before anything
is written; the CLI turns it into ``error: ...`` and exit status 2 (:func:`main` does the same
for a standalone parser, used by the tests).

* ``jaxhedge export RUN_DIR --out BUNDLE`` / ``jaxhedge export --classical delta --out BUNDLE``
* ``jaxhedge advise --bundle B --book book.csv --market snapshot.json --out DIR
  [--limits limits.toml] [--now ISO] [--notional-today X] [--audit DB]``
* ``jaxhedge audit DB [--since ISO] [--format csv|json]``
* ``jaxhedge serve --bundle B [--limits L] [--audit DB] [--host 127.0.0.1] [--port 8000]
  [--token-env VAR] [--max-body-mb 8]`` (extra ``serve``)
"""
from __future__ import annotations

import argparse
import sys
import time
import uuid
from pathlib import Path

from jaxhedge.serving.audit import audit_arguments, run_audit


def export_arguments(p) -> None:
    p.add_argument("run_dir", nargs="?", type=Path, default=None,
                   help="trained run directory (or use --classical)")
    p.add_argument("--classical", default=None, metavar="NAME",
                   help="bundle a registered classical hedger instead (delta is the reference)")
    p.add_argument("--member", type=int, default=0, help="member of the trained run")
    p.add_argument("--out", type=Path, required=True, help="bundle directory to create")


def run_export(args) -> int:
    from jaxhedge.serving.bundle import load_bundle
    from jaxhedge.serving.export import bundle_classical, export_run

    if (args.run_dir is None) == (args.classical is None):
        raise ValueError("export: give exactly one of RUN_DIR or --classical NAME")
    if args.member < 0:
        raise ValueError(f"--member: must be an integer >= 0 (got {args.member})")
    if args.classical is not None:
        path = bundle_classical(args.out, args.classical)
    else:
        if not Path(args.run_dir).is_dir():
            raise ValueError(f"RUN_DIR: {args.run_dir} is not a directory")
        path = export_run(args.run_dir, args.out, args.member)
    b = load_bundle(path)  # what was written must verify
    label = b.card.get("gate_label") or "all gates passed"
    print(f"wrote bundle {path} ({b.card['agent']}, sha256 {b.sha[:12]}, {label})")
    return 0


def advise_arguments(p) -> None:
    p.add_argument("--bundle", type=Path, required=True)
    p.add_argument("--book", type=Path, required=True, help="positions CSV (docs/desk.md)")
    p.add_argument("--market", type=Path, required=True, help="market snapshot JSON")
    p.add_argument("--limits", type=Path, default=None, help="limits TOML (default: none)")
    p.add_argument("--out", type=Path, required=True,
                   help="directory for orders.csv, positions.csv, advice.json")
    p.add_argument("--now", default=None, metavar="ISO",
                   help="time the snapshot's age is measured at (default: the clock)")
    p.add_argument("--notional-today", type=float, default=0.0,
                   help="money already traded today (for max_daily_notional)")
    p.add_argument("--audit", type=Path, default=None, metavar="DB",
                   help="also log the request to this audit SQLite file")


def run_advise(args) -> int:
    from jaxhedge.serving.advisor import advise, write_advice
    from jaxhedge.serving.inputs import parse_timestamp

    now = None if args.now is None else parse_timestamp(args.now, "--now")
    if args.out.exists() and not args.out.is_dir():
        raise ValueError(f"--out: {args.out} exists and is not a directory")
    log = None
    if args.audit is not None:
        from jaxhedge.serving.audit import AuditLog

        log = AuditLog(args.audit)
    t0, rid = time.perf_counter(), uuid.uuid4().hex
    try:
        advice = advise(args.bundle, args.book, args.market, args.limits, now=now,
                        notional_today=args.notional_today)
    except ValueError as err:
        if log is not None:
            log.record(rid, "cli advise", 400, {"error": str(err).splitlines()[0]})
        raise
    if log is not None:  # committed before the orders are written (acknowledged)
        from jaxhedge.serving.audit import advice_overrides

        log.record(rid, "cli advise", 200, {"orders": advice.orders},
                   snapshot_sha256=advice.meta["snapshot_sha256"],
                   overrides=advice_overrides(advice), bundle_sha=advice.meta["bundle_sha"],
                   latency_ms=1e3 * (time.perf_counter() - t0))
        log.close()
    files = write_advice(advice, args.out)
    for o in advice.orders:
        side = o["side"] or "-"
        print(f"{o['underlying']:>8} {side:>4} {o['shares']:>10,.0f}  target "
              f"{o['target']:>12,.1f}  {o['status']}{'  ' + o['reason'] if o['reason'] else ''}")
    flagged = sum(bool(p["flags"]) for p in advice.positions)
    print(f"{len(advice.positions)} positions ({flagged} overridden); wrote "
          + ", ".join(str(f) for f in files))
    return 0


def serve_arguments(p) -> None:
    p.add_argument("--bundle", type=Path, required=True)
    p.add_argument("--limits", type=Path, default=None)
    p.add_argument("--audit", type=Path, default=Path("audit.sqlite"),
                   help="audit SQLite file (default audit.sqlite)")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default: loopback only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--token-env", default=None, metavar="VAR",
                   help="require 'Authorization: Bearer <token>', the token read from $VAR")
    p.add_argument("--max-body-mb", type=float, default=8.0, help="request size limit")


def run_serve(args) -> int:
    import os

    if not 0 < args.port < 65536:
        raise ValueError(f"--port: must be in [1, 65535] (got {args.port})")
    if not 0 < args.max_body_mb <= 1024:
        raise ValueError(f"--max-body-mb: must be in (0, 1024] (got {args.max_body_mb})")
    token = None
    if args.token_env is not None:
        token = os.environ.get(args.token_env)
        if not token:
            raise ValueError(f"--token-env: environment variable {args.token_env} is empty")
    try:
        import uvicorn

        from jaxhedge.serving.service import create_app
    except ImportError:
        raise ValueError("serve: needs the 'serve' extra (pip install 'jaxhedge[serve]')") \
            from None
    app = create_app(args.bundle, args.limits, args.audit, token=token,
                     max_body_bytes=int(args.max_body_mb * (1 << 20)))
    print(f"serving {args.bundle} on http://{args.host}:{args.port} (audit {args.audit})")
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


COMMANDS = {
    "export": (export_arguments, run_export, "bundle a trained run or a classical hedger"),
    "advise": (advise_arguments, run_advise, "hedge orders for a book and a market snapshot"),
    "audit": (audit_arguments, run_audit, "print the audit log of the advisor service"),
    "serve": (serve_arguments, run_serve, "HTTP advisor service (extra 'serve')"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jaxhedge")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (add, run, help_) in COMMANDS.items():
        p = sub.add_parser(name, help=help_)
        add(p)
        p.set_defaults(func=run)
    return parser


def main(argv=None) -> int:
    """Standalone entry point with the CLI's error contract (one line, exit 2)."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ValueError as err:
        print(f"error: {str(err).splitlines()[0]}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
