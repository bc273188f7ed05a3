"""`vla prune`: EfficientVLA layer pruning of a checkpoint, calibrated on a dataset.

    vla prune checkpoint=<dir> calib=<dataset root> keep_layers=3
    vla prune checkpoint=<dir> calib=<dataset root> keep_ratio=0.67 calib_batches=16 out=<dir>

1. Load the checkpoint (policy + its saved processors).
2. Calibration: ``calib_batches`` batches of ``calib_batch_size`` frames drawn (seeded, without
   replacement) from the LeRobot dataset at ``calib``, passed through the checkpoint's own
   preprocessor exactly as in training (cameras, state, instruction).
3. I(l) = 1 - mean cos(x_l, x_{l+1}) of every decoder layer from the real hidden states of those
   policy calls (policies/layer_pruning.py); the least important layers are removed.
4. Save the pruned checkpoint (config ``backbone.num_layers`` = layers kept,
   ``backbone.removed_layers`` = removed original indices, new fingerprint) to ``out`` (default
   ``<run dir>/checkpoint``), plus ``layer_importance.json`` and ``layer_importance.png`` in the run
   dir and in the checkpoint folder. Prints the table and a reproduce command.

``synthetic_batches`` (vla/batches.py: random images + fixed instructions) stands in for a dataset only where no
data exists (``accel=fast`` on an uncalibrated model, profiling with random weights): the ranking
it gives is a rough proxy, so ``vla prune`` with real data is the recommended path.
"""

from __future__ import annotations

import json
import logging
import shlex
import time
from pathlib import Path
from typing import Any

import torch

from policies.layer_pruning import prune_policy
from vla.batches import SYNTHETIC_INSTRUCTIONS, dataset_batches, synthetic_batches  # noqa: F401  (re-exported)

logger = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------------
def plot_importance(report: dict[str, Any], path: str | Path, title: str = "") -> Path:
    """Bar chart of I(l) per (original) layer index; removed layers in red."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layers, importance, removed = report["layers"], report["importance"], set(report["removed"])
    fig, ax = plt.subplots(figsize=(max(4.0, 0.45 * len(layers) + 2), 3.2))
    colors = ["tab:red" if i in removed else "tab:blue" for i in layers]
    ax.bar([str(i) for i in layers], importance, color=colors)
    ax.set_xlabel("decoder layer (original index)")
    ax.set_ylabel("I(l) = 1 - mean cos(x_l, x_l+1)")
    ax.set_title(title or f"layer importance: removed {sorted(removed)} (red)", fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def format_table(report: dict[str, Any]) -> str:
    lines = ["layer  I(l)      mean cos  removed", "-----  --------  --------  -------"]
    for i, imp, cos in zip(report["layers"], report["importance"], report["mean_cos"]):
        lines.append(f"{i:<5}  {imp:8.5f}  {cos:8.5f}  {'yes' if i in report['removed'] else ''}")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# The command
# --------------------------------------------------------------------------------------------------
def prune_checkpoint(checkpoint: str | Path, out: str | Path, calib: str | Path | None, keep_layers: int | None = None,
                     keep_ratio: float | None = None, calib_batches: int = 8, calib_batch_size: int = 8,
                     seed: int = 0, device: str = "cpu") -> dict[str, Any]:
    """Load, calibrate, prune and save; returns the report (also written as JSON/PNG next to ``out``)."""
    from vla.checkpoint import load_checkpoint, save_checkpoint

    loaded = load_checkpoint(checkpoint, device=device)
    policy, pre = loaded.policy, loaded.preprocessor
    fingerprint_before = policy.config.fingerprint()
    started = time.perf_counter()
    if calib:
        batches = dataset_batches(calib, pre, policy.config.camera_keys, calib_batches, calib_batch_size, seed)
    else:
        logger.warning("no calib dataset: layer importance from synthetic observations (a rough proxy)")
        batches = synthetic_batches(policy, pre, calib_batches, seed)
    report = prune_policy(policy, batches, keep_layers=keep_layers, keep_ratio=keep_ratio)
    out = Path(out)
    save_checkpoint(out, policy, pre, loaded.postprocessor)
    report.update(
        checkpoint=str(Path(checkpoint).absolute()),
        out=str(out.absolute()),
        calib=str(calib) if calib else "synthetic",
        seconds=round(time.perf_counter() - started, 2),
        fingerprint_before=fingerprint_before,
        fingerprint_after=policy.config.fingerprint(),
    )
    return report


def run(cfg, run_dir: str | Path, overrides: list[str]) -> dict[str, Any]:
    """Prune as ``cfg`` says (the `vla prune` config); reports go to ``run_dir``."""
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
    run_dir = Path(run_dir)
    out = Path(cfg.out) if cfg.get("out") else run_dir / "checkpoint"
    report = prune_checkpoint(
        cfg.checkpoint, out, cfg.get("calib"), keep_layers=cfg.get("keep_layers"), keep_ratio=cfg.get("keep_ratio"),
        calib_batches=int(cfg.calib_batches), calib_batch_size=int(cfg.calib_batch_size), seed=int(cfg.seed),
        device=str(cfg.device),
    )
    own = {"checkpoint", "out", "calib"}
    args = [f"checkpoint={report['checkpoint']}", f"out={report['out']}"]
    args += [f"calib={Path(cfg.calib).absolute()}"] if cfg.get("calib") else ["calib=null"]
    args += [o for o in overrides if o.split("=", 1)[0] not in own]
    report["reproduce"] = "vla prune " + " ".join(shlex.quote(a) for a in args)
    title = (f"layer importance over {report['samples']} calibration samples ({report['calib']}): "
             f"{report['num_layers_before']} -> {report['num_layers_after']} layers, removed {report['removed']}")
    run_dir.mkdir(parents=True, exist_ok=True)
    for folder in (run_dir, out):
        (folder / "layer_importance.json").write_text(json.dumps(report, indent=2) + "\n")
        plot_importance(report, folder / "layer_importance.png", title)
    print(title)
    print(format_table(report))
    print(f"\npruned checkpoint: {out}  (fingerprint {report['fingerprint_before']} -> {report['fingerprint_after']})")
    print(f"importance:        {run_dir / 'layer_importance.json'}, {run_dir / 'layer_importance.png'}")
    print(f"reproduce:         {report['reproduce']}")
    return report


def main(cfg) -> dict[str, Any]:
    """Hydra entry point (`vla prune ...`)."""
    from hydra.core.hydra_config import HydraConfig

    hc = HydraConfig.get()
    return run(cfg, hc.runtime.output_dir, list(hc.overrides.task))
