"""The tabletop suite as a lerobot env type, so any lerobot policy can be evaluated on it:

    lerobot-eval --env.type=vla_tabletop --env.task=<task>[,<task>...] --policy.path=<ckpt> \
        --eval.n_episodes=10 --eval.batch_size=1 --policy.device=cpu

lerobot imports this through the `lerobot_env_vla` plugin distribution. Observations follow
sim/spaces.py, which is already lerobot's env format ("pixels"/<camera> and "agent_pos"), so the
features map is a plain rename. Episode layouts come from the held-out split by default, seeded by
lerobot's `--seed` (layout i <- seed), so lerobot-eval and `vla eval` measure the same layouts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial

import gymnasium as gym
from lerobot.configs import FeatureType, PolicyFeature
from lerobot.envs.configs import EnvConfig, _make_vec_env_cls

from sim.spaces import ACTION_KEY, OBS_STATE_KEY, embodiment

# The tabletop suite's robot (sim/spaces.py); lerobot's feature map follows from it.
ROBOT = embodiment(128)


@EnvConfig.register_subclass("vla_tabletop")
@dataclass
class VLATabletopEnvConfig(EnvConfig):
    task: str | None = None  # comma-separated task names; None = every task of the suite
    split: str = "heldout"  # layouts: "train" (demos) or "heldout" (evaluation)
    fps: int = 20
    episode_length: int = 200  # control steps (20 Hz) before truncation
    observation_height: int = 128
    observation_width: int = 128
    features: dict[str, PolicyFeature] = field(
        default_factory=lambda: {ACTION_KEY: PolicyFeature(type=FeatureType.ACTION, shape=(ROBOT.action_dim,))}
    )
    features_map: dict[str, str] = field(
        default_factory=lambda: {
            ACTION_KEY: ACTION_KEY,
            "agent_pos": OBS_STATE_KEY,
            **{f"pixels/{cam.name}": cam.key for cam in ROBOT.cameras},
        }
    )

    def __post_init__(self) -> None:
        shape = (self.observation_height, self.observation_width, 3)
        for cam in ROBOT.cameras:
            self.features[f"pixels/{cam.name}"] = PolicyFeature(type=FeatureType.VISUAL, shape=shape)
        self.features["agent_pos"] = PolicyFeature(type=FeatureType.STATE, shape=(ROBOT.state_dim,))

    @property
    def gym_kwargs(self) -> dict:
        # gym.make consumes max_episode_steps into a TimeLimit wrapper, whose `_max_episode_steps`
        # lerobot-eval reads to size its rollout loop.
        return {
            "split": self.split,
            "image_size": (self.observation_height, self.observation_width),
            "max_episode_steps": self.episode_length,
        }

    def task_list(self) -> list[str]:
        from sim.tabletop import TASKS

        if not self.task:
            return list(TASKS)
        names = [t.strip() for t in self.task.split(",") if t.strip()]
        unknown = [t for t in names if t not in TASKS]
        if unknown:
            raise ValueError(f"unknown tabletop task(s) {unknown}. Valid tasks: {', '.join(TASKS)}")
        return names

    def create_envs(self, n_envs: int, use_async_envs: bool = False) -> dict[str, dict[int, gym.vector.VectorEnv]]:
        import sim  # noqa: F401  (registers the gym id; the simulator loads only here)

        env_cls = _make_vec_env_cls(use_async_envs, n_envs)
        envs = {}
        for i, task in enumerate(self.task_list()):
            make_one = partial(gym.make, sim.TABLETOP_ID, task=task, disable_env_checker=True, **self.gym_kwargs)
            envs[i] = env_cls([make_one for _ in range(n_envs)])
        return {self.type: envs}
