"""The plain-dict boundary where sim/, ros_nodes/ and policies meet (ARCHITECTURE: "observation dict
in, action chunk out"). Anything that acts implements ``ChunkPolicy``: a trained VLA checkpoint, a
scripted expert, a remote server. Runners (gym loops, ROS nodes, benchmarks) depend only on this.

    obs = {
        "images": {"agentview": uint8 [H, W, 3], "wrist": uint8 [H, W, 3]},   # RGB, upright
        "state": float32 [8],                                                # sim/spaces.py
        "instruction": str,
    }
    out = policy.infer(obs)
    out["actions"]        float32 [H, 7]  action chunk in the env's action units, H >= 1
    out["timing_ms"]      dict stage -> milliseconds for this call (may be empty)
    out["visual_tokens"]  int, visual tokens that entered the language backbone (0 if none)
    out["keep_masks"]     dict camera -> float32 [h, w] in [0, 1] (which patches were kept/merged),
                          empty when the policy has no visual tokens
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class ChunkPolicy(Protocol):
    def infer(self, obs: dict[str, Any]) -> dict[str, Any]: ...

    def reset(self) -> None: ...


def obs_from_env(env_obs: dict[str, Any], instruction: str) -> dict[str, Any]:
    """Convert a gym observation (sim/spaces.py format) into the runtime observation dict."""
    return {
        "images": dict(env_obs["pixels"]),
        "state": np.asarray(env_obs["agent_pos"], dtype=np.float32),
        "instruction": instruction,
    }
