"""`vla bench env-speed`: env steps/s with both cameras rendering and with cameras off, per suite.

    vla bench env-speed                                   # tabletop + libero_spatial, 128x128
    vla bench env-speed suites=[tabletop] steps=1000 image_size=[224,224]

Each suite's env config is read from ``configs/env/<suite>.yaml`` and built through
``sim.factory`` with uniformly random actions; only ``env.step`` is timed (resets are reported
separately). A suite that fails to import or build (e.g. LIBERO not installed) becomes an error
row, not a crash. Writes ``env_speed.json`` / ``env_speed.md`` to the Hydra run dir.
"""

from __future__ import annotations

import os
import platform
import time
from typing import Any

from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from sim import factory
from sim.experts.evaluate import markdown_table, run_dir, write_report


def main(cfg: DictConfig) -> dict:
    if cfg.steps < 1:
        raise ValueError(f"steps must be >= 1, got {cfg.steps}")
    rows = []
    jobs = [(suite, cameras) for suite in cfg.suites for cameras in (True, False)]
    for suite, cameras in tqdm(jobs, desc="env-speed", unit="run"):
        rows.append(_measure_row(cfg, str(suite), cameras))
    report = {
        "rows": rows,
        "machine": {
            "cpus": os.cpu_count(),
            "load_avg_1m": round(os.getloadavg()[0], 2),
            "python": platform.python_version(),
            "mujoco_gl": os.environ.get("MUJOCO_GL"),
        },
        "command": _command(cfg),
    }
    table = markdown_table(
        ["suite", "task", "cameras", "steps", "steps/s", "ms/step", "build s", "reset s", "note"],
        [_cells(r) for r in rows],
    )
    m = report["machine"]
    setup = f"{m['cpus']} CPUs, load {m['load_avg_1m']}, image {list(cfg.image_size)}"
    print(f"\nEnv speed ({setup}):\n\n{table}", flush=True)
    md = f"# Env speed\n\n- machine: {m}\n- reproduce: `{report['command']}`\n\n{table}\n"
    paths = write_report(run_dir("env_speed"), "env_speed", report, md)
    # Flush: LIBERO/robosuite teardown can end the process before buffered stdout is written.
    print(f"\nwrote {', '.join(map(str, paths))}\nreproduce: {report['command']}", flush=True)
    return report


def _measure_row(cfg: DictConfig, suite: str, cameras: bool) -> dict:
    row: dict[str, Any] = {"suite": suite, "cameras": cameras}
    try:
        env_cfg = load_env_config(suite)
        env_cfg.image_size = list(cfg.image_size)
        task = factory.task_names(env_cfg)[int(cfg.task)]
        row["task"] = task
        row.update(measure(env_cfg, task, cameras, int(cfg.steps), int(cfg.warmup_steps), int(cfg.seed),
                           float(cfg.max_seconds)))
    except Exception as e:  # noqa: BLE001 - one broken suite (e.g. LIBERO missing) must not hide the others
        row["error"] = f"{type(e).__name__}: {e}".splitlines()[0][:200]
        print(f"[env-speed] {suite} (cameras={'on' if cameras else 'off'}) failed: {row['error']}")
    return row


def load_env_config(suite: str) -> DictConfig:
    from vla.configs import CONFIG_DIR

    path = CONFIG_DIR / "env" / f"{suite}.yaml"
    if not path.is_file():
        available = sorted(p.stem for p in path.parent.glob("*.yaml"))
        raise FileNotFoundError(f"no env config {path}; available: {', '.join(available)}")
    env_cfg = OmegaConf.load(path)
    if "defaults" in env_cfg:
        raise ValueError(f"{path} has a defaults list; env-speed reads env configs as flat files")
    return env_cfg


def measure(
    env_cfg: Any, task: str, cameras: bool, steps: int, warmup: int, seed: int, max_seconds: float = float("inf")
) -> dict:
    """Build one env, then time up to `steps` random-action env.step calls (resets excluded),
    stopping early once the timed steps took `max_seconds` (slow suites such as LIBERO)."""
    t0 = time.perf_counter()
    env = factory.make_env(env_cfg, task, cameras=cameras)
    try:
        t1 = time.perf_counter()
        env.reset(seed=seed, options=factory.reset_options(env_cfg, task, 0))
        build_s, reset_s = t1 - t0, time.perf_counter() - t1
        env.action_space.seed(seed)
        actions = [env.action_space.sample() for _ in range(warmup + steps)]
        stepping, timed, episode = 0.0, 0, 0
        for i, action in enumerate(actions):
            start = time.perf_counter()
            _, _, terminated, truncated, _ = env.step(action)
            if i >= warmup:
                stepping += time.perf_counter() - start
                timed += 1
                if stepping >= max_seconds:
                    break
            if terminated or truncated:
                episode += 1
                env.reset(seed=seed + episode, options=factory.reset_options(env_cfg, task, episode))
    finally:
        env.close()
    return {
        "steps": timed,
        "steps_per_s": round(timed / stepping, 1),
        "ms_per_step": round(1000 * stepping / timed, 2),
        "build_s": round(build_s, 2),
        "reset_s": round(reset_s, 3),
    }


def _cells(r: dict) -> list[str]:
    cams = "on" if r["cameras"] else "off"
    if "error" in r:
        return [r["suite"], r.get("task", "-"), cams, "-", "-", "-", "-", "-", r["error"]]
    timings = [f"{r['steps_per_s']:.1f}", f"{r['ms_per_step']:.2f}", f"{r['build_s']:.2f}", f"{r['reset_s']:.3f}"]
    return [r["suite"], r["task"], cams, str(r["steps"]), *timings, ""]


def _command(cfg: DictConfig) -> str:
    suites = ",".join(map(str, cfg.suites))
    size = ",".join(map(str, cfg.image_size))
    return (
        f"vla bench env-speed suites=[{suites}] steps={cfg.steps} max_seconds={cfg.max_seconds} "
        f"image_size=[{size}] task={cfg.task}"
    )
