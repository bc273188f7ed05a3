"""Checks a checkpoint folder passes before anything in it is loaded: checkpoints are data, not code.

Checkpoints get shared ("try my policy"), so loading one must be as safe as loading a safetensors
file. lerobot's processor-pipeline loader imports and instantiates whatever ``"class"`` a step of
``policy_preprocessor.json`` names, with arguments taken from the folder; so before any pipeline is
loaded, :func:`check_processor_files` accepts only the steps `vla` (and lerobot's own ACT/Diffusion
policies) write, by registry name, and refuses anything else naming the step and the file, unless
the user opts in with ``trust_checkpoint_code=true`` (or ``VLA_TRUST_CHECKPOINT_CODE=1`` for
lerobot's own CLIs, which this package cannot pass a flag through). Every ``state_file`` must
resolve inside the folder, whatever the opt-in. :func:`check_normalizer_stats` refuses statistics
that would run the policy with every action silently clipped (non-finite, std 0, std 1e6).

These live here, below both the plugin (``VLAPolicy.from_pretrained``, reached by ``lerobot-eval``)
and ``vla.checkpoint`` (every `vla` command), so both paths run the same checks.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

PREPROCESSOR_FILE = "policy_preprocessor.json"
POSTPROCESSOR_FILE = "policy_postprocessor.json"
TRUST_ENV = "VLA_TRUST_CHECKPOINT_CODE"

# Registry names of the processor steps `vla` checkpoints are saved with (policies/processor_vla.py
# and lerobot's default policy steps), which are also all that lerobot's ACT and Diffusion Policy
# checkpoints use. Each is constructed from plain data (maps, sizes, a vocabulary, a device name).
TRUSTED_STEPS = frozenset({
    "rename_observations_processor",
    "to_batch_processor",
    "vla_input_check",
    "vla_tokenizer",
    "device_processor",
    "normalizer_processor",
    "unnormalizer_processor",
})

# Bounds a saved normalisation std must lie in, in the feature's own units. 0 makes the normaliser
# divide by eps; 1e6 squashes every input to ~0 and maps any head output to an out-of-limit command.
# The upper bound leaves room for raw encoder ticks (SO-100 data: std ~1e3) with a margin.
MIN_STD, MAX_STD = 1e-6, 1e5
MAX_ABS_MEAN = 1e7


class CheckpointError(ValueError):
    """A checkpoint folder that cannot be loaded as asked (mismatch, missing, corrupt or unsafe file)."""


class UntrustedCheckpointError(CheckpointError):
    """The folder asks to run code (a processor step `vla` did not write) and the user did not opt in."""


def trust_from_env() -> bool:
    """The opt-in for loaders that cannot take a flag (``lerobot-eval``, ``lerobot-train``)."""
    return os.environ.get(TRUST_ENV, "").strip().lower() in {"1", "true", "yes"}


def _inside(folder: Path, name: object, where: str) -> Path:
    if not isinstance(name, str) or not name:
        raise CheckpointError(f"{where}: state_file must be a file name, got {name!r}")
    target = (folder / name).resolve()
    if not target.is_relative_to(folder.resolve()):
        raise CheckpointError(f"{where}: state_file {name!r} resolves outside the checkpoint folder "
                              f"('{target}'); refusing to read it")
    return target


def check_processor_file(folder: str | Path, name: str, trust_code: bool = False) -> list[Path]:
    """Validate one processor pipeline json; returns the state files it references (all exist)."""
    folder = Path(folder)
    file = folder / name
    if not file.is_file():
        raise FileNotFoundError(f"checkpoint file not found: '{file}'")
    try:
        pipeline = json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"checkpoint processor config '{file}' is corrupt: {e}") from e
    steps = pipeline.get("steps") if isinstance(pipeline, dict) else None
    if not isinstance(steps, list):
        raise CheckpointError(f"checkpoint processor config '{file}' has no \"steps\" list")
    states = []
    for i, step in enumerate(steps):
        where = f"'{file}' step {i}"
        if not isinstance(step, dict):
            raise CheckpointError(f"{where} is not a JSON object")
        name_ = step.get("registry_name")
        if not trust_code and ("class" in step or name_ not in TRUSTED_STEPS):
            what = f"class {step['class']!r}" if "class" in step else f"registry name {name_!r}"
            raise UntrustedCheckpointError(
                f"{where} names {what}, which is not one of the processor steps vla writes "
                f"({', '.join(sorted(TRUSTED_STEPS))}); loading it would import and run code from the "
                f"checkpoint. Refused. If you trust whoever made this checkpoint, load it with "
                f"trust_checkpoint_code=true (or {TRUST_ENV}=1 for lerobot's CLIs)."
            )
        if "state_file" in step:
            state = _inside(folder, step["state_file"], where)
            if not state.is_file():
                raise FileNotFoundError(f"checkpoint file not found: '{state}' (referenced by {file.name})")
            states.append(state)
    return states


def check_processor_files(folder: str | Path, trust_code: bool = False) -> list[Path]:
    """Both pipelines (pre + post) of a checkpoint folder; returns their state files."""
    return [s for name in (PREPROCESSOR_FILE, POSTPROCESSOR_FILE)
            for s in check_processor_file(folder, name, trust_code)]


def check_normalizer_stats(state_files: list[Path], allow_zero_std: bool = False) -> None:
    """Refuse normalisation statistics that are non-finite, zero or absurd, naming file and key.

    ``allow_zero_std``: for lerobot's own checkpoints (ACT, Diffusion), whose stats keep std 0 on a
    dimension that never moved in the dataset (un-normalising then emits its constant mean, as
    trained). vla floors every std at processor_vla.MIN_NORM_STD, so in a vla checkpoint a zero std
    means the file was edited.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    for file in state_files:
        try:
            tensors = load_file(str(file))
        except (SafetensorError, OSError, RuntimeError, ValueError) as e:
            raise CheckpointError(f"checkpoint processor state '{file}' is corrupt or truncated: {e}") from e
        for key, t in sorted(tensors.items()):
            stat = key.rsplit(".", 1)[-1]
            if stat not in {"mean", "std", "min", "max", "q01", "q99"} or not t.is_floating_point():
                continue
            values = t.double().flatten().tolist()
            bad = [i for i, v in enumerate(values) if not math.isfinite(v)]
            problem = "non-finite"
            if not bad and stat == "std":
                low = 0.0 if allow_zero_std else MIN_STD
                bad = [i for i, v in enumerate(values) if not low <= v <= MAX_STD]
                problem = f"outside [{low:g}, {MAX_STD:g}]"
            elif not bad and stat == "mean":
                bad = [i for i, v in enumerate(values) if abs(v) > MAX_ABS_MEAN]
                problem = f"beyond +/-{MAX_ABS_MEAN:g}"
            if bad:
                shown = [values[i] for i in bad[:4]]
                raise CheckpointError(
                    f"normalisation statistics in '{file}' are unusable: '{key}' is {problem} at dims "
                    f"{bad[:8]} (values {shown}); a policy run with them would emit meaningless or "
                    "clipped actions. Recompute the dataset statistics and save the checkpoint again."
                )
