"""`vla export`: a checkpoint as an ONNX graph run by onnxruntime, verified against eager torch.

    vla export checkpoint=checkpoints/push_red_left_tiny_cvla format=onnx        -> outputs/export/<time>/onnx/
    vla export checkpoint=<dir> format=onnx out=<dir> [opset=17] [accel=fast]

What is in the graph, what stays in Python, the checks and the folder format: vla/onnx_export.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vla.onnx_export import FORMAT, ONNX_FILE, VERIFY_INSTRUCTIONS, ExportError, export_checkpoint


def main(cfg) -> dict[str, Any]:
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    fmt = str(cfg.get("format") or "")
    if fmt != FORMAT:
        raise SystemExit(f"vla export: format={fmt or '???'} is not supported; the only format is format=onnx")
    if cfg.get("threads"):
        import torch

        torch.set_num_threads(int(cfg.threads))
    out = Path(cfg.out) if cfg.get("out") else Path(HydraConfig.get().runtime.output_dir) / "onnx"
    accel = cfg.get("accel")
    accel = OmegaConf.to_container(accel, resolve=True) if OmegaConf.is_config(accel) else accel
    instructions = tuple(cfg.get("instructions") or VERIFY_INSTRUCTIONS)
    try:
        manifest = export_checkpoint(cfg.checkpoint, out, opset=int(cfg.opset), accel=accel,
                                     tolerance=float(cfg.tolerance), instructions=instructions, seed=int(cfg.seed),
                                     overwrite=bool(cfg.get("overwrite", False)))
    except (ExportError, FileNotFoundError, ValueError) as e:
        raise SystemExit(f"vla export: error: {e}") from None
    v = manifest["verification"]
    print(f"exported {manifest['source_checkpoint']} -> {out}")
    print(f"  {ONNX_FILE}: opset {manifest['opset']}, accel={manifest['accel']}, {manifest['visual_tokens']} visual "
          f"tokens, {manifest['head']['num_flow_steps']} flow steps, sha256 {manifest['onnx_sha256'][:16]}")
    print(f"  onnxruntime vs eager torch: max |diff| {v['max_abs_diff']:.2e} over {len(v['cases'])} observations "
          f"(tolerance {v['tolerance']:g})")
    print(f"  load it: vla.runtime.load_policy('{out}')  |  vla eval checkpoint={out} ...")
    return manifest
