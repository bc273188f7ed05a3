"""`vla bench` (= `vla bench policy`): every visual-token compressor side by side on the same episodes.

    vla bench checkpoint=<dir trained with compressor=none> env=tabletop
    vla bench checkpoint=<dir> 'checkpoints={compressor_vla: <dir>, stc: <dir>}' episodes=2
    vla bench checkpoint=<dir> 'methods=[none,efficientvla,fastv]' 'tasks=[place_red_on_blue_plate]' episodes=1

Per method (vla/bench/methods.py: budgets, which weights each row runs):
1. **prepare**: load its checkpoint, switch the compressor (training-free methods on the default
   checkpoint), prune + cache for EfficientVLA (pruning calibrated on real camera frames: ``calib=env``
   renders the suite's TRAIN-split layouts, disjoint from the held-out evaluation layouts; or a
   dataset root); save it as ``<run>/checkpoints/<method>`` (what the evaluation loads).
2. **success**: ``vla.evaluate.evaluate`` on the same tasks, layouts and seeds for every method
   (episode i of a task = held-out layout i, seed from (seed, task, i)); Wilson 95 % CI.
3. **cost**: ``vla.cost.profile_policies`` on one real observation: visual tokens into the
   backbone, GFLOPs per call, batch-1 latency p50/p99 and per stage with ALL methods INTERLEAVED in
   this process (each round calls every method once, rotating the order), so machine load hits all
   alike; speedup and FLOPs ratio vs ``none``.
4. **overlay video** per method: the first ``video_steps`` steps of episode 0 of the first task;
   one frame per policy call (the frame the policy saw) with the patches it kept / merged drawn on
   both cameras (vla/overlay.py).
5. **report**: ``outputs/bench/<time>/bench.{json,md}``, ``success_vs_gflops.png``,
   ``latency_stages.png``, ``videos/<method>.mp4``; prints the table and a reproduce command;
   ``readme=README.md`` also rewrites the README "Results" section (scripts/readme_results.py does
   the same from a saved bench.json).

Cost of the default run (``configs/bench/policy.yaml``: 1 episode x 13 tasks x 11 methods, cpu model,
1 thread): 685 s (11.4 min) measured on the shared 2-core machine at load ~6-8, with every method
evaluated (own checkpoints for the learned ones) and every episode running to the 200-step limit,
the worst case. Most of it is the rollouts (~60 s per method); cost profiling ~30 s, videos ~15 s.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import shlex
import time
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from vla.bench import methods as M
from vla.bench import report as R

logger = logging.getLogger(__name__)
from vla.configs import CONFIG_DIR  # noqa: E402


def _register_config_dir_resolver() -> None:
    """configs/bench/policy.yaml composes configs/env/ (not on its search path): it adds
    ``file://${vla_config_dir:}``, the resolver ros_nodes/bench.py also registers (same value)."""
    if not OmegaConf.has_resolver("vla_config_dir"):
        OmegaConf.register_new_resolver("vla_config_dir", lambda: str(CONFIG_DIR))


_register_config_dir_resolver()


# --------------------------------------------------------------------------------------------------
# Real observations from the suite (calibration frames, the profiling observation)
# --------------------------------------------------------------------------------------------------
def env_observations(env_cfg: dict, tasks: list[str], split: str, per_task: int = 1) -> list[dict[str, Any]]:
    """Runtime observation dicts (vla/runtime.py format) at reset of layouts 0..per_task-1 of ``split``."""
    from sim.factory import make_env, reset_options
    from vla.runtime import obs_from_env

    cfg = OmegaConf.create({**env_cfg, "split": split})
    out = []
    for task in tasks:
        env = make_env(cfg, task, cameras=True)
        try:
            for i in range(per_task):
                obs, info = env.reset(seed=i, options=reset_options(cfg, task, i))
                instruction = str(info.get("task") or getattr(env.unwrapped, "task_description", task))
                out.append(obs_from_env(obs, instruction))
        finally:
            env.close()
    return out


def to_batch(policy, preprocessor, obs: dict[str, Any]) -> dict[str, Any]:
    """Runtime observation -> preprocessed batch-1 policy input (the runtime adapter's conversion)."""
    from vla.runtime import VLAChunkPolicy

    return preprocessor(VLAChunkPolicy(policy, preprocessor, None)._batch(obs))


def make_calibrate(cfg: DictConfig, env_cfg: dict, tasks: list[str]):
    """(policy, pre) -> calibration batches, from ``cfg.calib``: "env" | "synthetic" | a dataset root."""
    calib = str(cfg.calib)
    if calib == "env":
        frames = env_observations(env_cfg, tasks[: int(cfg.calib_frames)], "train")
        return lambda policy, pre: [to_batch(policy, pre, o) for o in frames]
    if calib == "synthetic":
        from vla.batches import synthetic_batches

        return lambda policy, pre: synthetic_batches(policy, pre, int(cfg.calib_frames), int(cfg.seed))
    from vla.batches import dataset_batches

    return lambda policy, pre: dataset_batches(calib, pre, policy.config.camera_keys, 4, 8, int(cfg.seed))


# --------------------------------------------------------------------------------------------------
# Steps
# --------------------------------------------------------------------------------------------------
def prepare_all(cfg: DictConfig, env_cfg: dict, tasks: list[str], out: Path) -> dict[str, M.Prepared]:
    own = {str(k): str(v) for k, v in (cfg.checkpoints or {}).items()}
    unknown = sorted(set(own) - set(cfg.methods))
    if unknown:
        raise ValueError(f"checkpoints given for methods not in methods={list(cfg.methods)}: {unknown}")
    calibrate = make_calibrate(cfg, env_cfg, tasks)
    cache = {str(cfg.checkpoint): M.load(cfg.checkpoint, cfg.device)}  # path -> (policy, pre, post), shared
    cameras = len(cache[str(cfg.checkpoint)][0].config.camera_keys)
    prepared = {}
    for name in cfg.methods:
        spec = M.method_spec(str(name), int(cfg.budget_per_camera), cameras,
                             OmegaConf.to_container(cfg.efficientvla, resolve=True))
        p = M.prepare(str(name), spec, str(cfg.checkpoint), own.get(str(name)), str(cfg.device), calibrate, cache)
        M.save(p, out / "checkpoints" / str(name))
        prepared[str(name)] = p
        logger.info("bench: prepared %s (%s weights) %s", name, p.source, p.notes)
    return prepared


def evaluate_method(cfg: DictConfig, env_cfg: dict, tasks: list[str], p: M.Prepared, out: Path) -> dict | None:
    """Closed-loop success through vla.evaluate (same tasks/layouts/seeds for every method)."""
    if not p.evaluated:
        return None
    from vla.evaluate import evaluate

    eval_cfg = OmegaConf.create({
        "env": env_cfg, "checkpoint": p.saved, "episodes": int(cfg.episodes), "tasks": tasks, "split": cfg.split,
        "num_envs": int(cfg.num_envs), "replan": cfg.replan, "seed": int(cfg.seed), "device": str(cfg.device),
        "threads": cfg.threads, "policy": {}, "video": False, "video_episodes": 0,
    })
    folder = out / "eval" / p.name
    folder.mkdir(parents=True, exist_ok=True)
    log = io.StringIO()
    with contextlib.redirect_stdout(log):  # one table per method would bury the bench table
        result = evaluate(eval_cfg, folder)
    (folder / "stdout.txt").write_text(log.getvalue())
    result["report_path"] = str(folder / "eval.json")
    return result


def profile_all(cfg: DictConfig, prepared: dict[str, M.Prepared], obs: dict[str, Any]) -> dict[str, dict]:
    from vla.cost import profile_policies

    policies = {n: p.policy for n, p in prepared.items()}
    batches = {n: to_batch(p.policy, p.preprocessor, obs) for n, p in prepared.items()}
    return profile_policies(policies, batches, repeats=int(cfg.repeats), warmup=int(cfg.warmup))


def overlay_video(cfg: DictConfig, env_cfg: dict, task: str, p: M.Prepared, out: Path) -> str:
    """Episode 0 of ``task`` (first ``video_steps`` steps), one frame per policy call with the overlay;
    rolled out by the rollout engine (vla/rollout.py) with its keep-mask subscriber."""
    from sim.factory import make_env
    from sim.video import write_mp4
    from vla.overlay import overlay_frame
    from vla.rollout import KeepMasks, episode_spec, run_episode
    from vla.runtime import VLAChunkPolicy

    short = {**env_cfg, "split": cfg.split, "max_episode_steps": int(cfg.video_steps)}
    policy = VLAChunkPolicy(p.policy, p.preprocessor, p.postprocessor, checkpoint=p.name)
    masks = KeepMasks()
    env = make_env(OmegaConf.create(short), task, cameras=True)
    try:
        result = run_episode(env, policy, episode_spec(short, task, 0, int(cfg.seed)), replan=cfg.replan,
                             subscribers=[masks])
    finally:
        env.close()
    grid = tuple(p.policy.config.vision.grid)
    frames = []
    for i, (images, kept, tokens_in, tokens_after) in enumerate(masks.calls):
        tokens = f"{tokens_in}" + (f"->{tokens_after}" if tokens_after != tokens_in else "")
        footer = f"{p.name}: {tokens} visual tokens  call {i + 1}/{len(masks.calls)}"
        frames.append(overlay_frame(images, kept, grid, text=result.instruction, footer=footer))
    return str(write_mp4(out / "videos" / f"{p.name}.mp4", frames, fps=float(cfg.video_fps)))


# --------------------------------------------------------------------------------------------------
# The command
# --------------------------------------------------------------------------------------------------
def _tasks(cfg: DictConfig, env_cfg: dict) -> list[str]:
    from sim.factory import select_tasks, task_names

    return select_tasks(cfg.get("tasks"), task_names(OmegaConf.create({**env_cfg, "tasks": "all"})))


def run_bench(cfg: DictConfig, out: str | Path, command: str | None = None) -> dict[str, Any]:
    """Run the whole bench into ``out``; returns the report (also written as files)."""
    out = Path(out).absolute()
    started = time.perf_counter()
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
    env_cfg = OmegaConf.to_container(cfg.env, resolve=True)
    tasks = _tasks(cfg, env_cfg)
    prepared = prepare_all(cfg, env_cfg, tasks, out)
    evaluations = {n: evaluate_method(cfg, env_cfg, tasks, p, out) for n, p in prepared.items()}
    obs = env_observations({**env_cfg}, tasks[:1], str(cfg.split))[0]
    profiles = profile_all(cfg, prepared, obs)
    videos = {n: overlay_video(cfg, env_cfg, tasks[0], p, out) if cfg.video else None for n, p in prepared.items()}
    rows = {n: R.make_row(p, profiles[n], evaluations[n], videos[n]) for n, p in prepared.items()}
    R.add_ratios(rows)
    meta = _meta(cfg, env_cfg, tasks, time.perf_counter() - started, command)
    meta["cameras"] = len(next(iter(prepared.values())).policy.config.camera_keys)
    report = {"meta": meta, "rows": rows, "goal": R.goal_check(rows)}
    paths = R.write(report, out)
    print(R.markdown(report, rel_to=out))
    for p in paths.values():
        print(f"wrote:     {p}")
    if cfg.get("readme"):
        print(f"updated:   {R.update_readme(cfg.readme, report)}")
    print(f"reproduce: {report['meta']['command']}")
    return report


def _meta(cfg: DictConfig, env_cfg: dict, tasks: list[str], wall_s: float, command: str | None) -> dict[str, Any]:
    return {
        "command": command or "vla bench " + " ".join(_explicit_args(cfg, tasks)),
        "checkpoint": str(Path(cfg.checkpoint).absolute()),
        "checkpoints": {str(k): str(v) for k, v in (cfg.checkpoints or {}).items()},
        "env": str(env_cfg["suite"]), "split": str(cfg.split), "tasks": tasks, "episodes": int(cfg.episodes),
        "seed": int(cfg.seed), "methods": [str(m) for m in cfg.methods],
        "budget_per_camera": int(cfg.budget_per_camera), "calib": str(cfg.calib),
        "device": str(cfg.device), "threads": torch.get_num_threads(), "repeats": int(cfg.repeats),
        "warmup": int(cfg.warmup), "torch": torch.__version__, "wall_s": round(wall_s, 1),
        "load_avg": " / ".join(f"{x:.1f}" for x in os.getloadavg()),
    }


def _explicit_args(cfg: DictConfig, tasks: list[str]) -> list[str]:
    args = [f"checkpoint={R.shown_path(cfg.checkpoint)}", f"env={cfg.env.suite}",
            f"methods=[{','.join(str(m) for m in cfg.methods)}]", f"tasks=[{','.join(tasks)}]",
            f"episodes={cfg.episodes}", f"seed={cfg.seed}", f"split={cfg.split}"]
    if cfg.checkpoints:
        inner = ",".join(f"{k}:{R.shown_path(v)}" for k, v in cfg.checkpoints.items())
        args.append(f"checkpoints={{{inner}}}")
    return [shlex.quote(a) for a in args]


def main(cfg: DictConfig) -> dict[str, Any]:
    """Hydra entry point (`vla bench ...`)."""
    from hydra.core.hydra_config import HydraConfig

    hc = HydraConfig.get()
    env_cfg = OmegaConf.to_container(cfg.env, resolve=True)
    tasks = _tasks(cfg, env_cfg)  # validates names before anything slow starts
    own = {"checkpoint", "env", "methods", "tasks", "episodes", "seed", "split", "checkpoints"}
    extra = [shlex.quote(o) for o in hc.overrides.task if o.split("=", 1)[0].lstrip("+~") not in own]
    command = "vla bench " + " ".join(_explicit_args(cfg, tasks) + extra)
    return run_bench(cfg, hc.runtime.output_dir, command)
