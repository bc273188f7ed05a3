"""`vla profile`: FLOPs and per-stage latency of one policy call, per compressor method.

    vla profile model=cpu                      every registered compressor, one row each
    vla profile model=cpu compressor=fastv     one method (its preset from configs/compressor/)
    vla profile model=tiny repeats=5 methods=[none,pool]
    vla profile model=cpu accel=fast threads=1 'runtimes=[torch,onnx]'   eager torch vs onnxruntime, side by side

What is measured and how: vla/cost.py (the library). Results are written as JSON + Markdown under
the Hydra run dir, with the command that reproduces them.
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Any

import torch

from vla.batches import make_batch
from vla.cost import compare_runtimes, format_runtime_table, format_table, profile_policies

# --------------------------------------------------------------------------------------------------
# CLI (Hydra)
# --------------------------------------------------------------------------------------------------
def _compressor_presets(cfg) -> dict[str, dict]:
    """{method: compressor preset}: the chosen one, or every registered method (its YAML or defaults)."""
    import yaml

    import compressors

    if cfg.get("compressor"):
        from omegaconf import OmegaConf

        comp = OmegaConf.to_container(cfg.compressor, resolve=True)
        return {comp["name"]: comp}
    names = list(cfg.methods) if cfg.get("methods") else compressors.available()
    preset_dir = Path(__file__).resolve().parent.parent / "configs" / "compressor"
    presets = {}
    for name in names:
        file = preset_dir / f"{name}.yaml"
        presets[name] = yaml.safe_load(file.read_text()) if file.is_file() else {"name": name}
        if name not in compressors.available():
            compressors.build(name, dim=8)  # raises the registry's "did you mean" error
    return presets


def _reproduce_command() -> str:
    try:
        from hydra.core.hydra_config import HydraConfig

        overrides = [o for o in HydraConfig.get().overrides.task]
    except Exception:  # noqa: BLE001 - outside a Hydra run
        overrides = sys.argv[1:]
    return "HF_HUB_OFFLINE=1 vla profile " + " ".join(shlex.quote(o) for o in overrides)  # pasteable


def _run_dir() -> Path:
    try:
        from hydra.core.hydra_config import HydraConfig

        return Path(HydraConfig.get().runtime.output_dir)
    except Exception:  # noqa: BLE001
        return Path("outputs/profile")


def main(cfg) -> dict[str, dict[str, Any]]:
    from vla.checkpoint import build_policy

    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
    from vla.accel import accel_spec, build_accelerated, speedup_line

    accel = accel_spec(cfg.get("accel"))
    policies, batches = {}, {}
    if accel is not None:  # `accel=<preset>`: that preset against `none`, same model and seed
        torch.manual_seed(cfg.seed)
        base, pre, _ = build_policy(cfg.model, {"name": "none"}, device=cfg.device)
        fast, fast_pre, _, _ = build_accelerated(cfg.model, accel, device=cfg.device, seed=cfg.seed)
        for name, (policy, pp) in {"none": (base, pre), f"accel={accel.name}": (fast, fast_pre)}.items():
            policies[name] = policy
            batches[name] = make_batch(policy, pp, instruction=cfg.instruction, seed=cfg.seed)
    for name, preset in ({} if accel is not None else _compressor_presets(cfg)).items():
        torch.manual_seed(cfg.seed)
        policy, pre, _ = build_policy(cfg.model, preset, device=cfg.device)
        policies[name] = policy
        batches[name] = make_batch(policy, pre, instruction=cfg.instruction, seed=cfg.seed)
    rows = profile_policies(policies, batches, repeats=cfg.repeats, warmup=cfg.warmup)
    runtimes = [str(r) for r in (cfg.get("runtimes") or ["torch"])]
    compared = (compare_runtimes(policies, batches, runtimes, repeats=cfg.repeats, warmup=cfg.warmup)
                if runtimes != ["torch"] else None)

    model_name = cfg.model.get("name", "model")
    title = (
        f"vla profile: model={model_name}, batch 1, {cfg.device}, {torch.get_num_threads()} threads, "
        f"median of {cfg.repeats} interleaved calls (after {cfg.warmup} warm-up)"
    )
    command = _reproduce_command()
    print(title)
    print(format_table(rows))
    out = _run_dir()
    out.mkdir(parents=True, exist_ok=True)
    meta = {"title": title, "command": command, "torch": torch.__version__, "threads": torch.get_num_threads()}
    extra_md = ""
    if compared is not None:
        print(f"\nruntimes, batch 1, {torch.get_num_threads()} thread(s), median of {cfg.repeats} interleaved calls:")
        print(format_runtime_table(compared))
        extra_md = f"\n\n## Runtimes\n\n{format_runtime_table(compared, markdown=True)}"
    (out / "profile.json").write_text(json.dumps({"meta": meta, "rows": rows, **({"runtimes": compared} if compared
                                                                                 else {})}, indent=2, default=str))
    (out / "profile.md").write_text(f"# {title}\n\n{format_table(rows, markdown=True)}{extra_md}\n\n"
                                    f"Reproduce: `{command}`\n")
    print(f"\nwrote {out / 'profile.json'} and {out / 'profile.md'}")
    print(f"reproduce: {command}")
    if accel is not None:
        print(speedup_line(rows["none"], rows[f"accel={accel.name}"]))
    return rows
