"""Repo-wide test setup: headless MuJoCo rendering. MuJoCo picks its GL backend when first
imported, so this must be set before any test module imports it (the `vla` CLI sets the same)."""

import os

import pytest

os.environ.setdefault("MUJOCO_GL", "egl")
# Before torch loads: spinning OpenMP waits made torch ~10x slower on a shared 2-core machine.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

# The small real dataset shared by every test that needs demonstrations (policy training, ...).
TABLETOP_DATASET_TASKS = ("place_red_on_blue_plate", "red_in_bowl", "push_red_left")
TABLETOP_DATASET_EPISODES = 2
TABLETOP_DATASET_IMAGE_SIZE = (64, 64)  # small for speed; both cameras are kept


@pytest.fixture(scope="session")
def tabletop_dataset(tmp_path_factory):
    """Root (Path) of a real tabletop LeRobot v3.0 dataset recorded by `vla collect`.

    3 tasks x 2 kept episodes, 64x64 agentview + wrist videos, recorded with one spawn worker.
    Open it with ``LeRobotDataset("local/vla_tabletop", root=path)`` (or ``sim.dataset.open_dataset``);
    ``<root>/meta/vla_episodes.jsonl`` maps dataset episodes to (task, episode index). Shared by the
    whole session: copy it before modifying it.
    """
    from sim.collect import collect, compose_config

    base = tmp_path_factory.mktemp("tabletop_dataset")
    h, w = TABLETOP_DATASET_IMAGE_SIZE
    cfg = compose_config([
        "env=tabletop", f"env.image_size=[{h},{w}]", f"tasks=[{','.join(TABLETOP_DATASET_TASKS)}]",
        f"episodes_per_task={TABLETOP_DATASET_EPISODES}", "workers=1", f"root={base / 'dataset'}",
        "commit_interval_s=1000", "videos=false",
    ])
    return collect(cfg, base / "run").root
