"""An exported folder (`vla export ... format=onnx`, vla/onnx_export.py) as a ChunkPolicy run by onnxruntime.

    policy = vla.runtime.load_policy("outputs/export/<time>/onnx")   # -> OnnxChunkPolicy
    out = policy.infer(obs)            # the runtime obs dict -> {"actions", "timing_ms", "visual_tokens", "keep_masks"}
    out = policy.infer(obs, noise=n)   # n float32 [chunk_size, action_dim]: the flow head's initial sample

Same interface as ``VLAChunkPolicy`` (vla/runtime.py): ``infer``/``reset``, ``embodiment`` (every
chunk checked against its dims and action limits), ``n_action_steps``, ``chunk_size``,
``policy_type``, ``num_params``, ``checkpoint``. The folder's own saved processors run in Python
around the graph (tokenise, check + resize images, normalise state; un-normalise actions), exactly
as for the torch checkpoint. Without ``noise`` the flow head's sample is drawn from torch's global
RNG, as the eager head draws it: the same seed (``torch.manual_seed``, which `vla eval` and
`vla serve` set) gives the same chunk as the torch checkpoint, within 1e-4.

Loading checks, each naming the file: ``export.json`` present and of a known format, ``model.onnx``
present with the SHA-256 recorded at export, processor steps vla writes only (unless
``trust_checkpoint_code``), usable normalisation stats. The graph fixes the architecture, so the only
load-time override is ``n_action_steps``; acceleration presets are applied at export
(`vla export ... accel=fast`), not at load.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

# The exported folder's format (vla/onnx_export.py writes it; read here).
FORMAT = "onnx"
FORMAT_VERSION = 1
ONNX_FILE = "model.onnx"
MANIFEST_FILE = "export.json"
KEPT_PREFIX = "kept."  # graph outputs "kept.<camera>": the compressor's keep mask / soft assignment


def onnx_session(path: str | Path, threads: int | None = None, device: str = "cpu"):
    """An onnxruntime session for ``path``: ``threads`` intra-op threads (default: torch's setting),
    one inter-op thread, sequential execution; CPU, or CUDA when ``device`` is a cuda device."""
    import onnxruntime as ort
    import torch

    so = ort.SessionOptions()
    so.intra_op_num_threads = int(threads or torch.get_num_threads())
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.log_severity_level = 3
    # Idle pool threads must sleep, not spin: spinning ones starve torch's pre/post-processing (and
    # anything else) on a small shared CPU, as OMP_WAIT_POLICY=PASSIVE does for torch (Makefile).
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    providers = ["CPUExecutionProvider"]
    if str(device).startswith("cuda"):
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise ValueError(f"device={device}: this onnxruntime has no CUDA provider "
                             f"({', '.join(ort.get_available_providers())}); install onnxruntime-gpu or use device=cpu")
        providers.insert(0, "CUDAExecutionProvider")
    try:
        return ort.InferenceSession(str(path), so, providers=providers)
    except Exception as e:  # noqa: BLE001 - onnxruntime raises its own pybind types
        from policies.checkpoint_files import CheckpointError

        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise CheckpointError(f"onnxruntime cannot load '{path}': {first}") from e


def sha256(file: Path) -> str:
    digest = hashlib.sha256()
    with open(file, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def is_exported(folder: str | Path) -> bool:
    return (Path(folder).expanduser() / MANIFEST_FILE).is_file()


def read_manifest(folder: str | Path) -> dict[str, Any]:
    from policies.checkpoint_files import CheckpointError

    file = Path(folder).expanduser() / MANIFEST_FILE
    if not file.is_file():
        raise FileNotFoundError(f"exported policy file not found: '{file}' (export with `vla export format=onnx`)")
    try:
        manifest = json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"export manifest '{file}' is corrupt: {e}") from e
    kind = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
    if kind != FORMAT:
        raise CheckpointError(f"'{file}' is not an ONNX export manifest (format {kind!r}, expected {FORMAT!r})")
    if int(manifest.get("format_version", 0)) > FORMAT_VERSION:
        raise CheckpointError(f"'{file}' is export format version {manifest['format_version']}; this vla reads "
                              f"up to {FORMAT_VERSION}: upgrade vla or export again")
    return manifest


def load_onnx_policy(checkpoint: str | Path, device: str = "cpu", accel: Any = None,
                     trust_checkpoint_code: bool | None = None, **overrides: Any) -> "OnnxChunkPolicy":
    """``vla.runtime.load_policy`` for an exported folder (same arguments; see the module docstring)."""
    from vla.accel import accel_spec

    spec = accel_spec(accel)
    if spec is not None:
        raise ValueError(f"accel={spec.name}: '{checkpoint}' is an ONNX export, whose graph is fixed; apply the preset "
                         f"when exporting (vla export checkpoint=<torch checkpoint> format=onnx accel={spec.name})")
    unknown = sorted(set(overrides) - {"n_action_steps"})
    if unknown:
        raise ValueError(f"'{checkpoint}' is an ONNX export: its graph fixes {unknown}; only n_action_steps can be "
                         "changed at load time. Change them on the torch checkpoint and export again.")
    return OnnxChunkPolicy(checkpoint, device=device, trust_checkpoint_code=trust_checkpoint_code,
                           n_action_steps=overrides.get("n_action_steps"))


class OnnxChunkPolicy:
    """An exported VLA policy: saved processors in Python, the network in an onnxruntime session."""

    runtime = "onnxruntime"
    n_obs_steps = 1

    def __init__(self, folder: str | Path, device: str = "cpu", trust_checkpoint_code: bool | None = None,
                 threads: int | None = None, n_action_steps: int | None = None) -> None:
        import policies.processor_vla  # noqa: F401  (registers the processor steps the folder names)
        from lerobot.configs import PreTrainedConfig
        from lerobot.policies.factory import make_pre_post_processors
        from policies.checkpoint_files import (
            CheckpointError,
            check_normalizer_stats,
            check_processor_files,
            trust_from_env,
        )
        from vla.runtime import policy_embodiment

        path = Path(folder).expanduser()
        self.manifest = read_manifest(path)
        onnx_file = path / str(self.manifest.get("onnx_file") or ONNX_FILE)
        if not onnx_file.is_file():
            raise FileNotFoundError(f"exported policy file not found: '{onnx_file}' (named by {MANIFEST_FILE})")
        expected = self.manifest.get("onnx_sha256")
        if expected and sha256(onnx_file) != expected:
            raise CheckpointError(f"'{onnx_file}' is corrupt: its SHA-256 differs from the one recorded in "
                                  f"{MANIFEST_FILE} at export")
        trust = trust_from_env() if trust_checkpoint_code is None else trust_checkpoint_code
        check_normalizer_stats(check_processor_files(path, trust_code=trust))
        overrides = ["--device=cpu"] + ([f"--n_action_steps={int(n_action_steps)}"] if n_action_steps else [])
        config = PreTrainedConfig.from_pretrained(path, cli_overrides=overrides)
        self.config = config
        self.preprocessor, self.postprocessor = make_pre_post_processors(
            config, pretrained_path=str(path), preprocessor_overrides={"device_processor": {"device": "cpu"}})
        self.session = onnx_session(onnx_file, threads=threads, device=device)
        self._inputs = [i.name for i in self.session.get_inputs()]
        self._outputs = [o.name for o in self.session.get_outputs()]

        self.checkpoint = str(path)
        self.policy_type = f"{config.type} (onnxruntime)"
        self.camera_keys = list(config.camera_keys)
        robot = policy_embodiment(config)
        self.embodiment = dataclasses.replace(robot, cameras=tuple(c for c in robot.cameras if c.key in self.camera_keys))
        self.n_action_steps = int(config.n_action_steps)
        self.chunk_size = int(config.chunk_size)
        self.action_dim = int(config.action_dim)
        self.image_size = int(config.vision.image_size)
        self.grid = tuple(config.vision.grid)
        self.num_params = int(self.manifest.get("num_params") or 0)
        self.visual_tokens = int(self.manifest.get("visual_tokens") or 0)

    def reset(self) -> None:
        """Nothing to reset: one call is one chunk (no action queue, no observation history)."""

    def observe(self, obs: dict[str, Any]) -> None:  # no observation history
        return None

    def _feed(self, batch: dict[str, Any], noise: Any) -> dict[str, np.ndarray]:
        """The graph's inputs from a preprocessed batch, cast as ``VLAPolicy._inputs`` casts them."""
        import torch

        from lerobot.utils.constants import OBS_LANGUAGE_ATTENTION_MASK, OBS_LANGUAGE_TOKENS, OBS_STATE

        size = self.image_size
        for key in self.camera_keys:
            img = batch[key]
            if img.ndim != 4 or img.shape[1] != 3 or tuple(img.shape[-2:]) != (size, size) or img.shape[0] != 1:
                raise ValueError(f"'{key}' must be [1, 3, {size}, {size}] after preprocessing, got {tuple(img.shape)}")
        feed = {
            "images": torch.stack([batch[k] for k in self.camera_keys], dim=1).float().numpy(),
            "state": batch[OBS_STATE].float().numpy(),
            "tokens": batch[OBS_LANGUAGE_TOKENS].long().numpy(),
            "token_mask": batch[OBS_LANGUAGE_ATTENTION_MASK].bool().numpy(),
        }
        if "noise" in self._inputs:
            shape = (1, self.chunk_size, self.action_dim)
            if noise is None:  # what the eager flow head draws: torch's global RNG, same shape and dtype
                feed["noise"] = torch.randn(shape).numpy()
            else:
                n = np.asarray(noise.detach().cpu() if hasattr(noise, "detach") else noise, dtype=np.float32)
                if n.size != int(np.prod(shape)) or n.ndim not in (2, 3):
                    raise ValueError(f"noise must be float32 [{self.chunk_size}, {self.action_dim}] (or [1, ...]), "
                                     f"got {tuple(n.shape)}")
                feed["noise"] = n.reshape(shape)
        return feed

    def infer(self, obs: dict[str, Any], noise: Any = None, rtc: Any = None) -> dict[str, Any]:
        import torch

        from vla.runtime import check_actions, obs_to_batch

        if rtc is not None:
            raise ValueError(f"'{self.checkpoint}' is an ONNX export: real-time chunking guides the flow head's "
                             "sampling with gradients, which the fixed graph cannot; run RTC on the torch checkpoint")

        t0 = time.perf_counter()
        with torch.inference_mode():
            batch = self.preprocessor(obs_to_batch(obs, self.camera_keys))
            feed = self._feed(batch, noise)
            t1 = time.perf_counter()
            outs = self.session.run(None, feed)
            t2 = time.perf_counter()
            chunk = self.postprocessor(torch.from_numpy(outs[0]))
        t3 = time.perf_counter()
        actions = chunk.detach().float().cpu().numpy()
        if actions.ndim == 3:
            actions = actions[0]
        masks = {}
        h, w = self.grid
        for name, kept in zip(self._outputs[1:], outs[1:]):
            k = kept[0]
            if k.ndim == 2:  # soft assignment: how much of each patch went into some output token
                k = k.sum(-1)
            if k.size == h * w:
                masks[name.removeprefix(KEPT_PREFIX)] = np.clip(k, 0, 1).reshape(h, w).astype(np.float32)
        return {
            "actions": check_actions(actions, self.embodiment, source=f"policy '{self.checkpoint}'"),
            "timing_ms": {"preprocess": (t1 - t0) * 1e3, "model": (t2 - t1) * 1e3,
                          "postprocess": (t3 - t2) * 1e3, "total": (t3 - t0) * 1e3},
            "visual_tokens": self.visual_tokens,
            "keep_masks": masks,
        }
