"""A user's own robot, as a user meets it: a LeRobot v3 dataset recorded like an SO-100 (cameras
``front`` + ``wrist`` at 480x640, 6-D joint state, 6-D joint-position action in degrees, 30 fps, a
task per frame) and a one-camera 14-D bimanual one, made with lerobot's own ``LeRobotDataset.create``.

`vla train` and `lerobot-train --policy.type=vla` train on them with only the dataset path (cameras,
dims and the embodiment come from the features), the loss falls, and the checkpoints serve through
the runtime: chunks of the robot's own dimension, inside its limits, never [-1, 1]-clipped joints.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from test_lerobot_train import TINY_FLAGS, lerobot_train

SO100_JOINTS = ["shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper"]
TASKS = {"pick up the cube": np.array([10.0, -40.0, 60.0, 20.0, 0.0, 30.0]),
         "push the cube to the left": np.array([-35.0, -20.0, 45.0, 50.0, 90.0, 5.0])}


def make_robot_dataset(root: Path, cameras: dict[str, tuple[int, int]], joints: list[str], fps: int,
                       episodes: int = 4, length: int = 24) -> Path:
    """Joint-space demos in degrees: each episode moves from a random start towards its task's pose."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    n = len(joints)
    names = [f"{j}.pos" for j in joints]
    features = {f"observation.images.{c}": {"dtype": "video", "shape": (h, w, 3), "names": ["height", "width", "channels"]}
                for c, (h, w) in cameras.items()}
    features["observation.state"] = {"dtype": "float32", "shape": (n,), "names": names}
    features["action"] = {"dtype": "float32", "shape": (n,), "names": names}
    ds = LeRobotDataset.create("local/my_robot", fps=fps, root=root, features=features, use_videos=True)
    rng = np.random.default_rng(0)
    tasks = list(TASKS)
    for ep in range(episodes):
        task = tasks[ep % 2]
        goal = np.resize(TASKS[task], n)
        state = rng.uniform(-30, 30, n)
        for t in range(length):
            action = state + 0.3 * (goal - state)
            frame = {}
            for c, (h, w) in cameras.items():
                img = np.zeros((h, w, 3), np.uint8)
                img[..., ep % 3] = 40 + 6 * t  # a scene that changes slowly, compresses well
                img[h // 4: h // 2, w // 4: w // 2, (ep + 1) % 3] = 200
                frame[f"observation.images.{c}"] = img
            frame["observation.state"] = state.astype(np.float32)
            frame["action"] = action.astype(np.float32)
            frame["task"] = task
            ds.add_frame(frame)
            state = action
        ds.save_episode()
    ds.finalize()
    return root


@pytest.fixture(scope="module")
def so100_dataset(tmp_path_factory) -> Path:
    return make_robot_dataset(tmp_path_factory.mktemp("so100") / "data",
                              {"front": (480, 640), "wrist": (480, 640)}, SO100_JOINTS, fps=30)


@pytest.fixture(scope="module")
def bimanual_dataset(tmp_path_factory) -> Path:
    joints = [f"{side}_{j}" for side in ("left", "right") for j in
              ("waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate", "gripper")]
    return make_robot_dataset(tmp_path_factory.mktemp("bimanual") / "data", {"top": (120, 160)}, joints, fps=50)


def vla_train(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "vla.cli", "train", *args], capture_output=True, text=True,
                          timeout=900, cwd=cwd, env=env)


def losses(run: Path) -> list[float]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return [r["loss"] for r in rows if "loss" in r]


def robot_obs(cameras: dict[str, tuple[int, int]], n: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {"images": {c: rng.integers(0, 255, (h, w, 3), dtype=np.uint8) for c, (h, w) in cameras.items()},
            "state": rng.uniform(-30, 30, n).astype(np.float32), "instruction": "pick up the cube"}


@pytest.mark.parametrize("which, cameras, dim", [
    ("so100_dataset", {"front": (480, 640), "wrist": (480, 640)}, 6),
    ("bimanual_dataset", {"top": (120, 160)}, 14),
])
def test_vla_train_on_a_robot_dataset_with_only_its_path(which, cameras, dim, request, tmp_path):
    from vla.runtime import load_policy

    dataset = request.getfixturevalue(which)
    out = tmp_path / "run"
    proc = vla_train(f"dataset={dataset}", "model=tiny", "train.steps=150", "train.log_every=10",
                     "train.warmup_steps=10", "batch_size=8", "threads=1", f"output_dir={out}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    curve = losses(out)
    assert len(curve) >= 10 and np.mean(curve[-3:]) < 0.7 * np.mean(curve[:3]), curve

    policy = load_policy(out / "checkpoints" / "last")
    robot = policy.embodiment
    assert robot.camera_names == list(cameras) and robot.state_dim == dim and robot.action_dim == dim
    assert robot.action_kind == "joint_position"  # lerobot's `<joint>.pos` names
    low, high = robot.limits
    assert high.max() > 40  # degrees: the recorded range, not [-1, 1]
    out_ = policy.infer(robot_obs(cameras, dim))
    actions = out_["actions"]
    assert actions.shape == (8, dim) and np.all(np.isfinite(actions))
    assert np.all(actions >= low - 1e-4) and np.all(actions <= high + 1e-4)
    assert np.abs(actions).max() > 1.5  # joint targets in degrees survive (the old check clipped to 1)


@pytest.mark.parametrize("which, cameras, dim", [
    ("so100_dataset", {"front": (480, 640), "wrist": (480, 640)}, 6),
    ("bimanual_dataset", {"top": (120, 160)}, 14),
])
def test_lerobot_train_policy_type_vla_with_only_the_dataset(which, cameras, dim, request, tmp_path):
    from vla.runtime import load_policy

    dataset = request.getfixturevalue(which)
    out = tmp_path / "train"
    proc = lerobot_train(
        "--policy.type=vla", "--dataset.repo_id=local/my_robot", f"--dataset.root={dataset}",
        "--steps=4", "--batch_size=2", "--num_workers=0", "--save_freq=4", "--log_freq=1",
        "--wandb.enable=false", "--policy.push_to_hub=false", "--policy.device=cpu", f"--output_dir={out}",
        *TINY_FLAGS, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    policy = load_policy(out / "checkpoints" / "last" / "pretrained_model")
    assert policy.camera_keys == [f"observation.images.{c}" for c in cameras]
    actions = policy.infer(robot_obs(cameras, dim))["actions"]
    assert actions.shape == (8, dim) and np.all(np.isfinite(actions))


def test_a_policy_for_another_robot_is_refused_naming_the_fields(so100_dataset, tmp_path):
    """The SO-100 checkpoint against the tabletop env: every differing field, before an episode runs."""
    from policies.embodiment import EmbodimentError
    from sim.spaces import embodiment
    from vla.runtime import check_compatible, load_policy

    out = tmp_path / "run"
    proc = vla_train(f"dataset={so100_dataset}", "train=debug", f"output_dir={out}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    policy = load_policy(out / "checkpoints" / "last")
    with pytest.raises(EmbodimentError) as err:
        check_compatible(policy, embodiment(128), where="env tabletop")
    msg = str(err.value)
    assert "cameras: ['front'] missing" in msg and "state_dim: 6 != 8" in msg and "action_dim: 6 != 7" in msg
    assert "action_kind: 'joint_position' != 'delta_eef'" in msg


def test_cross_embodiment_finetune_keeps_the_vision_and_language_parts(so100_dataset, tmp_path):
    """A tabletop-arm checkpoint (2 cameras, 8-D state, 7-D delta-EEF) fine-tuned on the SO-100 data."""
    import torch

    from vla.checkpoint import load_checkpoint

    source = Path(__file__).resolve().parents[2] / "checkpoints" / "push_red_left_tiny_cvla"
    out = tmp_path / "ft"
    proc = vla_train(f"dataset={so100_dataset}", f"init_from={source}", "freeze=vision_backbone", "train.steps=3",
                     "batch_size=2", "threads=1", f"output_dir={out}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = proc.stdout + proc.stderr
    assert "cross-embodiment fine-tune" in log
    assert "re-initialised model.head, model.state_proj" in log
    old, new = (load_checkpoint(p).policy for p in (source, out / "checkpoints" / "last"))
    assert new.config.robot().action_dim == 6 and new.config.camera_keys[0] == "observation.images.front"
    old_sd, new_sd = old.state_dict(), new.state_dict()
    for name in ("model.vision.vision_model.embeddings.patch_embedding.weight", "model.backbone.lm.embed_tokens.weight"):
        assert torch.equal(old_sd[name], new_sd[name]), name  # kept (and frozen)
    assert new_sd["model.state_proj.weight"].shape == (64, 6) and new_sd["model.head.action_in.weight"].shape[1] == 6
