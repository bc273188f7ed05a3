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

Implementations here:
    load_policy(checkpoint, device)   a saved VLA checkpoint (policy + its saved pre/post processors)
    ExpertPolicy(env)                 the suite's scripted expert -- PRIVILEGED, reads sim state
Both may also expose ``n_action_steps`` (how many actions of a chunk the policy was trained to
execute before re-planning); runners use it when the user does not choose.
"""

from __future__ import annotations

import inspect
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from sim.spaces import ACTION_DIM

IMAGE_KEY_PREFIX = "observation.images."


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


def check_actions(actions: Any, low: float = -1.0, high: float = 1.0, source: str = "policy") -> np.ndarray:
    """Return the chunk as float32 [H, 7] clipped to the action space; raise on anything else.

    Non-finite values are an error, never clipped: a NaN chunk sent to a robot is a crash at best.
    """
    arr = np.asarray(actions, dtype=np.float32)
    if arr.ndim == 1:
        arr = arr[None]
    if arr.ndim != 2 or arr.shape[0] < 1 or arr.shape[1] != ACTION_DIM:
        raise ValueError(f"{source} returned actions of shape {arr.shape}; expected [H >= 1, {ACTION_DIM}]")
    if not np.all(np.isfinite(arr)):
        steps = sorted({int(i) for i in np.argwhere(~np.isfinite(arr))[:, 0]})
        raise FloatingPointError(f"{source} returned non-finite actions (NaN/Inf at chunk steps {steps[:8]})")
    return np.clip(arr, low, high)


# ── the scripted expert as a ChunkPolicy ──────────────────────────────────────────────────


class ExpertPolicy:
    """The suite's scripted expert behind the ChunkPolicy interface (baselines and tests only).

    PRIVILEGED: it ignores the observation and reads true object poses from the simulator
    (``env.unwrapped``), so (1) it must be built in the process that owns ``env`` (runners build it
    per env, inside their workers) and (2) its success rate is an upper reference for the suite,
    not something a vision policy could be expected to match. Chunks have one action (the expert
    is closed-loop), so it re-plans every step whatever the runner's ``replan`` is.
    """

    n_action_steps = 1

    def __init__(self, env: Any, **expert_kwargs: Any) -> None:
        from sim.experts import make_expert

        self.expert = make_expert(env, **expert_kwargs)

    def reset(self) -> None:
        self.expert.reset()

    def infer(self, obs: dict[str, Any]) -> dict[str, Any]:
        start = time.perf_counter()
        action = self.expert.act(obs)
        ms = (time.perf_counter() - start) * 1e3
        return {
            "actions": check_actions(action, source="expert"),
            "timing_ms": {"expert": ms},
            "visual_tokens": 0,
            "keep_masks": {},
        }


# ── a saved VLA checkpoint as a ChunkPolicy ───────────────────────────────────────────────


class VLAChunkPolicy:
    """A ``VLAPolicy`` with its pre/post processors: runtime obs dict in, un-normalised chunk out.

    Validation is split by who knows the format: this adapter checks only what it converts (the
    runtime's uint8 [H, W, 3] camera images -> float [3, H, W] in [0, 1]); the policy's
    preprocessor (policies/processor_vla.py) checks the rest (NaN state, empty instruction, image
    range/size) and raises ValueError before the model runs.
    """

    def __init__(self, policy: Any, preprocessor: Any, postprocessor: Any, checkpoint: str | Path = "") -> None:
        self.policy, self.preprocessor, self.postprocessor = policy, preprocessor, postprocessor
        self.checkpoint = str(checkpoint)
        cfg = policy.config
        self.camera_keys = list(cfg.camera_keys)
        self.n_action_steps = int(cfg.n_action_steps)
        self.chunk_size = int(cfg.chunk_size)
        self.grid = tuple(cfg.vision.grid)
        # Per-stage timings only if the policy offers a hook for them (VLAModel.encode has one).
        params = inspect.signature(policy.predict_action_chunk).parameters
        self._stage_hook = "stage" in params

    def reset(self) -> None:
        self.policy.reset()

    def _batch(self, obs: dict[str, Any]) -> dict[str, Any]:
        import torch

        images = obs.get("images")
        if not isinstance(images, dict):
            raise ValueError(f"obs['images'] must be a dict camera -> uint8 [H, W, 3], got {type(images).__name__}")
        batch: dict[str, Any] = {}
        for key in self.camera_keys:
            cam = key.removeprefix(IMAGE_KEY_PREFIX)
            if cam not in images:
                raise ValueError(f"the policy needs camera '{cam}'; obs['images'] has {sorted(images)}")
            img = np.asarray(images[cam])
            if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
                raise ValueError(
                    f"camera '{cam}' must be uint8 [H, W, 3] (RGB, upright), got {img.dtype} {tuple(img.shape)}"
                )
            batch[key] = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).float().div_(255.0)
        if "state" not in obs:
            raise ValueError("obs has no 'state' (float32 [8], see sim/spaces.py)")
        batch["observation.state"] = torch.as_tensor(np.asarray(obs["state"], dtype=np.float32))
        batch["task"] = obs.get("instruction")
        return batch

    def infer(self, obs: dict[str, Any]) -> dict[str, Any]:
        import torch

        timing: dict[str, float] = {}
        t0 = time.perf_counter()
        with torch.inference_mode():
            batch = self.preprocessor(self._batch(obs))
            t1 = time.perf_counter()
            kwargs = {"stage": _StageTimer(timing)} if self._stage_hook else {}
            chunk = self.policy.predict_action_chunk(batch, **kwargs)
            t2 = time.perf_counter()
            chunk = self.postprocessor(chunk)
        t3 = time.perf_counter()
        timing.update(preprocess=(t1 - t0) * 1e3, model=(t2 - t1) * 1e3, postprocess=(t3 - t2) * 1e3, total=(t3 - t0) * 1e3)
        actions = chunk.detach().float().cpu().numpy()
        if actions.ndim == 3:
            actions = actions[0]
        tokens, masks = self._compression()
        return {
            "actions": check_actions(actions, source=f"policy '{self.checkpoint}'"),
            "timing_ms": timing,
            "visual_tokens": tokens,
            "keep_masks": masks,
        }

    def _compression(self) -> tuple[int, dict[str, np.ndarray]]:
        """Visual token count and per-camera keep masks of the last call (policy.last_compression)."""
        info = getattr(self.policy, "last_compression", None) or {}
        tokens = int(info.get("visual_tokens_in") or 0)
        h, w = self.grid
        masks = {}
        for key, kept in (info.get("kept") or {}).items():
            k = kept.detach().float().cpu()[0]  # first batch item: [N] or soft [N, M]
            if k.ndim == 2:  # soft assignment: how much of each patch went into some output token
                k = k.sum(-1)
            if k.numel() == h * w:
                masks[key.removeprefix(IMAGE_KEY_PREFIX)] = k.clamp(0, 1).reshape(h, w).numpy().astype(np.float32)
        return tokens, masks


class _StageTimer:
    """``stage("vision")`` context manager that adds wall milliseconds per stage into ``timing``."""

    def __init__(self, timing: dict[str, float]) -> None:
        self.timing = timing

    @contextmanager
    def __call__(self, name: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.timing[name] = self.timing.get(name, 0.0) + (time.perf_counter() - start) * 1e3


def _cli_overrides(overrides: dict[str, Any], prefix: str = "") -> list[str]:
    """{"head": {"num_flow_steps": 4}, "n_action_steps": 4} -> ["--head.num_flow_steps=4", ...]."""
    import json

    out = []
    for key, value in overrides.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and not name.endswith("kwargs"):
            out += _cli_overrides(value, f"{name}.")
        elif isinstance(value, (dict, list, tuple)):
            out.append(f"--{name}={json.dumps(value)}")
        elif value is None:
            out.append(f"--{name}=null")
        else:
            out.append(f"--{name}={str(value).lower() if isinstance(value, bool) else value}")
    return out


def load_policy(checkpoint: str | Path, device: str = "cpu", accel: Any = None, **overrides: Any) -> VLAChunkPolicy:
    """Load a saved VLA checkpoint folder (vla/checkpoint.py layout) as a ChunkPolicy.

    ``overrides`` are config fields to change at load time (e.g. ``n_action_steps=4`` or
    ``head={"num_flow_steps": 5}``); ones that would change the architecture are rejected with
    every difference named. ``accel`` is an acceleration preset (a name such as "fast", or its
    config; vla/accel.py) applied after loading. Raises FileNotFoundError naming a missing folder/file.
    """
    from vla.checkpoint import load_checkpoint

    path = Path(checkpoint).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"checkpoint folder not found: '{path}' (pass checkpoint=<dir> or checkpoint=expert)")
    config = None
    if overrides:
        from lerobot.configs import PreTrainedConfig

        config = PreTrainedConfig.from_pretrained(path, cli_overrides=_cli_overrides(overrides))
    loaded = load_checkpoint(path, config=config, device=device)
    policy = loaded.policy
    if accel is not None:
        from vla.accel import accelerate

        policy, _ = accelerate(policy, loaded.preprocessor, accel)
    return VLAChunkPolicy(policy, loaded.preprocessor, loaded.postprocessor, checkpoint=path)
