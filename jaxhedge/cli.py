"""``jaxhedge`` command line. Bad input: one line naming the field and the range, exit 2."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from jaxhedge.validate import (INT_MAX, MAX_PATHS, MAX_STEPS, SEED_MAX, check_output_dir,
                               check_range)

EXIT_BAD_INPUT = 2


class BadInput(Exception):
    """A user error that should end the program with one line and exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, no usage dump
        raise BadInput(f"{self.prog}: {message}")


def _int_at_least(lo: int, hi: int = INT_MAX):
    """An integer flag in ``[lo, hi]`` (every integer flag has an upper bound too)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer in [{lo}, {hi}] "
                                             f"(got {text!r})")
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"must be an integer in [{lo}, {hi}] "
                                             f"(got {value})")
        return value
    return parse


def _float_in(lo: float, hi: float, lo_open=False, hi_open=True):
    """A finite float flag in the interval (nan, inf and non-numbers are refused)."""
    def parse(text: str) -> float:
        try:
            return check_range("value", text, lo, hi, lo_open, hi_open)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err).removeprefix("value: ")) from None
    return parse


def _registered(lookup):
    """argparse type: a registry name; an unknown one fails with the closest name suggested."""
    def parse(text: str) -> str:
        try:
            return lookup(text).name
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err).split(": ", 1)[-1]) from None
    return parse


def _market_argument(p, **kw):
    from jaxhedge.markets import market_names, market_spec

    p.add_argument("--market", type=_registered(market_spec), choices=market_names(), **kw)


def _check_out(out, files=()):
    """``--out`` checked before any work (see :func:`jaxhedge.validate.check_output_dir`)."""
    try:
        check_output_dir("--out", out, files)
    except ValueError as err:
        raise BadInput(str(err)) from None


def _add_hedge(sub):
    from jaxhedge.agents import hedger_names, hedger_spec

    p = sub.add_parser("hedge", help="hedge a short option with a classical hedger on a "
                                     "simulated market and report P&L and risk")
    _market_argument(p, default="gbm")
    p.add_argument("--agent", type=_registered(hedger_spec), choices=hedger_names(),
                   default="delta")
    p.add_argument("--paths", type=_int_at_least(1, MAX_PATHS), default=100_000)
    p.add_argument("--steps", type=_int_at_least(1, MAX_STEPS), default=30)
    p.add_argument("--cost", type=_float_in(0, 1), default=0.0,
                   help="proportional cost eps (fraction of traded notional)")
    p.add_argument("--seed", type=_int_at_least(0, SEED_MAX), default=0)
    p.add_argument("--sigma", type=_float_in(0, 10, lo_open=True), default=0.2)
    p.add_argument("--mu", type=_float_in(-10, 10), default=0.0)
    p.add_argument("--s0", type=_float_in(0, 1e9, lo_open=True), default=100.0)
    p.add_argument("--strike", type=_float_in(0, 1e9, lo_open=True), default=None,
                   help="default: at the money (= s0)")
    p.add_argument("--maturity", type=_float_in(0, 100, lo_open=True), default=30 / 252,
                   help="years")
    p.add_argument("--rate", type=_float_in(-1, 1), default=0.0)
    p.add_argument("--option", choices=("call", "put"), default="call")
    p.add_argument("--risk-aversion", type=_float_in(0, 1e9, lo_open=True), default=1.0,
                   help="Whalley-Wilmott lambda")
    p.add_argument("--no-unwind-cost", action="store_true",
                   help="mark the final position to market instead of paying to unwind it")
    p.add_argument("--x64", action="store_true", help="run in float64")
    p.add_argument("--out", type=Path, required=True)
    p.set_defaults(func=_cmd_hedge)


def _cmd_hedge(args) -> int:
    import jax

    from jaxhedge import hedge
    from jaxhedge.report.tables import print_metrics_table
    from jaxhedge.runinfo import atomic_write_json, run_metadata

    from jaxhedge.env import validate_env_params

    _check_out(args.out, ("results.json",))
    try:  # before JAX allocates or compiles anything
        hedge.check_rollout_size(args.market, args.paths, args.steps, 8 if args.x64 else 4)
    except ValueError as err:
        raise BadInput(str(err).splitlines()[0]) from None
    if args.x64:
        jax.config.update("jax_enable_x64", True)
    try:
        env, params = hedge.build(args.market, args.steps, option=args.option, s0=args.s0,
                                  strike=args.strike, maturity=args.maturity, sigma=args.sigma,
                                  mu=args.mu, rate=args.rate, cost=args.cost,
                                  charge_unwind=not args.no_unwind_cost)
        validate_env_params(env.config, params)
        hedger = hedge.make_hedger(args.agent, args.option, args.risk_aversion)
    except ValueError as err:
        raise BadInput(str(err).splitlines()[0]) from None
    with _progress(f"{args.agent} on {args.market}") as advance:
        report = hedge.run_hedge(env, params, hedger, args.paths, seed=args.seed,
                                 on_chunk=advance)
    row = {"agent": args.agent, "market": args.market, **report.metrics,
           "wall_s": report.wall_s, "path_steps_per_s": report.path_steps_per_s}
    print_metrics_table([row], title=f"{args.paths:,} paths x {args.steps} steps, "
                                     f"cost {args.cost:g}")
    results = {**report.metrics, "wall_s": report.wall_s, "compile_s": report.compile_s,
               "path_steps_per_s": report.path_steps_per_s,
               "premium": float(params.premium),
               "config": {k: (str(v) if isinstance(v, Path) else v)
                          for k, v in vars(args).items() if k != "func"},
               **run_metadata()}
    atomic_write_json(args.out / "results.json", results)
    print(f"wrote {args.out / 'results.json'}")
    return 0


def _add_demo(sub):
    p = sub.add_parser("demo", help="the main job on built-in simulated markets")
    p.add_argument("--paths", type=_int_at_least(1, MAX_PATHS), default=20_000)
    p.add_argument("--no-train", action="store_true", help="classical hedgers only")
    p.add_argument("--out", type=Path, default=Path("runs/demo"))
    p.set_defaults(func=_cmd_demo)


def _cmd_demo(args) -> int:
    from jaxhedge.demo import run_demo

    _check_out(args.out, ("results.json", "demo.md", "demo.csv"))
    run_demo(args.out, n_paths=args.paths, train=not args.no_train)
    return 0


TRAIN_AGENTS = ("deep-hedging", "rlop", "adaptive-qlbs", "qlbs")


def _add_train(sub):
    p = sub.add_parser("train", help="train a learning agent (or --resume a run)")
    p.add_argument("--agent", choices=TRAIN_AGENTS)
    p.add_argument("--preset", help="experiments/<agent>/<preset>.toml")
    p.add_argument("--config", type=Path, help="a TOML job file")
    p.add_argument("--set", dest="overrides", action="append", default=[],
                   metavar="KEY=VALUE", help="override a config field, e.g. train.n_steps=500")
    p.add_argument("--seeds", type=_int_at_least(1), help="= train.n_seeds")
    p.add_argument("--steps", type=_int_at_least(1), help="= train.n_steps")
    p.add_argument("--resume", type=Path, metavar="RUN_DIR", help="continue a run")
    p.add_argument("--out", type=Path)
    p.set_defaults(func=_cmd_train)


def _cmd_train(args) -> int:
    import dataclasses

    from jaxhedge import train
    from jaxhedge.config import to_dict

    if args.out is not None:
        _check_out(args.out, ("run.json",))
    if args.resume is not None:
        _check_out(args.resume, ("run.json",))
        if not (args.resume / "checkpoints").is_dir():
            raise BadInput(f"--resume: no run at {args.resume}")
        result = _training_errors(lambda: train.resume_training(args.resume, args.steps))
        return _report_training(result)
    if args.agent is None or args.out is None:
        raise BadInput("train: --agent and --out are required (or --resume RUN_DIR)")
    from jaxhedge.train.jobs import load_job

    overrides = list(args.overrides)
    if args.seeds is not None:
        overrides.append(f"train.n_seeds={args.seeds}")
    if args.steps is not None:
        overrides.append(f"train.n_steps={args.steps}")
    try:
        job = load_job(args.agent, args.preset, args.config, overrides)
        if args.agent == "qlbs":  # priced by DP/FQI, not trained
            return _price_qlbs(job, args.out)
        agent, hparams = job.build()
    except ValueError as err:
        raise BadInput(str(err).splitlines()[0]) from None
    result = _training_errors(lambda: train.run_training(
        agent, hparams, run_dir=args.out, config=to_dict(job),
        **dataclasses.asdict(job.train)))
    return _report_training(result)


def _price_qlbs(job, out) -> int:
    from jaxhedge.train.jobs import run_qlbs

    info = run_qlbs(job, out)
    print(f"QLBS {job.config.method} {job.config.n_steps} steps, {job.train.n_seeds} seeds: "
          f"price {info['price']:.4f} +- {info['price_std']:.4f} (BS {info['bs_price']:.4f}) "
          f"in {info['wall_s']:.1f}s (compile {info['compile_s']:.1f}s)")
    print(f"wrote {out}/run.json")
    return 0


def _one_line_warnings():
    """Warnings (a checkpoint fallback) as ``warning: ...`` lines on stderr."""
    import warnings

    class Lines(warnings.catch_warnings):
        def __enter__(self):
            super().__enter__()
            warnings.showwarning = lambda message, *_a, **_k: print(
                f"warning: {str(message).splitlines()[0]}", file=sys.stderr)

    return Lines()


def _training_errors(fn):
    from jaxhedge.train import NonFiniteError, RunDirError

    try:
        with _one_line_warnings():
            return fn()
    except RunDirError as err:
        raise BadInput(str(err).splitlines()[0]) from None
    except NonFiniteError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(1) from None


def _report_training(result) -> int:
    info = result.info
    final = info.get("final_metrics") or {}
    print(f"trained {info.get('agent_name', 'agent')} to step {info.get('step'):,} in "
          f"{info.get('wall_s', 0):.1f}s (compile {info.get('compile_s', 0):.1f}s); "
          f"params_sha256 {info.get('params_sha256', '')[:16]}")
    skip = {"step", "member", "hparam_set", "seed_index"}
    for row in final if isinstance(final, list) else [final]:
        values = " ".join(f"{k}={v:.4g}" for k, v in row.items()
                          if k not in skip and isinstance(v, (int, float)))
        print(f"  member {row.get('member', 0)}: {values}")
    print(f"wrote {result.run_dir}/run.json")
    return 0


def _add_eval(sub):
    p = sub.add_parser("eval", help="evaluate a trained run beside BS delta and "
                                    "Whalley-Wilmott on the same paths")
    p.add_argument("run_dir", type=Path)
    _market_argument(p, help="default: the training market")
    p.add_argument("--paths", type=_int_at_least(1, MAX_PATHS), default=100_000)
    p.add_argument("--seed", type=_int_at_least(0, SEED_MAX), default=1)
    p.add_argument("--member", type=_int_at_least(0), default=0)
    p.add_argument("--risk-aversion", type=_float_in(0, 1e9, lo_open=True), default=1.0,
                   help="Whalley-Wilmott lambda")
    p.add_argument("--boot", type=_int_at_least(1, 100_000), default=None,
                   help="bootstrap replicates of the paired differences to BS delta "
                        "(default: evaluate.N_BOOT = 1000)")
    p.add_argument("--out", type=Path, required=True)
    p.set_defaults(func=_cmd_eval)


def _cmd_eval(args) -> int:
    from jaxhedge.evaluate import N_BOOT, OUTPUT_FILES, evaluate_run

    _check_out(args.out, OUTPUT_FILES)
    if not (args.run_dir / "checkpoints").is_dir():
        raise BadInput(f"run_dir: no trained run at {args.run_dir}")
    try:
        with _one_line_warnings():
            evaluate_run(args.run_dir, args.out, market=args.market, n_paths=args.paths,
                         seed=args.seed, member=args.member,
                         risk_aversion=args.risk_aversion, n_boot=args.boot or N_BOOT)
    except ValueError as err:
        raise BadInput(str(err).splitlines()[0]) from None
    return 0


def _add_sweep(sub):
    from jaxhedge.sweep.command import add_arguments

    p = sub.add_parser("sweep", help="run a hyperparameter sweep file (local devices or Ray)")
    add_arguments(p, _int_at_least)
    p.set_defaults(func=_cmd_sweep)


def _cmd_sweep(args) -> int:
    from jaxhedge.sweep.command import run_command, user_errors

    try:
        return run_command(args)
    except user_errors() as err:  # ConfigError, SweepDirError: one line naming the field
        raise BadInput(str(err).splitlines()[0]) from None


def _add_stress(sub):
    from jaxhedge.stress.command import add_arguments

    p = sub.add_parser("stress", help="stress-test hedgers on named scenarios (same paths "
                                      "for every agent)")
    add_arguments(p, _int_at_least, _float_in)
    p.set_defaults(func=_cmd_stress)


def _cmd_stress(args) -> int:
    from jaxhedge.stress.command import run_command

    _check_out(args.out, ("stress.csv", "stress.md", "stress_heatmap.png", "stress.json"))
    try:
        return run_command(args)
    except ValueError as err:  # unknown agent/scenario, contract mismatch: one line
        raise BadInput(str(err).splitlines()[0]) from None


def _add_reproduce(sub):
    from jaxhedge.reproduce.command import add_arguments

    p = sub.add_parser("reproduce", help="the papers' SPY/XOP study: static IV fit vs "
                                         "after-cost hedging, tables and figures")
    add_arguments(p)
    p.set_defaults(func=_cmd_reproduce)


def _cmd_reproduce(args) -> int:
    from jaxhedge.reproduce.command import OUTPUT_FILES, run_command

    _check_out(args.out, OUTPUT_FILES)
    try:
        return run_command(args)
    except ValueError as err:  # bad list entry, missing data, config error: one line
        raise BadInput(str(err).splitlines()[0]) from None


class _progress:
    """Rich progress bar over chunks, shown only when there is more than one chunk."""

    def __init__(self, label: str):
        self.label, self.bar, self.task = label, None, None

    def __enter__(self):
        def advance(done: int, total: int):
            if total <= 1:
                return
            if self.bar is None:
                from rich.progress import Progress
                self.bar = Progress(transient=True)
                self.bar.start()
                self.task = self.bar.add_task(self.label, total=total)
            self.bar.update(self.task, completed=done)
        return advance

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.stop()
        return False


def _add_desk(sub):
    from jaxhedge.serving.command import COMMANDS

    for name, (add, _run, help_) in COMMANDS.items():  # export, advise, audit, serve
        p = sub.add_parser(name, help=help_)
        add(p)
        p.set_defaults(func=lambda args, name=name: _cmd_desk(name, args))


def _cmd_desk(name, args) -> int:
    from jaxhedge.serving.command import COMMANDS

    try:
        return COMMANDS[name][1](args)
    except ValueError as err:  # bad bundle, book, snapshot or limits: one line
        raise BadInput(str(err).splitlines()[0]) from None


def _add_shadow(sub):
    from jaxhedge.serving.shadow import shadow_arguments

    p = sub.add_parser("shadow", help="replay the study's real SPY/XOP episodes through a "
                                      "bundle's advisor, day by day, and score them")
    shadow_arguments(p)
    p.set_defaults(func=_cmd_shadow)


def _cmd_shadow(args) -> int:
    from jaxhedge.serving.shadow import run_shadow

    try:
        return run_shadow(args)
    except ValueError as err:  # unknown asset/period/slice, bad bundle, run or data: one line
        raise BadInput(str(err).splitlines()[0]) from None


def _add_check(sub):
    p = sub.add_parser("check", help="run the sanity gates on a trained run "
                                     "(exit 0 pass, 1 fail; a table of every check)")
    p.add_argument("run_dir", type=Path)
    p.add_argument("--member", type=_int_at_least(0), default=0)
    p.add_argument("--out", type=Path, default=None, help="also write the results as JSON")
    p.set_defaults(func=_cmd_check)


def _cmd_check(args) -> int:
    from jaxhedge import gates
    from jaxhedge.runinfo import atomic_write_json
    from jaxhedge.runs import RunDirError, check_run

    if args.out is not None:
        _check_out(args.out.parent)
    try:
        results = check_run(args.run_dir, args.member)
    except (RunDirError, ValueError) as err:
        raise BadInput(str(err).splitlines()[0]) from None
    gates.print_gates(results, title=f"sanity gates: {args.run_dir} (member {args.member})")
    if args.out is not None:
        atomic_write_json(args.out, {"run_dir": str(args.run_dir), "member": args.member,
                                     "passed": not gates.failed(results),
                                     "gates": [gates.as_dict(r) for r in results]})
    label = gates.gate_label(results)
    print(label or "all gates passed")
    return 1 if label else 0


def _add_bench(sub):
    from jaxhedge.bench.command import add_arguments

    p = sub.add_parser("bench", help="run the benchmark harness on the current backend: "
                                     "one JSON, a markdown summary and a throughput plot")
    add_arguments(p)
    p.set_defaults(func=_cmd_bench)


def _cmd_bench(args) -> int:
    from jaxhedge.bench.command import run_command

    try:
        return run_command(args)
    except ValueError as err:  # --out not .json, unknown mode: one line
        raise BadInput(str(err).splitlines()[0]) from None


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="jaxhedge", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _add_hedge(sub)
    _add_train(sub)
    _add_eval(sub)
    _add_demo(sub)
    _add_stress(sub)
    _add_sweep(sub)
    _add_reproduce(sub)
    _add_desk(sub)
    _add_shadow(sub)
    _add_bench(sub)
    _add_check(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from jaxhedge.cpu import use_all_cores

    use_all_cores()  # before JAX starts: one XLA device per core for the sharded rollout
    import logging

    logging.getLogger("absl").setLevel(logging.ERROR)  # orbax's read-only notices
    try:
        args = build_parser().parse_args(argv)
        return args.func(args)
    except BadInput as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
