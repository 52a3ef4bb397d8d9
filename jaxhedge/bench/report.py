"""Write a harness result: the JSON, a markdown summary and the throughput plot (atomic)."""
from __future__ import annotations

from pathlib import Path

from jaxhedge.runinfo import atomic_write_json, atomic_write_text, save_figure


def _fmt_s(x) -> str:
    return f"{1e3 * x:.1f} ms" if x < 1 else f"{x:.2f} s"


def markdown(result: dict, plot_name: str | None = None) -> str:
    """A summary table: one row per ratio, with the command and the machine."""
    dev = result["device"]
    lines = [f"# jaxhedge bench ({result['mode']})", "",
             f"Backend {result['backend']} ({result['device_kind']}, {dev['n_devices']} "
             f"device(s), {dev['cpu_count']} CPUs), jax {result['jax']}, git "
             f"{result['git_sha']}, load average {result['load_average'][0]:.2f}, fp32 "
             f"matmul peak {result['matmul_peak_gflops_fp32']:.1f} GFLOP/s.", "",
             f"Command: `{result['command']}`", "",
             *(["**Loaded machine** (load average above the CPU count): these timings are "
                "not credible as published figures.", ""]
               if result["load_average"][0] > dev["cpu_count"] else []),
             "| measurement | work | jaxhedge | reference | ratio |", "|---|---|---|---|---|"]
    for m in result["measurements"]:
        ours, ref = m["jaxhedge"], m["reference"]
        work = f"{m['work']['count']:,} {m['work']['unit']}: {m['work']['what']}"
        if "skipped" in ref:
            lines.append(f"| {m['name']} | {work} | {_summary(ours)} | skipped: "
                         f"{ref['skipped']} | - |")
            continue
        for k, v in m.get("ratios", {}).items():
            lines.append(f"| {m['name']} `{k}` | {work} | {_summary(ours, k)} | "
                         f"{m['reference_name']}: {_summary(ref, k)} | {v:.2f}x |")
    if plot_name:
        lines += ["", f"![throughput vs batch size]({plot_name})"]
    lines += ["", "Ratios > 1: jaxhedge faster (reference time / jaxhedge time, or "
              "jaxhedge rate / reference rate).", ""]
    return "\n".join(lines)


def _summary(d: dict, key: str | None = None) -> str:
    if key and key.startswith("price_") and key.endswith("_s"):
        n = key[len("price_"):-2]
        return _fmt_s(d.get("price_s", {}).get(n, float("nan")))
    for k in ((key,) if key else ()) + ("path_steps_per_s", "epoch_s", "run_s", "gflops",
                                       "matmul_peak_gflops"):
        if k in d:
            v = d[k]
            if k.endswith("_s") and not k.endswith("per_s"):
                return _fmt_s(v)
            return f"{v:.3g} {k}"
    return "-"


def throughput_plot(result: dict, path: Path) -> Path | None:
    """Rollout path-steps/s (and pfhedge-example price paths/s) vs batch size, log-log."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for m in result["measurements"]:
        if m["name"] == "rollout":
            xs = [r["n_paths"] for r in m["sweep"]]
            ax.plot(xs, [r["path_steps_per_s"] for r in m["sweep"]], "o-",
                    label="jaxhedge rollout (path-steps/s)")
            ref = m["reference"]
            ax.plot([ref["n_paths"]], [ref["path_steps_per_s"]], "s",
                    label="numpy rollout (path-steps/s)")
        if m["name"] == "deep_hedging_pfhedge_example":
            steps = m["jaxhedge"]["n_steps"]
            for who, d in (("jaxhedge", m["jaxhedge"]), ("pfhedge", m["reference"])):
                pts = sorted((int(n), int(n) * steps / t) for n, t in d.get("price_s", {}).items())
                if pts:
                    ax.plot(*zip(*pts), "^--", label=f"{who} deep-hedging price pass "
                                                     "(path-steps/s)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("paths per call")
    ax.set_ylabel("path-steps / s")
    ax.set_title(f"Throughput vs batch size ({result['backend']}, {result['device_kind']})")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path)


def write_outputs(result: dict, out: str | Path) -> list[Path]:
    """``out`` (JSON), ``out`` with ``.md`` and ``_throughput.png``; returns the paths."""
    out = Path(out)
    png = out.with_name(out.stem + "_throughput.png")
    md = out.with_suffix(".md")
    throughput_plot(result, png)
    atomic_write_json(out, result)
    atomic_write_text(md, markdown(result, png.name))
    return [out, md, png]
