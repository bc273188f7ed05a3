"""The training loop: set up a run, then step / evaluate / checkpoint until ``train.steps``.

    run = setup(settings, config_yaml, run_dir)   # accelerator, data, policy (new | init_from | resumed)
    result = fit(run)                             # the loop; each piece is a small helper below

Reproducibility contract: batch ``s`` is a pure function of (seed, s, rank) (``StepBatchSampler``)
and every random draw of step ``s`` (flow-matching noise/time, augmentation) comes from RNGs seeded
from (seed, s, rank) at the start of the step. So a run killed after checkpoint ``k`` and resumed
computes exactly the same steps ``k..N`` as an uninterrupted run: same weights, bit for bit, on the
same machine and thread count (tests/vla/test_train_resume.py).

Multi-GPU: the model and optimizer go through ``accelerate`` (DDP when launched with
``accelerate launch``; a no-op on one CPU process). Each process draws its own batch (rank-offset
positions of the same stream), so the effective batch is ``batch_size x processes``.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from lerobot.utils.random_utils import set_seed
from vla.training import build, checkpointing, data
from vla.training.settings import TrainConfigError, TrainSettings

logger = logging.getLogger(__name__)

METRICS_FILE = "metrics.jsonl"


@dataclass
class Run:
    s: TrainSettings
    acc: Any  # accelerate.Accelerator
    model: Any  # the policy as prepared by accelerate (DDP-wrapped on several GPUs)
    policy: Any  # the unwrapped policy (saving, freezing, inspection)
    pre: Any
    post: Any
    optimizer: Any
    scheduler: Any
    train_set: Any
    val_set: Any
    camera_keys: list[str]
    output_dir: Path
    start_step: int
    config_yaml: str
    dataset_root: str
    counts: dict[str, int] = field(default_factory=dict)


@dataclass
class TrainResult:
    output_dir: Path
    checkpoint: Path | None
    start_step: int
    end_step: int
    losses: list[tuple[int, float]]  # (step, mean loss of the log window)
    samples_per_s: float
    val_losses: list[tuple[int, float]] = field(default_factory=list)


# --------------------------------------------------------------------------------------------------
# Set-up
# --------------------------------------------------------------------------------------------------
def make_accelerator(s: TrainSettings):
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs

    ddp = DistributedDataParallelKwargs(find_unused_parameters=True)  # compressors may skip parameters
    acc = Accelerator(cpu=s.device == "cpu", mixed_precision="no", kwargs_handlers=[ddp],
                      step_scheduler_with_optimizer=False)
    s.device = str(acc.device) if s.device != "cpu" else "cpu"
    return acc


def shared_output_dir(acc, output_dir: str | None, run_dir: str | Path | None) -> Path:
    """The main process decides (Hydra run dirs carry a timestamp that may differ per process)."""
    from accelerate.utils import broadcast_object_list

    chosen = [str(Path(output_dir or run_dir or "outputs/train").resolve())]
    if acc.num_processes > 1:
        broadcast_object_list(chosen, from_process=0)
    path = Path(chosen[0])
    path.mkdir(parents=True, exist_ok=True)
    return path


def resume_point(s: TrainSettings, output_dir: Path) -> Path | None:
    """The checkpoint to resume from, following ``resume`` (auto | true | false)."""
    last = checkpointing.last_checkpoint(output_dir)
    if s.resume == "true" and last is None:
        raise TrainConfigError(f"resume=true but '{checkpointing.checkpoints_dir(output_dir)}' has no checkpoint")
    if s.resume == "false" and last is not None:
        raise TrainConfigError(
            f"output_dir '{output_dir}' already holds checkpoint '{last}'; resume it (resume=auto or true) "
            "or choose a new output_dir"
        )
    return last


def setup(s: TrainSettings, config_yaml: str, run_dir: str | Path | None = None) -> Run:
    acc = make_accelerator(s)
    output_dir = shared_output_dir(acc, s.output_dir, run_dir)
    if acc.is_main_process:
        checkpointing.clean_partial(output_dir)
    acc.wait_for_everyone()
    resume_from = resume_point(s, output_dir)
    source = data.resolve_dataset(s.dataset)
    meta = data.load_metadata(source)
    policy, pre, post = _policy(s, meta, resume_from)
    counts = build.apply_freeze(policy, s.freeze)
    optimizer = build.make_optimizer(policy, s)
    scheduler = build.make_scheduler(optimizer, s)
    start = 0
    if resume_from is not None:
        state = checkpointing.load_training_state(resume_from, optimizer, scheduler)
        start = int(state["step"])
        build.reset_schedule(scheduler, s)
        _warn_changed(state, s, acc.num_processes, str(source.root))
    train_eps, val_eps = data.split_episodes(meta.total_episodes, s.val_episodes)
    chunk, keypose = policy.config.chunk_size, build.keypose_channels(policy.config)
    size = policy.config.vision.image_size if s.cache_resize else None

    def dataset(episodes: list[int] | None) -> torch.utils.data.Dataset:
        return data.make_dataset(source, meta, chunk, episodes, s.cache, s.cache_max_gb, keypose, size,
                                 policy.config.image_resize)

    train_set = dataset(train_eps if val_eps else None)
    val_set = dataset(val_eps) if val_eps else None
    model, optimizer = acc.prepare(policy, optimizer)
    return Run(s, acc, model, policy, pre, post, optimizer, scheduler, train_set, val_set,
               list(policy.config.camera_keys), output_dir, start, config_yaml, str(source.root), counts)


def _policy(s: TrainSettings, meta, resume_from: Path | None):
    """Resumed (the run's own checkpoint wins over init_from), fine-tuned, or new (seeded init)."""
    if resume_from is not None:
        return build.load_policy(resume_from, s, meta, resume=True)
    if s.init_from:
        return build.load_policy(s.init_from, s, meta, resume=False)
    set_seed(s.seed)
    return build.new_policy(s, meta)


def _warn_changed(state: dict, s: TrainSettings, processes: int, root: str) -> None:
    now = {"batch_size": s.batch_size, "num_processes": processes, "seed": s.seed, "dataset": root,
           "oversample_start": _oversample_key(s)}
    changed = {k: (state.get(k), v) for k, v in now.items() if k in state and state[k] != v}
    if changed:
        logger.warning("resuming with changed settings %s: the data order differs from an uninterrupted run",
                       {k: f"{a} -> {b}" for k, (a, b) in changed.items()})


# --------------------------------------------------------------------------------------------------
# Step / eval / checkpoint
# --------------------------------------------------------------------------------------------------
def step_seed(seed: int, step: int, rank: int, stream: int = 0) -> int:
    return int(np.random.SeedSequence([seed, step, rank, stream]).generate_state(1)[0])


def prepare_batch(run: Run, batch: dict[str, Any], gen: torch.Generator | None) -> dict[str, Any]:
    """uint8 cameras -> float [0, 1], optional augmentation, then the policy's preprocessor."""
    data.to_float_images(batch, run.camera_keys)
    if gen is not None and run.s.augment.enabled:
        a = run.s.augment
        data.augment_images(batch, run.camera_keys, gen, a.shift, a.brightness, a.contrast)
    if gen is not None and run.s.instructions.augment:  # after the images: their draws stay as before
        data.augment_instructions(batch, run.s.instructions.augment, run.s.instructions.p, gen)
    # Training-only targets are not observations: lerobot's processor pipeline would drop them.
    keypose = batch.pop(data.KEYPOSE, None)
    batch = run.pre(batch)
    if keypose is not None:
        batch[data.KEYPOSE] = keypose
    return batch


def train_step(run: Run, batch: dict[str, Any], step: int) -> dict[str, float]:
    """One optimisation step; all randomness of the step is seeded from (seed, step, rank).
    Returns the loss and the policy's other scalar losses (e.g. ``keypose_loss``)."""
    rank = run.acc.process_index
    torch.manual_seed(step_seed(run.s.seed, step, rank))
    gen = torch.Generator().manual_seed(step_seed(run.s.seed, step, rank, stream=1))
    batch = prepare_batch(run, batch, gen)
    run.model.train()
    loss, logs = run.model(batch)
    run.acc.backward(loss)
    if run.s.grad_clip > 0:
        run.acc.clip_grad_norm_(run.policy.parameters(), run.s.grad_clip)
    run.optimizer.step()
    run.optimizer.zero_grad(set_to_none=True)
    run.scheduler.step()
    if run.acc.num_processes > 1:  # log the step's loss over every rank's samples, as one process would
        loss = run.acc.reduce(loss.detach(), reduction="mean")
    return {"loss": float(loss.detach()), **{k: v for k, v in logs.items() if k.endswith("_loss")}}


@torch.no_grad()
def evaluate(run: Run) -> float:
    """Mean flow/L1 loss on the held-out episodes: fixed batches and fixed noise, so comparable over time."""
    sampler = data.StepBatchSampler(len(run.val_set), run.s.batch_size, run.s.seed + 1, 0, run.s.eval_batches)
    loader = data.make_loader(run.val_set, sampler, _workers(run))
    run.model.eval()
    losses = []
    for i, batch in enumerate(loader):
        torch.manual_seed(step_seed(run.s.seed, i, run.acc.process_index, stream=2))
        loss, _ = run.model(prepare_batch(run, batch, None))
        losses.append(float(loss))
    run.model.train()
    mean = torch.tensor(float(np.mean(losses)), device=run.acc.device)
    return float(run.acc.reduce(mean, reduction="mean"))


def save(run: Run, step: int) -> Path | None:
    """Checkpoint on the main process; every process waits for it."""
    path = None
    if run.acc.is_main_process:
        meta = {
            "batch_size": run.s.batch_size, "num_processes": run.acc.num_processes, "seed": run.s.seed,
            "data_position": step * run.s.batch_size * run.acc.num_processes, "dataset": run.dataset_root,
            "freeze": run.s.freeze, "oversample_start": _oversample_key(run.s),
        }
        policy = run.acc.unwrap_model(run.model)
        optimizer = getattr(run.optimizer, "optimizer", run.optimizer)  # accelerate's wrapper -> AdamW
        path = checkpointing.save(run.output_dir, step, policy, run.pre, run.post, optimizer, run.scheduler,
                                  meta, run.config_yaml, run.s.keep_last)
    run.acc.wait_for_everyone()
    return path


# --------------------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------------------
class _Meter:
    """Loss and throughput over the current log window."""

    def __init__(self, samples_per_step: int):
        self.samples_per_step = samples_per_step
        self.reset()

    def reset(self) -> None:
        self.losses: list[dict[str, float]] = []
        self.t0 = time.perf_counter()

    def add(self, losses: dict[str, float]) -> None:
        self.losses.append(losses)

    def read(self) -> tuple[dict[str, float], float]:
        """(mean of each loss over the window, samples/s)."""
        dt = max(time.perf_counter() - self.t0, 1e-9)
        means = {k: float(np.mean([row[k] for row in self.losses])) for k in self.losses[0]}
        return means, len(self.losses) * self.samples_per_step / dt


def fit(run: Run) -> TrainResult:
    s, acc = run.s, run.acc
    main = acc.is_main_process
    metrics = run.output_dir / METRICS_FILE
    if main:
        _truncate_metrics(metrics, run.start_step)
        _log_start(run)
    result = TrainResult(run.output_dir, checkpointing.last_checkpoint(run.output_dir), run.start_step,
                         run.start_step, [], 0.0)
    if run.start_step >= s.steps:
        logger.info("already trained to step %d (train.steps=%d): nothing to do", run.start_step, s.steps)
        return result
    focus, per_batch = _start_focus(run)
    sampler = data.StepBatchSampler(len(run.train_set), s.batch_size, s.seed, run.start_step, s.steps,
                                    acc.process_index, acc.num_processes, focus, per_batch)
    loader = data.make_loader(run.train_set, sampler, _workers(run), pin_memory=acc.device.type == "cuda")
    meter = _Meter(s.batch_size * acc.num_processes)
    bar = tqdm(total=s.steps, initial=run.start_step, desc="train", unit="step", disable=not main,
               dynamic_ncols=True)
    step = run.start_step
    for batch in loader:
        meter.add(train_step(run, batch, step))
        step += 1
        bar.update(1)
        if step % s.log_every == 0 or step == s.steps:
            losses, sps = meter.read()
            result.losses.append((step, losses["loss"]))
            result.samples_per_s = sps
            bar.set_postfix(**{k: f"{v:.4f}" for k, v in losses.items()}, lr=f"{run.scheduler.get_last_lr()[0]:.2e}",
                            smp_s=f"{sps:.1f}")
            _append_metrics(main, metrics, {"step": step, **losses, "lr": run.scheduler.get_last_lr()[0],
                                            "samples_per_s": sps})
            meter.reset()
        if s.eval_every and (step % s.eval_every == 0 or step == s.steps):
            val = evaluate(run)
            result.val_losses.append((step, val))
            _append_metrics(main, metrics, {"step": step, "val_loss": val})
            if main:
                bar.write(f"step {step}: val_loss={val:.4f}")
        if (s.save_every and step % s.save_every == 0) or step == s.steps:
            result.checkpoint = save(run, step) or result.checkpoint
    bar.close()
    result.end_step = step
    if main:
        logger.info("done: %d steps, last checkpoint %s", step, result.checkpoint)
    acc.end_training()
    return result


def _oversample_key(s: TrainSettings) -> list[int]:
    """[frames, rows per batch] of ``data.oversample_start`` ([0, 0] when off): what the data order depends on."""
    o = s.oversample_start
    per_batch = round(o.fraction * s.batch_size) if o.frames else 0
    return [o.frames, per_batch] if per_batch else [0, 0]


def _start_focus(run: Run) -> tuple[list[int], int]:
    """(rows, how many per batch) for ``data.oversample_start``; ([], 0) when it is off."""
    frames, per_batch = _oversample_key(run.s)
    if per_batch == 0:
        return [], 0
    rows = data.start_rows(run.train_set, frames)
    if run.acc.is_main_process:
        logger.info("oversample_start: %d of every %d samples from the first %d frames of each episode "
                    "(%d rows, %.1f %% of the data)", per_batch, run.s.batch_size, frames, len(rows),
                    100 * len(rows) / len(run.train_set))
    return rows, per_batch


def _workers(run: Run) -> int:
    """Cached frames are served from RAM in microseconds: workers would only copy the cache to each
    spawned process, so they are used for the decoding (uncached) path only."""
    frames = getattr(run.train_set, "inner", run.train_set)  # under WithKeypose
    return 0 if isinstance(frames, data.FrameCache) else run.s.num_workers


def _log_start(run: Run) -> None:
    s = run.s
    what = "resuming at step %d" % run.start_step if run.start_step else (
        f"fine-tuning from {s.init_from}" if s.init_from else "training from scratch")
    logger.info(
        "%s: %d steps x batch %d x %d process(es) on %s; dataset %s (%d train frames%s); params %s; output %s",
        what, s.steps, s.batch_size, run.acc.num_processes, s.device, run.dataset_root, len(run.train_set),
        f", {len(run.val_set)} val frames" if run.val_set is not None else "", run.counts, run.output_dir,
    )


def _append_metrics(main: bool, path: Path, row: dict[str, Any]) -> None:
    if main:
        # One complete line per write, flushed and fsynced: a crash can only tear the line being
        # written (dropped when read back), never an earlier one.
        with open(path, "a") as f:
            f.write(json.dumps(row) + "\n")
            f.flush()
            os.fsync(f.fileno())


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop rows a killed run logged after the checkpoint we resume from (and a torn last line);
    rewritten atomically (temp file + os.replace), so a kill here leaves the old file or the new."""
    if not path.is_file():
        return
    rows = [row for row in _parse_metrics(path) if row["step"] <= step]
    tmp = path.with_name(f"{path.name}.tmp")
    with open(tmp, "w") as f:
        f.write("".join(json.dumps(row) + "\n" for row in rows))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _parse_metrics(path: Path) -> list[dict[str, Any]]:
    """The rows of ``metrics.jsonl``. A torn last line (a crash mid-write) is dropped with a warning;
    a bad line before it is corruption: ``RunFolderError`` naming the file and line."""
    lines = [(n, line) for n, line in enumerate(path.read_bytes().decode("utf-8", "replace").split("\n"), 1)
             if line.strip()]
    rows = []
    for n, line in lines:
        try:
            row = json.loads(line)
            if not isinstance(row, dict) or not isinstance(row.get("step"), int):
                raise ValueError("not an object with an integer 'step'")
        except ValueError as e:
            if n == lines[-1][0]:
                logger.warning("%s line %d is incomplete (a run killed while writing it?): dropped (%s)", path, n, e)
                break
            raise checkpointing.RunFolderError(f"'{path}' line {n} is not a metrics row ({e}): {line[:80]!r}; "
                                               "fix or delete that line to resume") from None
        rows.append(row)
    return rows


def read_metrics(output_dir: str | Path) -> list[dict[str, Any]]:
    path = Path(output_dir) / METRICS_FILE
    return _parse_metrics(path) if path.is_file() else []
