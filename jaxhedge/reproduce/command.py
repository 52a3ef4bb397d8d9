"""``jaxhedge reproduce``: argument parsing and the run (kept out of cli.py)."""
from __future__ import annotations

import difflib
import os
import time
from pathlib import Path

from jaxhedge.reproduce.config import AGENT_OF_MODEL, MODELS, PARTS

__all__ = ["add_arguments", "run_command", "parse_list", "default_data_dir"]

ASSETS = ("spy", "xop")
PERIODS = ("2020q1", "2025q2")
DATA_ENV = "JAXHEDGE_DATA_DIR"
#: what ``--out`` receives (checked writable before any work)
OUTPUT_FILES = ("study.json", "summary.md", "drops.csv", "static_ivrmse.csv", "static_ivrmse.md",
                "hedging.csv", "hedging.md", "figures/pnl_cdf.png")


def default_data_dir() -> Path:
    """``$JAXHEDGE_DATA_DIR``, else ``../shared/data/options`` from the working directory."""
    return Path(os.environ.get(DATA_ENV, Path("..") / "shared" / "data" / "options"))


def parse_list(field: str, text: str, allowed: tuple[str, ...]) -> tuple[str, ...]:
    """``"a,b"`` -> ("a", "b") in ``allowed`` order; unknown or empty -> one-line ValueError."""
    items = [t.strip().lower() for t in text.split(",") if t.strip()]
    if not items:
        raise ValueError(f"{field}: give at least one of {','.join(allowed)}")
    for t in items:
        if t not in allowed:
            near = difflib.get_close_matches(t, allowed, n=1)
            hint = f" (did you mean '{near[0]}'?)" if near else ""
            raise ValueError(f"{field}: unknown '{t}'{hint}; allowed: {','.join(allowed)}")
    return tuple(a for a in allowed if a in items)


def add_arguments(p) -> None:
    p.add_argument("--data", type=Path, default=None,
                   help=f"folder with the shared option files (default: ${DATA_ENV} or "
                        f"../shared/data/options)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--parts", default=",".join(PARTS), help="static,hedging")
    p.add_argument("--models", default=",".join(MODELS), help="bs,jd,sv,aqlbs,rlop")
    p.add_argument("--assets", default=",".join(ASSETS), help="spy,xop")
    p.add_argument("--periods", default=",".join(PERIODS), help="2020q1,2025q2")
    p.add_argument("--agents", nargs="+", type=Path, default=[], metavar="RUN_DIR",
                   help="trained Adaptive-QLBS (aqlbs) / RLOP (rlop) runs; missing ones are "
                        "trained with experiments/paper/study.toml's presets")
    p.add_argument("--config", type=Path, default=None,
                   help="study TOML (default experiments/paper/study.toml)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a study config field, e.g. cost=0.002")


def run_command(args) -> int:
    import jax
    from rich.console import Console

    from jaxhedge.reproduce.agents import load_agents, train_agents
    from jaxhedge.reproduce.config import load_study_config
    from jaxhedge.reproduce.study import StudyRequest, load_inputs

    parts = parse_list("--parts", args.parts, PARTS)
    models = parse_list("--models", args.models, MODELS)
    assets = parse_list("--assets", args.assets, ASSETS)
    periods = parse_list("--periods", args.periods, PERIODS)
    data = args.data if args.data is not None else default_data_dir()
    if not data.is_dir():
        raise ValueError(f"--data: no directory at {data} (give the folder holding the shared "
                         f"option files, or set ${DATA_ENV})")
    config = load_study_config(args.config, args.overrides)
    console = Console(stderr=True)
    t0 = time.perf_counter()
    request = StudyRequest(data_dir=data, out=args.out, parts=parts, models=models,
                           assets=assets, periods=periods)
    inputs = load_inputs(request)  # every file validated before training or fitting
    print_drop_reports(inputs)

    rl = [m for m in models if m in AGENT_OF_MODEL]
    agents = load_agents(args.agents) if rl else {}
    missing = [m for m in rl if m not in agents]
    if missing:  # train before switching to float64: the agents are float32 networks
        dirs = train_agents(missing, config, args.out, log=console.print)
        agents.update(load_agents(dirs.values()))
    x64_before = jax.config.jax_enable_x64
    if config.x64:
        jax.config.update("jax_enable_x64", True)
    try:
        return _run(args, config, agents, request, inputs, console, t0)
    finally:  # leave the process as found (in-process callers, tests)
        jax.config.update("jax_enable_x64", x64_before)


def print_drop_reports(inputs: dict) -> None:
    """One block per input file: rows in / kept / dropped, then one line per reason."""
    from jaxhedge.data.loader import shared_file

    for (asset, period), pdata in inputs.items():
        print(f"{shared_file('.', asset, period).name}: {pdata.report}")


def _run(args, config, agents, request, inputs, console, t0) -> int:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from jaxhedge.reproduce.study import run_study

    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/"
               "{task.total}"), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task("reproduce", total=None)

        def progress(done, total, label):
            bar.update(task, completed=done, total=total, description=label)
            console.print(f"[{time.perf_counter() - t0:7.1f}s] {label}")

        info = run_study(request, config, agents, log=console.print, progress=progress,
                         inputs=inputs)
    # the headline: gate exclusions (with the reason), the verdict against BS, and the
    # rank correlations when both parts ran
    text = (args.out / "summary.md").read_text()
    print("\n".join(l for l in text.splitlines() if l.startswith("- ")))
    print(f"wrote {args.out} in {time.perf_counter() - t0:.0f}s (study {info['wall_s']:.0f}s)")
    return 0
