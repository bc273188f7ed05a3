"""`vla bench` results: one row per method -> JSON, Markdown, plots, and the README "Results" section.

Row fields (``bench.json["rows"][method]``):
    weights            "default" | "own" | "untrained" (see vla/bench/methods.py) and ``checkpoint`` (its source)
    visual_tokens      visual tokens entering the backbone per call (``visual_tokens_after``: after in-LM selection)
    layers             decoder layers run; ``cache_interval`` of the flow head (1 = no step cache)
    gflops             per policy call (FlopCounterMode), ``flops_ratio`` = gflops / none's
    latency_ms         batch-1 ``p50`` / ``p99`` per call and per-stage medians, all methods interleaved
    speedup            none's p50 / this p50
    success            {rate, ci95 [lo, hi] (Wilson), successes, episodes} from vla.evaluate, or null if
                       the row was not evaluated (learned method without its own checkpoint)
``bench.json["goal"]``: ``goal_check`` of the accel_fast row against none (speedup, FLOPs, success).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

STAGES = ("vision", "compressor", "backbone", "action_head")
README_START, README_END = "<!-- results:start -->", "<!-- results:end -->"


def make_row(prepared, prof: dict[str, Any], evaluation: dict | None, video: str | None) -> dict[str, Any]:
    policy = prepared.policy
    success = None
    if evaluation is not None:
        overall = evaluation["overall"]
        success = {"rate": overall["success_rate"], "ci95": overall["ci95"], "successes": overall["successes"],
                   "episodes": overall["episodes"], "report": evaluation.get("report_path"),
                   "rollout_latency_ms_p50": evaluation["latency_ms"]["p50"]}
    lat = prof["latency_ms"]
    return {
        "method": prepared.name,
        "weights": prepared.source,
        "checkpoint": prepared.checkpoint,
        "prepared_checkpoint": prepared.saved,
        "learned": bool(policy.model.compressor.learned),
        "compressor": policy.config.compressor.name,
        "compressor_kwargs": dict(policy.config.compressor.kwargs),
        "compressor_stage": prof["compressor_stage"],
        "visual_tokens": prof["visual_tokens"],
        "visual_tokens_after": prof["visual_tokens_after"],
        "layers": len(policy.model.backbone.lm.layers),
        "removed_layers": list(policy.config.backbone.removed_layers),
        "cache_interval": int(getattr(policy.model.head, "cache_interval", 1)),
        "gflops": prof["gflops"],
        "flops_stages": prof["flops"]["stages"],
        "latency_ms": {"p50": lat["total"], "p99": prof["latency_ms_p99"], "iqr": prof["latency_ms_iqr"],
                       "stages": {s: lat[s] for s in STAGES}},
        "success": success,
        "video": video,
        "notes": prepared.notes,
    }


def add_ratios(rows: dict[str, dict[str, Any]], baseline: str = "none") -> None:
    base = rows.get(baseline)
    for row in rows.values():
        row["flops_ratio"] = row["gflops"] / base["gflops"] if base else None
        row["speedup"] = base["latency_ms"]["p50"] / row["latency_ms"]["p50"] if base else None


# The project's goal for its recommended preset (accel=fast) against the uncompressed model.
GOAL = {"method": "accel_fast", "min_speedup": 2.5, "max_flops_ratio": 0.30, "max_success_drop_pp": 5.0}


def goal_check(rows: dict[str, dict[str, Any]], goal: dict[str, Any] = GOAL) -> dict[str, Any] | None:
    """Speedup, FLOPs ratio and success change of ``goal["method"]`` vs ``none``, each with met/missed.
    None when either row is absent; the success clause is None when either row was not evaluated."""
    row, base = rows.get(goal["method"]), rows.get("none")
    if row is None or base is None:
        return None
    check = {**goal, "speedup": row["speedup"], "flops_ratio": row["flops_ratio"],
             "speedup_met": row["speedup"] >= goal["min_speedup"],
             "flops_met": row["flops_ratio"] <= goal["max_flops_ratio"], "success_drop_pp": None, "success_met": None}
    if row["success"] is not None and base["success"] is not None:
        drop = 100.0 * (base["success"]["rate"] - row["success"]["rate"])
        check.update(success_drop_pp=drop, success_met=drop <= goal["max_success_drop_pp"])
    check["met"] = bool(check["speedup_met"] and check["flops_met"] and check["success_met"])
    return check


def goal_line(check: dict[str, Any] | None) -> str:
    if check is None:
        return f"Goal: not checked (needs the `none` and `{GOAL['method']}` rows)."
    mark = {True: "met", False: "MISSED", None: "not measured"}
    success = ("success not measured" if check["success_drop_pp"] is None else
               f"success {-check['success_drop_pp']:+.1f} pp (goal: at most -{check['max_success_drop_pp']:g} pp, "
               f"{mark[check['success_met']]})")
    return (f"Goal ({check['method']} vs none): {check['speedup']:.2f}× lower batch-1 latency (goal >= "
            f"{check['min_speedup']:g}×, {mark[check['speedup_met']]}), {100 * check['flops_ratio']:.1f} % of the "
            f"FLOPs (goal <= {100 * check['max_flops_ratio']:g} %, {mark[check['flops_met']]}), {success}: "
            f"**{'met' if check['met'] else 'not met'}**.")


# --------------------------------------------------------------------------------------------------
# Markdown
# --------------------------------------------------------------------------------------------------
def _tokens(row: dict) -> str:
    t = str(row["visual_tokens"])
    return t + (f"→{row['visual_tokens_after']}" if row["visual_tokens_after"] != row["visual_tokens"] else "")


def _success(row: dict) -> str:
    s = row["success"]
    if s is None:
        return "not evaluated (no trained checkpoint)"
    lo, hi = s["ci95"]
    return f"{s['rate']:.2f} [{lo:.2f}, {hi:.2f}] ({s['successes']}/{s['episodes']})"


def _weights(row: dict) -> str:
    return {"default": "default ckpt", "own": "own ckpt", "untrained": "untrained (cost only)"}.get(
        row["weights"], row["weights"])


def markdown_table(report: dict[str, Any], rel_to: Path | None = None, videos: bool = True) -> str:
    head = ("method", "weights", "tokens→LM", "layers", "head cache", "GFLOPs", "FLOPs vs none", "p50 ms", "p99 ms",
            "speedup", "success [95% CI]") + (("video",) if videos else ())
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in report["rows"].values():
        ratio = "-" if row.get("flops_ratio") is None else f"{100 * row['flops_ratio']:.1f} %"
        speed = "-" if row.get("speedup") is None else f"{row['speedup']:.2f}×"
        video = row.get("video") or ""
        if video and rel_to is not None:
            video = str(Path(video).relative_to(rel_to)) if Path(video).is_relative_to(rel_to) else video
        cells = (row["method"], _weights(row), _tokens(row), str(row["layers"]),
                 "-" if row["cache_interval"] == 1 else f"every {row['cache_interval']}",
                 f"{row['gflops']:.3f}", ratio, f"{row['latency_ms']['p50']:.1f}", f"{row['latency_ms']['p99']:.1f}",
                 speed, _success(row)) + ((f"[mp4]({video})" if video else "",) if videos else ())
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def markdown(report: dict[str, Any], rel_to: Path | None = None) -> str:
    m = report["meta"]
    lines = [
        f"# vla bench: {m['env']} ({m['split']} layouts), "
        f"{m['episodes']} episode(s) x {len(m['tasks'])} task(s) per method",
        "",
        f"- default checkpoint: `{m['checkpoint']}`; own checkpoints: {m['checkpoints'] or 'none'}",
        f"- visual-token budget: {m['budget_per_camera']} per camera ({m['budget_per_camera'] * m['cameras']} total) "
        "where the method allows it; pool is 2x2 (64 per camera), stc 16 and src 64 per camera",
        f"- latency: batch 1, {m['device']}, {m['threads']} thread(s), median/p99 of {m['repeats']} interleaved calls "
        f"per method (after {m['warmup']} warm-up); machine load average {m['load_avg']}",
        "- FLOPs: torch FlopCounterMode over one call (matmuls + attention)",
        f"- wall time: {m['wall_s']:.0f} s; reproduce: `{m['command']}`",
        "",
        markdown_table(report, rel_to),
        "",
        goal_line(report.get("goal")),
        "",
        "Weights: *default ckpt* = training-free method applied to the default checkpoint; *own ckpt* = "
        "trained with that compressor; *untrained* = learned compressor without a trained checkpoint "
        "(tokens, FLOPs and latency are real, success is not measured).",
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# Plots
# --------------------------------------------------------------------------------------------------
def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_success_vs_gflops(report: dict[str, Any], path: Path) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    skipped = []
    for i, (name, row) in enumerate(report["rows"].items()):
        s = row["success"]
        if s is None:
            skipped.append(name)
            continue
        lo, hi = s["ci95"]
        ax.errorbar(row["gflops"], s["rate"], yerr=[[s["rate"] - lo], [hi - s["rate"]]], fmt="os^D"[i % 4], capsize=3,
                    color=plt.cm.tab20(i % 20), label=name)  # a legend, not annotations: methods at one budget sit on top of each other
    ax.set_xlabel("GFLOPs per policy call")
    ax.set_ylabel("success rate (95% Wilson CI)")
    ax.set_ylim(-0.05, 1.05)
    title = "success vs compute"
    if skipped:
        title += f" (not evaluated: {', '.join(skipped)})"
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    if len(report["rows"]) > len(skipped):
        ax.legend(fontsize=7, ncol=2, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_latency_stages(report: dict[str, Any], path: Path) -> Path:
    plt = _plt()
    names = list(report["rows"])
    fig, ax = plt.subplots(figsize=(6.4, 0.4 * len(names) + 1.5))
    left = [0.0] * len(names)
    for stage in STAGES:
        values = [report["rows"][n]["latency_ms"]["stages"][stage] for n in names]
        ax.barh(names, values, left=left, label=stage)
        left = [a + b for a, b in zip(left, values)]
    ax.invert_yaxis()
    ax.set_xlabel("median latency per call (ms), batch 1, interleaved")
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title("latency per stage", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


# --------------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------------
def write(report: dict[str, Any], out: Path) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "bench.json", "md": out / "bench.md",
             "success_plot": out / "success_vs_gflops.png", "latency_plot": out / "latency_stages.png"}
    report["files"] = {k: str(v) for k, v in paths.items()}
    paths["json"].write_text(json.dumps(report, indent=2, default=str) + "\n")
    paths["md"].write_text(markdown(report, rel_to=out) + "\n")
    plot_success_vs_gflops(report, paths["success_plot"])
    plot_latency_stages(report, paths["latency_plot"])
    return paths


def readme_section(report: dict[str, Any]) -> str:
    m = report["meta"]
    return "\n".join([
        f"Measured by `vla bench` ({m['env']}, {m['episodes']} episode(s) x {len(m['tasks'])} task(s) per method, "
        f"{m['device']}, {m['threads']} thread(s), load average {m['load_avg']}; {m['wall_s'] / 60:.1f} min).",
        "",
        markdown_table(report, videos=False),
        "",
        goal_line(report.get("goal")),
        "",
        f"Reproduce: `{m['command']}` (plots and overlay videos: `{shown_path(Path(report['files']['json']).parent)}`).",
        "Regenerate this section: `python scripts/readme_results.py <bench.json>`.",
    ])


def shown_path(path: Any) -> str:
    """Relative to the working directory when under it (so a README section or a reproduce command
    works in another clone of the repo, e.g. checkpoints/...), absolute otherwise."""
    path = Path(str(path)).absolute()
    return str(path.relative_to(Path.cwd())) if path.is_relative_to(Path.cwd()) else str(path)


def update_readme(readme: str | Path, report: dict[str, Any]) -> Path:
    """Replace the text between the results markers (appending a Results section with markers if absent)."""
    readme = Path(readme)
    text = readme.read_text() if readme.is_file() else ""
    block = f"{README_START}\n{readme_section(report)}\n{README_END}"
    if README_START in text and README_END in text:
        pattern = re.compile(re.escape(README_START) + r".*?" + re.escape(README_END), re.S)
        text = pattern.sub(lambda _: block, text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n## Results\n\n" + block + "\n"
    readme.write_text(text)
    return readme
