"""Build what a training run updates: policy + processors (new, fine-tuned or resumed), freezing,
AdamW and the warmup/cosine schedule. The policy is used only through lerobot's policy API
(``forward``, ``get_optim_params``, ``save_pretrained`` / ``from_pretrained``) and the processor
factory ``make_vla_pre_post_processors``.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import torch

from vla.training import data
from vla.training.data import check_features, dataset_embodiment, policy_features
from vla.training.settings import FREEZE, TrainConfigError, TrainSettings

logger = logging.getLogger(__name__)

# finetune_stats=checkpoint normalises the new data with the checkpoint's mean/std. Beyond this
# (dataset std / checkpoint std, or |mean shift| in checkpoint stds) the normalised values are far
# from N(0, 1). Measured: adding 27 % noisy demos to clean LIBERO demos made 2.5x the std on two
# rotation dimensions the clean demos barely use, and the fine-tuning loss started at 4.7 where the
# checkpoint had ended its own training at 0.12.
STATS_MISMATCH = 2.0


def requested_config(s: TrainSettings, meta):
    """VLAConfig from the model + compressor presets, with features and the embodiment read from the
    dataset: the cameras default to the dataset's own (in its order) unless the model names them."""
    from policies.configuration_vla import config_from_dict

    inputs, outputs = policy_features(meta)
    robot = dataset_embodiment(meta)
    if s.model.get("camera_keys"):  # named by the user: the dataset must have them (DatasetError naming each)
        check_features(meta, list(s.model["camera_keys"]), where=f"model={s.model.get('name')}")
    extra = {} if s.model.get("camera_keys") else {"camera_keys": robot.camera_keys}
    try:
        config = config_from_dict(s.model, s.compressor, device=s.device, input_features=inputs,
                                  output_features=outputs, embodiment=robot.to_dict(), **extra)
    except (TypeError, ValueError) as e:  # a misspelt field, a wrong type, a value VLAConfig rejects
        raise TrainConfigError(f"{_preset_names(s)}: bad model/compressor config: {e}") from e
    keypose_channels(config)  # refuses now, before any data is read, when the robot has no such channels
    return config


def keypose_channels(config) -> "data.KeyposeChannels | None":
    """Where the keypose auxiliary target is read (eef position channels, gripper dim), from the
    policy's embodiment; None when the loss is off. TrainConfigError when the loss is asked for on a
    robot whose state has no end-effector position or whose action has no gripper: the target would
    be nonsense (a joint angle read as metres)."""
    if not config.keypose_loss_weight > 0:
        return None
    robot = config.robot()
    if robot is None:  # checkpoints from before the embodiment field: all were the tabletop/LIBERO arm
        return data.EEF_ARM_KEYPOSE
    if len(robot.eef_position_dims) != 3 or not robot.gripper_dims:
        raise TrainConfigError(
            f"keypose_loss_weight={config.keypose_loss_weight} needs an end-effector position in the state "
            f"(3 channels in metres) and a gripper action dim, but this robot ({robot.describe()}) has "
            f"eef_position_dims={list(robot.eef_position_dims)}, gripper_dims={list(robot.gripper_dims)}. "
            "Train with model.keypose_loss_weight=0."
        )
    return tuple(robot.eef_position_dims), robot.gripper_dims[-1]


def _preset_names(s: TrainSettings) -> str:
    return f"model={s.model.get('name')}, compressor={s.compressor.get('name')}"


def new_policy(s: TrainSettings, meta):
    """A freshly initialised policy + processors with the dataset's normalisation stats."""
    from policies.modeling_vla import VLAPolicy
    from policies.processor_vla import make_vla_pre_post_processors

    config = requested_config(s, meta)
    check_features(meta, list(config.camera_keys), where=f"model={s.model.get('name')}")
    try:
        policy = VLAPolicy(config)
    except (TypeError, ValueError) as e:  # e.g. compressor parameters its method does not take
        raise TrainConfigError(f"{_preset_names(s)}: cannot build the policy: {e}") from e
    pre, post = make_vla_pre_post_processors(config, dataset_stats=meta.stats)
    return policy.to(s.device), pre, post


def load_policy(path: str | Path, s: TrainSettings, meta, *, resume: bool):
    """A policy + processors from a checkpoint folder (``vla.checkpoint.load_checkpoint``).

    resume: the checkpoint must match the requested model/compressor (architecture check) and its
        saved processors (tokenizer vocabulary, normalisation stats) are used as they are.
    fine-tune (``init_from``): the architecture comes from the checkpoint (checked against the
        request only when model=/compressor= were given explicitly); the saved processors are used
        with the new dataset's normalisation stats (``finetune_stats=dataset``, lerobot's behaviour)
        or the checkpoint's (``=checkpoint``). A dataset of another robot (other cameras, state or
        action) is a cross-embodiment fine-tune (:func:`cross_embodiment`).
    """
    import policies.processor_vla  # noqa: F401  registers the vla processor steps the loader looks up
    from vla.checkpoint import load_checkpoint

    path = Path(path).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"checkpoint folder '{path}' does not exist (expected a folder with config.json)")
    # A run started with init_from took its architecture from that checkpoint, so resuming it must not
    # check against the defaults (only against an architecture the user named explicitly).
    check_arch = s.check_init_arch or (resume and not s.init_from)
    requested = requested_config(s, meta) if check_arch else None
    keep_stats = resume or s.finetune_stats == "checkpoint"
    ckpt = load_checkpoint(path, config=requested, device=s.device, processors=True)
    policy, config = ckpt.policy, ckpt.policy.config
    if not resume:
        from vla.runtime import policy_embodiment

        robot, theirs = dataset_embodiment(meta), policy_embodiment(config)
        if theirs.differences(robot) or [c.name for c in theirs.cameras] != robot.camera_names:
            if s.finetune_stats == "checkpoint":
                raise TrainConfigError(f"finetune_stats=checkpoint: checkpoint '{path}' is for another robot "
                                       f"({theirs.describe()}; this dataset: {robot.describe()}), so its "
                                       "statistics cannot normalise this data. Use finetune_stats=dataset.")
            policy, pre, post = cross_embodiment(ckpt, meta, robot, s.device)
            policy.train()
            return policy.to(s.device), pre, post
    check_features(meta, list(config.camera_keys), config.state_dim, config.action_dim, where=f"checkpoint '{path}'")
    pre, post = ckpt.preprocessor, ckpt.postprocessor
    if not keep_stats:
        pre, post = _processors_with_stats(path, config, meta.stats, s.device)
    elif not resume:  # a fine-tune keeping the checkpoint's stats: say when the new data does not fit them
        for line in normalization_mismatch(_normalizer_stats(pre), meta.stats):
            logger.warning("finetune_stats=checkpoint: %s; finetune_stats=dataset re-normalises with this dataset", line)
    policy.train()
    return policy.to(s.device), pre, post


# What depends on the robot, re-initialised by a cross-embodiment fine-tune: the state projection, the
# whole action head (it reads and writes action vectors), the keypose head (a position in the state)
# and the per-camera embeddings when the cameras change. Everything else (vision tower, compressor,
# language backbone and its token embeddings, projector, instruction projection, action queries) is kept.
EMBODIMENT_PARAMS = ("model.state_proj.", "model.head.", "model.keypose")


def cross_embodiment(ckpt, meta, robot, device: str):
    """A policy for ``robot`` (the dataset's) initialised from a checkpoint of another robot: every
    tensor that does not depend on the embodiment is copied; the rest is freshly initialised (seeded)
    and listed in the log. Processors: the checkpoint's tokenizer step, the new cameras/state check
    and this dataset's normalisation statistics."""
    import dataclasses

    from policies.modeling_vla import VLAPolicy
    from policies.processor_vla import VLATokenizerProcessorStep, make_vla_pre_post_processors

    old = ckpt.policy
    inputs, outputs = policy_features(meta)
    config = dataclasses.replace(old.config, input_features=inputs, output_features=outputs,
                                 camera_keys=robot.camera_keys, embodiment=robot.to_dict(),
                                 keypose_loss_weight=old.config.keypose_loss_weight if robot.eef_position_dims else 0.0)
    policy = VLAPolicy(config)
    new_state, old_state = policy.state_dict(), old.state_dict()
    same_cameras = len(config.camera_keys) == len(old.config.camera_keys)
    reinit = []
    for name, tensor in new_state.items():
        fresh = name.startswith(EMBODIMENT_PARAMS) or (name == "model.camera_embed" and not same_cameras)
        if fresh or name not in old_state or old_state[name].shape != tensor.shape:
            reinit.append(name)
        else:
            new_state[name] = old_state[name]
    policy.load_state_dict(new_state)
    groups = sorted({".".join(n.split(".")[:2]) for n in reinit})
    kept = len(new_state) - len(reinit)
    logger.warning("cross-embodiment fine-tune from %s (%s) to this dataset (%s): re-initialised %s (%d tensors); "
                   "kept %d tensors (vision tower, compressor, language backbone, projections)",
                   ckpt.path, old.config.robot().describe() if old.config.robot() else "the tabletop/LIBERO arm",
                   robot.describe(), ", ".join(groups), len(reinit), kept)
    pre, post = make_vla_pre_post_processors(config, dataset_stats=meta.stats)
    tokenizers = [st for st in ckpt.preprocessor.steps if isinstance(st, VLATokenizerProcessorStep)]
    pre.steps = [tokenizers[0] if isinstance(st, VLATokenizerProcessorStep) and tokenizers else st for st in pre.steps]
    return policy.to(device), pre, post  # config.device is already `device` (load_checkpoint)


def normalization_mismatch(ckpt_stats: dict, data_stats: dict, keys=("action", "observation.state"),
                           limit: float = STATS_MISMATCH) -> list[str]:
    """One line per feature whose dataset distribution the checkpoint's mean/std stats would
    normalise far from N(0, 1) (dimension indices, dataset vs checkpoint std and mean)."""
    lines = []
    for key in keys:
        if key not in ckpt_stats or key not in data_stats:
            continue
        c_mean, c_std = (np.asarray(ckpt_stats[key][k], dtype=float).reshape(-1) for k in ("mean", "std"))
        d_mean, d_std = (np.asarray(data_stats[key][k], dtype=float).reshape(-1) for k in ("mean", "std"))
        c_std = np.maximum(c_std, 1e-8)
        bad = np.flatnonzero((d_std / c_std > limit) | (np.abs(d_mean - c_mean) / c_std > limit))
        if bad.size:
            d_std, d_mean, c_std, c_mean = (np.round(a[bad], 3).tolist() for a in (d_std, d_mean, c_std, c_mean))
            lines.append(f"'{key}' dims {bad.tolist()}: dataset std {d_std} mean {d_mean}, "
                         f"checkpoint std {c_std} mean {c_mean}")
    return lines


def _normalizer_stats(preprocessor) -> dict:
    """The normalisation stats a (checkpoint's) preprocessor applies; {} when it has none."""
    for step in getattr(preprocessor, "steps", []):
        stats = getattr(step, "stats", None)
        if stats:
            return {k: {n: v.detach().cpu().numpy() if torch.is_tensor(v) else v for n, v in d.items()}
                    for k, d in stats.items()}
    return {}


def _processors_with_stats(path: Path, config, stats: dict, device: str):
    """The checkpoint's processors (same tokenizer) with ``stats`` for (un)normalisation."""
    from lerobot.policies.factory import make_pre_post_processors
    from policies.checkpoint_files import check_processor_files
    from policies.processor_vla import floor_std

    check_processor_files(path)  # load_checkpoint checked it already; this loader must not trust it either

    # Floored like a new policy's stats (make_vla_pre_post_processors): a dimension that never
    # moves in the new dataset must not get std 0 (found by the stats check at load).
    stats = floor_std(stats)
    feats = {**config.input_features, **config.output_features}
    norm = config.normalization_mapping
    pre_over = {
        "device_processor": {"device": device},
        "normalizer_processor": {"stats": stats, "features": feats, "norm_map": norm},
    }
    post_over = {"unnormalizer_processor": {"stats": stats, "features": config.output_features, "norm_map": norm}}
    return make_pre_post_processors(
        config, pretrained_path=str(path), preprocessor_overrides=pre_over, postprocessor_overrides=post_over
    )


def apply_freeze(policy: torch.nn.Module, freeze: str) -> dict[str, int]:
    """Turn off gradients for the parameter groups ``freeze`` names; returns parameter counts."""
    prefixes = FREEZE[freeze]
    names = [n for n, _ in policy.named_parameters()]
    for prefix in prefixes:
        if not any(n.startswith(prefix) for n in names):
            raise TrainConfigError(f"freeze={freeze}: the policy has no parameters under '{prefix}'")
    frozen = trainable = 0
    for name, p in policy.named_parameters():
        if prefixes and name.startswith(prefixes):
            p.requires_grad_(False)
            frozen += p.numel()
        else:
            trainable += p.numel()
    if trainable == 0:
        raise TrainConfigError(f"freeze={freeze} leaves no trainable parameter")
    return {"frozen": frozen, "trainable": trainable}


def make_optimizer(policy, s: TrainSettings) -> torch.optim.AdamW:
    """AdamW over ``get_optim_params()``; no weight decay on biases, norms and 1-D parameters."""
    params = policy.get_optim_params()
    if isinstance(params, dict):  # lerobot allows named groups; we only need the tensors
        params = list(params.values())
    flat: list[torch.nn.Parameter] = []
    for group in params:
        flat.extend(group["params"] if isinstance(group, dict) else [group])
    params = [p for p in flat if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": s.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    # The fused kernel: measured 3x less CPU time per step than the default on the `cpu` model.
    fused = all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params)
    return torch.optim.AdamW(groups, lr=s.lr, betas=s.betas, eps=1e-8, fused=fused or None)


class WarmupCosine:
    """lr factor: linear warmup over ``warmup`` steps, then cosine from 1 to ``min_ratio`` at ``total``."""

    def __init__(self, warmup: int, total: int, min_ratio: float):
        self.warmup, self.total, self.min_ratio = warmup, total, min_ratio

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / (self.warmup + 1)
        span = max(1, self.total - self.warmup)
        progress = min(1.0, (step - self.warmup) / span)
        return self.min_ratio + (1 - self.min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def _schedule(s: TrainSettings) -> WarmupCosine:
    ratio = min(1.0, s.min_lr / s.lr) if s.lr > 0 else 0.0
    return WarmupCosine(s.warmup_steps, s.steps, ratio)


def make_scheduler(optimizer, s: TrainSettings) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(optimizer, _schedule(s))


def reset_schedule(scheduler: torch.optim.lr_scheduler.LambdaLR, s: TrainSettings) -> None:
    """After loading a saved scheduler (which restores the old schedule's fields): follow the current
    config, so resuming with a larger ``train.steps`` stretches the cosine instead of staying at the floor."""
    scheduler.lr_lambdas = [_schedule(s) for _ in scheduler.lr_lambdas]
