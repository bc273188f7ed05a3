"""Fixed rollout cases whose per-episode results must not change when the episode loop moves.

Each case runs a command's own Python entry point (`vla eval`'s ``evaluate``, `vla experts`'
``main``, `vla collect`'s ``record_episode`` / ``collect``, LIBERO's ``measure.run_task``) with every
env it builds instrumented at ``step``/``reset``: per episode the reset seed, the number of steps, the
env's final ``is_success`` and a SHA-256 of the executed actions (their bytes, in the dtype the env got). That is loop-agnostic,
so the same harness recorded the values before the loops became one engine (vla/rollout.py) and
checks them after (tests/vla/test_rollout.py against rollout_golden.json).

    .venv/bin/python tests/vla/rollout_cases.py record [case ...]   # rewrite rollout_golden.json
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

REPO = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).with_name("rollout_golden.json")
TINY_CKPT = REPO / "checkpoints" / "push_red_left_tiny_cvla"


def _instrument(env: Any, log: list[dict]) -> Any:
    """Record every episode ``env`` runs into ``log`` (patches the outermost reset/step)."""
    reset, step = env.reset, env.step
    state: dict[str, Any] = {}

    def on_reset(*args: Any, **kwargs: Any):
        state["actions"] = []
        state["episode"] = {"seed": kwargs.get("seed"), "length": 0, "success": None, "actions": None}
        log.append(state["episode"])
        return reset(*args, **kwargs)

    def on_step(action: Any):
        out = step(action)
        state["actions"].append(np.array(action, copy=True))  # in its own dtype: what the env got
        ep = state["episode"]
        ep["length"] += 1
        ep["success"] = bool(out[4].get("is_success", False))
        ep["actions"] = hashlib.sha256(np.stack(state["actions"]).tobytes()).hexdigest()[:16]
        return out

    env.reset, env.step = on_reset, on_step
    return env


@contextlib.contextmanager
def instrumented(log: list[dict]):
    """Every env made through ``sim.factory.make_env`` (and LiberoEnv directly) is instrumented."""
    import sim.factory

    original = sim.factory.make_env

    def make_env(*args: Any, **kwargs: Any):
        return _instrument(original(*args, **kwargs), log)

    patches = [(sim.factory, "make_env", make_env)]
    try:
        import sim.libero.env as libero_env

        cls = libero_env.LiberoEnv

        def libero(*args: Any, **kwargs: Any):
            return _instrument(cls(*args, **kwargs), log)

        patches.append((libero_env, "LiberoEnv", libero))
    except ImportError:
        pass
    saved = [(mod, name, getattr(mod, name)) for mod, name, _ in patches]
    for mod, name, value in patches:
        setattr(mod, name, value)
    try:
        yield log
    finally:
        for mod, name, value in saved:
            setattr(mod, name, value)


@contextlib.contextmanager
def _in_tmp():
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        try:
            yield Path(tmp)
        finally:
            os.chdir(cwd)


def _compose(name: str, overrides: list[str]):
    from hydra import compose, initialize_config_dir

    from vla.configs import CONFIG_DIR

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(name, overrides=overrides)


def _eval(*overrides: str) -> Callable[[], dict]:
    def run() -> dict:
        from vla.evaluate import evaluate

        cfg = _compose("eval", ["video=false", "threads=1", *overrides])
        log: list[dict] = []
        with _in_tmp() as tmp, instrumented(log), contextlib.redirect_stdout(sys.stderr):
            report = evaluate(cfg, tmp / "out")
        eps = [{k: e[k] for k in ("task", "episode", "seed", "success", "length")} for e in report["episodes"]]
        return {"report": eps, "env": log}
    return run


def _experts(*overrides: str) -> Callable[[], dict]:
    def run() -> dict:
        from sim.experts.evaluate import main

        cfg = _compose("experts", list(overrides))
        log: list[dict] = []
        with _in_tmp(), instrumented(log), contextlib.redirect_stdout(sys.stderr):
            report = main(cfg)
        rows = [{k: r[k] for k in ("task", "episodes", "successes", "mean_steps", "failed_episodes")}
                for r in report["tasks"]]
        return {"report": rows, "groups": [[g["group"], g["successes"]] for g in report["groups"]], "env": log}
    return run


def _record(task: str, episodes: list[int], **kwargs: Any) -> Callable[[], dict]:
    """sim.collect.record_episode: the recorded labels and states, plus what the env executed."""
    def run() -> dict:
        from omegaconf import OmegaConf

        import sim.factory
        from sim.collect import record_episode
        from sim.experts import make_expert

        env_cfg = _compose("collect", ["env=tabletop", "env.image_size=[32,32]"]).env
        env_cfg = OmegaConf.to_container(env_cfg, resolve=True)
        log: list[dict] = []
        out = []
        with instrumented(log):
            env = sim.factory.make_env(OmegaConf.create(env_cfg), task, cameras=True)
            try:
                expert = make_expert(env, **kwargs.pop("expert_kwargs", {}))
                for i in episodes:
                    ep = record_episode(env, expert, env_cfg, task, i, 0, **kwargs)
                    out.append({"episode": i, "seed": ep.attempt.seed, "success": ep.attempt.success,
                                "length": ep.attempt.length,
                                "labels": hashlib.sha256(ep.action.astype(np.float32).tobytes()).hexdigest()[:16],
                                "states": hashlib.sha256(ep.state.astype(np.float32).tobytes()).hexdigest()[:16],
                                "images": hashlib.sha256(np.ascontiguousarray(
                                    ep.images[sorted(ep.images)[0]]).tobytes()).hexdigest()[:16]})
            finally:
                env.close()
        return {"report": out, "env": log}
    return run


def _collect() -> dict:
    """A tiny `vla collect` (workers=0): the dataset's actions per (task, episode index)."""
    from sim.collect import collect, compose_config
    from sim.dataset import open_dataset, read_ledger

    with _in_tmp() as tmp, contextlib.redirect_stdout(sys.stderr):
        cfg = compose_config(["env=tabletop", "env.image_size=[32,32]", "tasks=[push_red_left,red_in_bowl]",
                              "episodes_per_task=1", "workers=0", f"root={tmp / 'ds'}", "videos=false",
                              "commit_interval_s=1000", "compact=false"])
        collect(cfg, tmp / "run")
        ds = open_dataset(tmp / "ds")
        actions = np.stack([np.asarray(a, dtype=np.float32) for a in ds.hf_dataset["action"]])
        index = np.asarray(ds.hf_dataset["episode_index"])
        out = []
        for a in sorted(read_ledger(tmp / "ds"), key=lambda a: (a.task, a.episode)):
            rows = actions[index == a.dataset_episode]
            out.append({"task": a.task, "episode": a.episode, "success": a.success, "length": a.length,
                        "actions": hashlib.sha256(rows.tobytes()).hexdigest()[:16]})
        return {"report": out}


def _libero() -> dict:
    from sim.libero.measure import run_task

    log: list[dict] = []
    with instrumented(log), contextlib.redirect_stdout(sys.stderr):
        row = run_task("libero_spatial", 0, [0])
    return {"report": [{k: row[k] for k in ("task", "episodes", "successes", "mean_steps", "failed_init_states")}],
            "env": log}


CASES: dict[str, Callable[[], dict]] = {
    # the ones tests/vla/test_rollout.py runs (fast)
    "eval_tiny": _eval(f"checkpoint={TINY_CKPT}", "env=tabletop", "episodes=3", "tasks=[push_red_left]",
                       "env.max_episode_steps=24"),
    "eval_tiny_replan": _eval(f"checkpoint={TINY_CKPT}", "episodes=1", "tasks=[push_red_left]", "replan=3",
                              "env.max_episode_steps=10"),
    "eval_expert": _eval("checkpoint=expert", "episodes=2", "tasks=[push_red_left,stack_red_on_green]"),
    "eval_random": _eval("checkpoint=random", "episodes=2", "tasks=[push_red_left]", "env.max_episode_steps=20"),
    "experts_tabletop": _experts("env=tabletop", "episodes_per_task=2", "tasks=[stack_red_on_green,push_yellow_left]"),
    "experts_noise": _experts("env=tabletop", "episodes_per_task=2", "tasks=[push_red_left]", "noise=0.3"),
    "record": _record("push_red_left", [0, 1]),
    "record_intended": _record("push_red_left", [0], expert_kwargs={"noise": 0.3}, action_label="intended"),
    # slower or needing an extra: recorded too, run by `record` / on demand
    "eval_tiny_full": _eval(f"checkpoint={TINY_CKPT}", "env=tabletop", "episodes=3", "tasks=[push_red_left]"),
    "collect": _collect,
    "experts_aloha": _experts("env=aloha_transfer_cube", "episodes_per_task=1"),
    "experts_metaworld": _experts("env=metaworld", "episodes_per_task=1", "tasks=[reach-v3,push-v3]"),
    "libero_measure": _libero,
}


def run_case(name: str) -> dict:
    return json.loads(json.dumps(CASES[name]()))  # plain JSON types, as stored


if __name__ == "__main__":
    os.environ.setdefault("MUJOCO_GL", "egl")
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.path.insert(0, str(REPO))
    if len(sys.argv) < 2 or sys.argv[1] not in ("record", "check"):
        raise SystemExit(__doc__)
    names = sys.argv[2:] or list(CASES)
    golden = json.loads(GOLDEN.read_text()) if GOLDEN.exists() else {}
    for name in names:
        import time

        t = time.perf_counter()
        got = run_case(name)
        print(f"{name}: {time.perf_counter() - t:.1f} s, {len(got.get('env', got['report']))} episodes", file=sys.stderr)
        if sys.argv[1] == "record":
            golden[name] = got
            GOLDEN.write_text(json.dumps(golden, indent=1) + "\n")
        else:
            print(f"{name}: {'SAME' if golden.get(name) == got else 'DIFFERENT'}")
