"""`vla bench rtc`: success and chunk-boundary jerk for sync / async / RTC execution per injected delay.

Each cell (mode, delay) is a `vla eval execution=<mode> delay_ms=<ms>` run (vla/evaluate.py ->
vla/chunking.py's executor) on the same tasks, held-out layouts and seeds. Jerk is the mean L2 norm
of the arm dims' second difference a[t+1] - 2 a[t] + a[t-1] of the executed actions, at chunk switches
(the two steps centred either side of the step whose action comes from another chunk or a hold)
and elsewhere (docs/experiments/rtc.md). Writes rtc.json, rtc.md and rtc.png into the run dir.
"""

from __future__ import annotations

import contextlib
import io
import json
import shlex
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from vla.configs import CONFIG_DIR


def cell(cfg: DictConfig, env_cfg: dict, mode: str, delay_ms: float, out: Path) -> dict[str, Any]:
    from vla.evaluate import evaluate

    eval_cfg = OmegaConf.create({
        "env": env_cfg, "checkpoint": str(cfg.checkpoint), "episodes": int(cfg.episodes), "tasks": list(cfg.tasks),
        "split": cfg.split, "num_envs": 1, "replan": cfg.horizon, "seed": int(cfg.seed), "device": str(cfg.device),
        "threads": cfg.threads, "policy": {}, "video": False, "video_episodes": 0,
        "execution": mode, "delay_ms": float(delay_ms), "rtc_beta": float(cfg.beta),
    })
    folder = out / "eval" / f"{mode}_{delay_ms:g}ms"
    folder.mkdir(parents=True, exist_ok=True)
    log = io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stdout(log):
        report = evaluate(eval_cfg, folder)
    (folder / "stdout.txt").write_text(log.getvalue())
    ex, overall = report["execution"], report["overall"]
    return {"mode": mode, "delay_ms": float(delay_ms), "delay_steps": ex["delay_steps"], "horizon": ex["horizon"],
            "successes": overall["successes"], "episodes": overall["episodes"], "success_rate": overall["success_rate"],
            "ci95": overall["ci95"], "mean_length": overall["mean_length"], "jerk_boundary": ex["boundary"],
            "jerk_other": ex["other"], "jerk_ratio": ex["ratio"], "holds_per_episode": ex["holds_per_episode"],
            "latency_p50_ms": report["latency_ms"]["p50"], "wall_s": round(time.perf_counter() - start, 1),
            "report": str(folder / "eval.json")}


def markdown(rows: list[dict]) -> str:
    f3 = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    lines = ["| execution | delay ms (steps) | success | 95% CI | mean length | jerk at switches | jerk elsewhere | ratio | holds/episode |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lo, hi = r["ci95"]
        lines.append(f"| {r['mode']} | {r['delay_ms']:g} ({r['delay_steps']}) | {r['successes']}/{r['episodes']} | "
                     f"[{lo:.2f}, {hi:.2f}] | {r['mean_length']:.1f} | {f3(r['jerk_boundary'])} | {f3(r['jerk_other'])} | "
                     f"{'-' if r['jerk_ratio'] is None else f'{r['jerk_ratio']:.2f}'} | {r['holds_per_episode']:.1f} |")
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.4))
    for mode in dict.fromkeys(r["mode"] for r in rows):
        rs = [r for r in rows if r["mode"] == mode]
        x = [r["delay_ms"] for r in rs]
        a.plot(x, [r["success_rate"] for r in rs], marker="o", label=mode)
        b.plot(x, [r["jerk_boundary"] or 0.0 for r in rs], marker="o", label=f"{mode} (switches)")
    b.plot(x, [r["jerk_other"] or 0.0 for r in rows if r["mode"] == rows[-1]["mode"]], "k:", label=f"{rows[-1]['mode']} (elsewhere)")
    a.set(xlabel="injected delay (ms)", ylabel="success rate", ylim=(-0.05, 1.05), title="success")
    b.set(xlabel="injected delay (ms)", ylabel="|a[t+1]-2a[t]+a[t-1]|", title="action jerk at chunk switches")
    a.legend(), b.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(cfg: DictConfig) -> dict[str, Any]:
    from hydra.core.hydra_config import HydraConfig

    from vla.chunking import MODES

    bad = [m for m in cfg.modes if m not in MODES]
    if bad:
        raise SystemExit(f"vla bench rtc: error: modes {bad} are not among {', '.join(MODES)}")
    env_file = CONFIG_DIR / "env" / f"{cfg.env}.yaml"
    if not env_file.is_file():
        raise SystemExit(f"vla bench rtc: error: env '{cfg.env}' has no config {env_file}")
    env_cfg = OmegaConf.to_container(OmegaConf.merge(OmegaConf.load(env_file), cfg.env_overrides or {}), resolve=True)
    hc = HydraConfig.get()
    out = Path(hc.runtime.output_dir)
    rows = []
    for mode in cfg.modes:
        for delay in cfg.delays_ms:
            rows.append(cell(cfg, env_cfg, str(mode), float(delay), out))
            r = rows[-1]
            print(f"{mode:>5} {delay:>5g} ms: {r['successes']}/{r['episodes']}, jerk at switches "
                  f"{r['jerk_boundary']:.3f} vs {r['jerk_other']:.3f} elsewhere ({r['wall_s']} s)", flush=True)
    command = "vla bench rtc " + " ".join(shlex.quote(o) for o in hc.overrides.task)
    report = {"checkpoint": str(cfg.checkpoint), "env": str(cfg.env), "tasks": list(cfg.tasks), "split": cfg.split,
              "episodes": int(cfg.episodes), "seed": int(cfg.seed), "beta": float(cfg.beta), "rows": rows,
              "reproduce": command.strip()}
    table = markdown(rows)
    (out / "rtc.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "rtc.md").write_text(f"# RTC bench: `{cfg.checkpoint}` on {cfg.env} {list(cfg.tasks)} (split {cfg.split}, "
                                f"{cfg.episodes} episodes per cell)\n\n- reproduce: `{report['reproduce']}`\n\n{table}\n")
    png = plot(rows, out / "rtc.png")
    print(f"\n{table}\n\nreport: {out / 'rtc.json'}\nreport: {out / 'rtc.md'}\nplot:   {png}")
    return report
