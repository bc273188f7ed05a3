"""The plain-dict boundary where sim/, ros_nodes/ and policies meet (docs/architecture.md: "observation
dict in, action chunk out"). Anything that acts implements ``ChunkPolicy``: a trained VLA checkpoint, a
scripted expert, a remote server. Runners (gym loops, ROS nodes, benchmarks) depend only on this.

    obs = {
        "images": {<camera>: uint8 [H, W, 3], ...},   # RGB, upright; the robot's cameras
        "state": float32 [S],                         # the robot's state
        "instruction": str,
    }
    out = policy.infer(obs)
    out["actions"]        float32 [H, A]  action chunk in the robot's action units, H >= 1, inside
                          its limits (``policy.embodiment``: policies/embodiment.py)
    out["timing_ms"]      dict stage -> milliseconds for this call (may be empty)
    out["visual_tokens"]  int, visual tokens that entered the language backbone (0 if none)
    out["keep_masks"]     dict camera -> float32 [h, w] in [0, 1] (which patches were kept/merged),
                          empty when the policy has no visual tokens

Implementations here:
    load_policy(checkpoint, device)   a saved checkpoint folder (policy + its saved pre/post processors):
                                      a VLA one (config.json "type": "vla") -> VLAChunkPolicy, any other
                                      lerobot policy (`lerobot-train --policy.type=act|diffusion`,
                                      <output_dir>/checkpoints/<step>/pretrained_model) -> LeRobotChunkPolicy
    ExpertPolicy(env)                 the suite's scripted expert -- PRIVILEGED, reads sim state
    RandomPolicy(env)                 uniform random actions in the env's action space (chance level)
They may also expose ``n_action_steps`` (how many actions of a chunk the policy was trained to
execute before re-planning; runners use it when the user does not choose), ``policy_type`` and
``num_params`` (reported by `vla eval`), and ``observe(obs)``: a policy that conditions on past
frames (lerobot's Diffusion Policy with ``n_obs_steps`` > 1) wants every observation between two
``infer`` calls; runners that step an env call it for each of them (vla/evaluate.py does).
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import time
from collections import deque
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from policies.embodiment import Embodiment, env_embodiment  # noqa: F401  (env_embodiment: re-exported)

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


def check_actions(actions: Any, robot: Embodiment, source: str = "policy") -> np.ndarray:
    """The chunk as float32 [H, robot.action_dim], clipped into the robot's own action limits;
    ``EmbodimentError`` (a ValueError) for a wrong shape, ``FloatingPointError`` for NaN/Inf (never
    clipped: a NaN chunk sent to a robot is a crash at best)."""
    arr = np.asarray(actions, dtype=np.float32)
    if arr.ndim in (1, 2) and arr.shape[-1] == robot.action_dim and not np.all(np.isfinite(arr)):
        steps = sorted({int(i) for i in np.argwhere(~np.isfinite(arr.reshape(-1, robot.action_dim)))[:, 0]})
        raise FloatingPointError(f"{source} returned non-finite actions (NaN/Inf at chunk steps {steps[:8]})")
    return robot.check_actions(arr, who=source)


def policy_embodiment(config: Any) -> Embodiment:
    """The robot a checkpoint's policy was trained for: recorded in its config (``embodiment``), or,
    for checkpoints saved before that field (and lerobot's ACT/Diffusion ones), derived from its
    features -- an 8-D state / 7-D action policy is the tabletop/LIBERO arm every such vla
    checkpoint was trained on; anything else keeps only its dims (no limits known)."""
    robot = config.robot() if hasattr(config, "robot") else None
    if robot is not None:
        return robot
    from policies.embodiment import Camera
    from sim import spaces

    cams = tuple(Camera(key.removeprefix(IMAGE_KEY_PREFIX), int(ft.shape[1]), int(ft.shape[2]))
                 for key, ft in (config.image_features or {}).items())
    state = config.robot_state_feature
    state_dim = int(state.shape[0]) if state is not None else 0
    action_dim = int(config.action_feature.shape[0])
    if (state_dim, action_dim) == (spaces.STATE_DIM, spaces.ACTION_DIM):
        return dataclasses.replace(spaces.embodiment((cams[0].height, cams[0].width)), cameras=cams)
    return Embodiment(cams, state_dim, action_dim)


def check_compatible(policy: Any, robot: Embodiment, where: str = "the env") -> None:
    """EmbodimentError naming every field in which ``where`` differs from the robot ``policy`` was
    trained for (cameras, state/action dims, action kind), before anything runs."""
    from policies.embodiment import EmbodimentError

    mine = getattr(policy, "embodiment", None)
    if mine is None:
        return  # experts, random and remote policies are built for the env they run in
    diffs = mine.differences(robot)
    if diffs:
        raise EmbodimentError(f"policy '{getattr(policy, 'checkpoint', '')}' was trained for {mine.describe()} but "
                              f"{where} is {robot.describe()}: " + "; ".join(diffs))


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
    policy_type = "expert"

    def __init__(self, env: Any, **expert_kwargs: Any) -> None:
        from sim.experts import make_expert

        self.expert = make_expert(env, **expert_kwargs)
        self._robot = env_embodiment(env)

    def reset(self) -> None:
        self.expert.reset()

    def infer(self, obs: dict[str, Any]) -> dict[str, Any]:
        start = time.perf_counter()
        action = self.expert.act(obs)
        ms = (time.perf_counter() - start) * 1e3
        return {
            "actions": check_actions(action, self._robot, source="expert"),
            "timing_ms": {"expert": ms},
            "visual_tokens": 0,
            "keep_masks": {},
        }


class RandomPolicy:
    """Uniform random actions in ``env.action_space``: the chance level a trained policy must beat.

    Draws from its own generator, seeded at ``reset`` from numpy's global RNG, which the evaluator
    seeds per episode: the same episode gets the same actions on every run and worker."""

    n_action_steps = 1
    policy_type = "random"

    def __init__(self, env: Any) -> None:
        space = env.action_space
        self.low, self.high = np.asarray(space.low, np.float32), np.asarray(space.high, np.float32)
        self.rng = np.random.default_rng(0)

    def reset(self) -> None:
        self.rng = np.random.default_rng(int(np.random.randint(2**31)))

    def infer(self, obs: dict[str, Any]) -> dict[str, Any]:
        action = self.rng.uniform(self.low, self.high).astype(np.float32)
        return {"actions": action[None], "timing_ms": {}, "visual_tokens": 0, "keep_masks": {}}


# ── saved checkpoints (VLA or any lerobot policy) as ChunkPolicies ────────────────────────


def obs_to_batch(obs: dict[str, Any], camera_keys: list[str]) -> dict[str, Any]:
    """Runtime obs dict -> the un-preprocessed lerobot frame the saved preprocessors expect:
    ``observation.images.<cam>`` float [3, H, W] in [0, 1], ``observation.state`` float [S], ``task``.

    Checks only what it converts (uint8 [H, W, 3] images, a state); the policy's preprocessor checks
    the rest (the VLA one rejects NaN state, empty instructions, wrong image sizes).
    """
    import torch

    images = obs.get("images")
    if not isinstance(images, dict):
        raise ValueError(f"obs['images'] must be a dict camera -> uint8 [H, W, 3], got {type(images).__name__}")
    batch: dict[str, Any] = {}
    for key in camera_keys:
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
        raise ValueError("obs has no 'state' (float32 [S], the robot's state vector)")
    batch["observation.state"] = torch.as_tensor(np.asarray(obs["state"], dtype=np.float32))
    batch["task"] = obs.get("instruction")
    return batch


class _ProcessedChunkPolicy:
    """A lerobot ``PreTrainedPolicy`` with its saved pre/post processors behind ``infer``: runtime obs
    dict in, un-normalised chunk out, ``timing_ms`` with preprocess/model/postprocess/total.
    Subclasses say how a preprocessed batch becomes a chunk and what compression info they have."""

    def __init__(self, policy: Any, preprocessor: Any, postprocessor: Any, checkpoint: str | Path = "") -> None:
        self.policy, self.preprocessor, self.postprocessor = policy, preprocessor, postprocessor
        self.checkpoint = str(checkpoint)
        cfg = policy.config
        self.policy_type = str(getattr(cfg, "type", None) or type(policy).__name__)
        self.camera_keys = list(getattr(cfg, "image_features", None) or [])
        # The robot it was trained for: every chunk is checked against its dims and action limits.
        self.embodiment = policy_embodiment(cfg)
        self.n_action_steps = int(cfg.n_action_steps)
        self.num_params = sum(p.numel() for p in policy.parameters())

    def reset(self) -> None:
        self.policy.reset()

    def _batch(self, obs: dict[str, Any]) -> dict[str, Any]:
        return obs_to_batch(obs, self.camera_keys)

    def _preprocess(self, obs: dict[str, Any]) -> dict[str, Any]:
        return self.preprocessor(self._batch(obs))

    def _predict(self, batch: dict[str, Any], timing: dict[str, float]) -> tuple[Any, dict | None]:
        """(normalised chunk, what the compression did: None for policies without visual tokens)."""
        return self.policy.predict_action_chunk(batch), None

    def _compression(self, info: dict | None) -> tuple[int, dict[str, np.ndarray]]:
        return 0, {}

    def infer(self, obs: dict[str, Any], rtc: Any = None) -> dict[str, Any]:
        """``rtc``: a real-time-chunking guide for the flow head (vla/chunking.py builds it), VLA only."""
        import torch

        timing: dict[str, float] = {}
        t0 = time.perf_counter()
        with torch.inference_mode():
            batch = self._preprocess(obs)
            t1 = time.perf_counter()
            chunk, compression = self._predict(batch, timing) if rtc is None else self._predict(batch, timing, rtc=rtc)
            t2 = time.perf_counter()
            chunk = self.postprocessor(chunk)
        t3 = time.perf_counter()
        timing.update(preprocess=(t1 - t0) * 1e3, model=(t2 - t1) * 1e3, postprocess=(t3 - t2) * 1e3, total=(t3 - t0) * 1e3)
        actions = chunk.detach().float().cpu().numpy()
        if actions.ndim == 3:
            actions = actions[0]
        tokens, masks = self._compression(compression)
        return {
            "actions": check_actions(actions, self.embodiment, source=f"policy '{self.checkpoint}'"),
            "timing_ms": timing,
            "visual_tokens": tokens,
            "keep_masks": masks,
            "compression": compression,  # raw (kept per camera: [B, N] | [B, N, M]), for overlays; None if none
        }


class VLAChunkPolicy(_ProcessedChunkPolicy):
    """A ``VLAPolicy`` with its pre/post processors: runtime obs dict in, un-normalised chunk out.

    Validation is split by who knows the format: this adapter checks only what it converts (the
    runtime's uint8 [H, W, 3] camera images -> float [3, H, W] in [0, 1]); the policy's
    preprocessor (policies/processor_vla.py) checks the rest (NaN state, empty instruction, image
    range/size) and raises ValueError before the model runs.
    """

    def __init__(self, policy: Any, preprocessor: Any, postprocessor: Any, checkpoint: str | Path = "") -> None:
        super().__init__(policy, preprocessor, postprocessor, checkpoint)
        cfg = policy.config
        self.camera_keys = list(cfg.camera_keys)
        # Only the cameras it reads (a dataset may have recorded more).
        self.embodiment = dataclasses.replace(
            self.embodiment, cameras=tuple(c for c in self.embodiment.cameras if c.key in self.camera_keys))
        self.chunk_size = int(cfg.chunk_size)
        self.grid = tuple(cfg.vision.grid)
        # Per-stage timings only if the policy offers a hook for them (VLAModel.encode has one).
        params = inspect.signature(policy.predict_action_chunk).parameters
        self._stage_hook = "stage" in params

    def _predict(self, batch: dict[str, Any], timing: dict[str, float], rtc: Any = None) -> tuple[Any, dict]:
        kwargs = {"stage": _StageTimer(timing)} if self._stage_hook else {}
        if rtc is not None:  # policies.action_heads.RTCGuide (vla/chunking.py)
            kwargs["rtc"] = rtc
        return self.policy.predict_action_chunk_with_info(batch, **kwargs)

    def _compression(self, info: dict | None) -> tuple[int, dict[str, np.ndarray]]:
        """Visual token count and per-camera keep masks ([h, w] in [0, 1]) of this call."""
        info = info or {}
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


class LeRobotChunkPolicy(_ProcessedChunkPolicy):
    """Any other lerobot policy (ACT, Diffusion Policy, ... as `lerobot-train` saves them) with its
    saved pre/post processors, so it is evaluated exactly like a VLA checkpoint.

    Same semantics as lerobot's own ``select_action`` loop, one chunk per call:
    * ``predict_action_chunk`` on the preprocessed observation; the whole chunk is returned (ACT:
      ``chunk_size`` actions, of which lerobot executes the first ``n_action_steps``; Diffusion:
      its ``n_action_steps`` actions from the current step). Runners execute ``n_action_steps``.
    * Observation history (``n_obs_steps`` > 1, Diffusion's default 2): the last ``n_obs_steps``
      frames seen through ``infer`` and ``observe``, the oldest repeated after ``reset`` until there
      are enough (what lerobot's ``populate_queues`` does). A runner that does not call ``observe``
      on the steps between calls gives the policy frames ``n_action_steps`` apart instead of 1.
      ``timing_ms["preprocess"]`` covers all ``n_obs_steps`` frames (raw frames are kept, and
      preprocessed at the call).
    * No visual-token information (``visual_tokens`` 0, no keep masks) and no acceleration presets.
    """

    def __init__(self, policy: Any, preprocessor: Any, postprocessor: Any, checkpoint: str | Path = "") -> None:
        super().__init__(policy, preprocessor, postprocessor, checkpoint)
        cfg = policy.config
        if getattr(cfg, "temporal_ensemble_coeff", None) is not None:
            raise ValueError(
                f"'{checkpoint}' is an ACT policy with temporal ensembling (temporal_ensemble_coeff="
                f"{cfg.temporal_ensemble_coeff}), which needs a model call every step and blends the "
                "chunks; this chunk runtime does not do that. Load it with policy.temporal_ensemble_coeff=null "
                "(plain chunking) to evaluate it here."
            )
        self.n_obs_steps = int(getattr(cfg, "n_obs_steps", 1) or 1)
        self.chunk_size = int(getattr(cfg, "chunk_size", None) or self.n_action_steps)
        self._history: deque[dict[str, Any]] = deque(maxlen=self.n_obs_steps)
        # (H, W) each camera was trained at, unless the policy resizes its input itself (Diffusion's
        # resize_shape); a convolutional backbone would otherwise run silently on other sizes.
        self._image_hw = {} if getattr(cfg, "resize_shape", None) else {
            key: tuple(ft.shape[1:]) for key, ft in cfg.image_features.items()}

    def reset(self) -> None:
        self.policy.reset()
        self._history.clear()

    def _batch(self, obs: dict[str, Any]) -> dict[str, Any]:
        batch = obs_to_batch(obs, self.camera_keys)
        for key, hw in self._image_hw.items():
            if tuple(batch[key].shape[1:]) != hw:
                raise ValueError(
                    f"camera '{key.removeprefix(IMAGE_KEY_PREFIX)}' is {tuple(batch[key].shape[1:])} (H, W) but the "
                    f"policy '{self.checkpoint}' was trained on {hw}; render at that size (vla eval: "
                    f"env.image_size=[{hw[0]},{hw[1]}])"
                )
        return batch

    def observe(self, obs: dict[str, Any]) -> None:
        """A frame between two ``infer`` calls (only kept if the policy conditions on past frames)."""
        if self.n_obs_steps > 1:
            self._history.append(self._batch(obs))

    def _preprocess(self, obs: dict[str, Any]) -> dict[str, Any]:
        import torch

        self._history.append(self._batch(obs))
        if self.n_obs_steps == 1:
            return self.preprocessor(self._history[-1])
        frames = list(self._history)
        frames = [frames[0]] * (self.n_obs_steps - len(frames)) + frames
        processed = [self.preprocessor(dict(f)) for f in frames]
        batch = dict(processed[-1])  # task, complementary data: the current frame's
        for key, value in processed[-1].items():
            if key.startswith("observation.") and isinstance(value, torch.Tensor):
                batch[key] = torch.stack([p[key] for p in processed], dim=1)  # [B, n_obs_steps, ...]
        return batch


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


VLA_TYPE = "vla"


def checkpoint_type(checkpoint: str | Path) -> str:
    """The policy type a checkpoint folder holds (config.json "type": "vla", "act", "diffusion", ...).

    Raises FileNotFoundError for a missing folder or a folder without config.json (naming the
    ``pretrained_model`` subfolder when that is what was meant) and ValueError for a config.json
    that is not a lerobot policy config.
    """
    path = Path(checkpoint).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"checkpoint folder not found: '{path}' (pass checkpoint=<dir>, checkpoint=expert or checkpoint=random)")
    config = path / "config.json"
    if not config.is_file():
        hint = ""
        if (path / "pretrained_model" / "config.json").is_file():
            hint = f" Did you mean '{path / 'pretrained_model'}'? (lerobot-train saves the policy there)"
        raise FileNotFoundError(
            f"'{path}' is not a policy checkpoint: it has no config.json. Expected a folder saved by "
            "`vla train` (<run>/checkpoints/<step>) or by `lerobot-train` "
            f"(<output_dir>/checkpoints/<step>/pretrained_model).{hint}"
        )
    try:
        kind = json.loads(config.read_text()).get("type")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as e:
        raise ValueError(f"'{config}' is not a lerobot policy config (not a JSON object): {e}") from e
    if not isinstance(kind, str) or not kind:
        raise ValueError(f"'{config}' is not a lerobot policy config: it has no \"type\" (e.g. \"vla\", \"act\", "
                         "\"diffusion\")")
    return kind


def load_policy(checkpoint: str | Path, device: str = "cpu", accel: Any = None,
                trust_checkpoint_code: bool | None = None, **overrides: Any) -> VLAChunkPolicy | LeRobotChunkPolicy:
    """Load a saved checkpoint folder as a ChunkPolicy: a VLA one (vla/checkpoint.py layout) or any
    other lerobot policy saved by `lerobot-train` (``.../checkpoints/<step>/pretrained_model``).

    ``overrides`` are config fields to change at load time (e.g. ``n_action_steps=4`` or
    ``head={"num_flow_steps": 5}``); for VLA ones those that would change the architecture are
    rejected with every difference named. ``accel`` is an acceleration preset (a name such as
    "fast", or its config; vla/accel.py) applied after loading, VLA checkpoints only. Raises
    FileNotFoundError naming a missing folder/file, ValueError for a folder that is not a policy.
    Checkpoints are data, not code: a processor step vla did not write is refused
    (``UntrustedCheckpointError``) unless ``trust_checkpoint_code`` (default: the
    ``$VLA_TRUST_CHECKPOINT_CODE`` env var, set by `vla <command> trust_checkpoint_code=true`).
    """
    if str(checkpoint).startswith(("ws://", "wss://")):  # a policy server (`vla serve`): vla/remote.py
        from vla.remote import load_remote_policy
        return load_remote_policy(str(checkpoint), device, accel, trust_checkpoint_code, **overrides)
    if (Path(checkpoint).expanduser() / "export.json").is_file():  # `vla export` (model.onnx): vla/onnx_policy.py
        from vla.onnx_policy import load_onnx_policy
        return load_onnx_policy(checkpoint, device, accel, trust_checkpoint_code, **overrides)
    path = Path(checkpoint).expanduser()
    kind = checkpoint_type(path)
    if kind != VLA_TYPE:
        if accel is not None:
            raise ValueError(f"acceleration presets (accel={_accel_name(accel)}) apply to VLA checkpoints only; "
                             f"'{path}' is a lerobot '{kind}' policy. Evaluate it with accel=none.")
        return _load_lerobot_policy(path, kind, device, overrides, trust_checkpoint_code)

    from vla.checkpoint import load_checkpoint

    config = None
    if overrides:
        from lerobot.configs import PreTrainedConfig

        config = PreTrainedConfig.from_pretrained(path, cli_overrides=_cli_overrides(overrides))
    loaded = load_checkpoint(path, config=config, device=device, trust_checkpoint_code=trust_checkpoint_code)
    policy = loaded.policy
    if accel is not None:
        from vla.accel import accelerate

        policy, _ = accelerate(policy, loaded.preprocessor, accel)
    return VLAChunkPolicy(policy, loaded.preprocessor, loaded.postprocessor, checkpoint=path)


def _accel_name(accel: Any) -> str:
    return str(accel.get("name", accel)) if hasattr(accel, "get") else str(accel)


def _load_lerobot_policy(path: Path, kind: str, device: str, overrides: dict[str, Any],
                         trust_checkpoint_code: bool | None = None) -> LeRobotChunkPolicy:
    """What `lerobot-eval --policy.path=<path>` loads (policy class of the config's type, weights,
    saved processors with the device overridden), strict about missing or unexpected weights; the
    same processor-step, state-file and stats checks as a vla checkpoint run first."""
    from safetensors import SafetensorError

    from lerobot.configs import PreTrainedConfig
    from lerobot.policies.factory import get_policy_class, make_pre_post_processors
    from policies.checkpoint_files import (
        CheckpointError,
        check_normalizer_stats,
        check_processor_files,
        trust_from_env,
    )

    if not (path / "model.safetensors").is_file():
        raise FileNotFoundError(f"lerobot checkpoint file not found: '{path / 'model.safetensors'}'")
    trust = trust_from_env() if trust_checkpoint_code is None else trust_checkpoint_code
    check_normalizer_stats(check_processor_files(path, trust_code=trust), allow_zero_std=True)
    try:
        policy_cls = get_policy_class(kind)
    except (ValueError, KeyError) as e:
        raise ValueError(f"'{path}' holds a policy of type '{kind}', which this lerobot does not know: {e}") from e
    config = PreTrainedConfig.from_pretrained(path, cli_overrides=[*_cli_overrides(overrides), f"--device={device}"])
    if getattr(config, "pretrained_backbone_weights", None):
        # The trained backbone is in model.safetensors: do not fetch the ImageNet init just to overwrite it.
        config.pretrained_backbone_weights = None
    try:
        policy = policy_cls.from_pretrained(path, config=config, strict=True)
    except (SafetensorError, OSError, RuntimeError, ValueError) as e:  # corrupt, truncated or mismatched
        raise CheckpointError(f"cannot load the weights '{path / 'model.safetensors'}' of this '{kind}' "
                              f"checkpoint (corrupt, truncated or not matching its config.json): {e}") from e
    pre, post = make_pre_post_processors(config, pretrained_path=str(path),
                                         preprocessor_overrides={"device_processor": {"device": device}})
    return LeRobotChunkPolicy(policy, pre, post, checkpoint=path)
