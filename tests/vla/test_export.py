"""`vla export format=onnx` (vla/export.py, vla/onnx_export.py) and the exported folder as a ChunkPolicy (vla/onnx_policy.py).

One export of the committed tiny checkpoint, made by the CLI in a subprocess, is shared by the module:
onnxruntime's actions match eager torch's within 1e-4 for the same observation and noise, the
manifest names the opset and the source fingerprint, the folder passes the checkpoint checks, an
op the exporter cannot convert is named with its module, and `vla eval` runs the export like the
torch checkpoint.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import onnxruntime  # noqa: F401  (the `export` extra, part of make install: missing fails, never skips)

REPO = Path(__file__).resolve().parents[2]
CKPT = REPO / "checkpoints" / "push_red_left_tiny_cvla"
TOL = 1e-4


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    base = tmp_path_factory.mktemp("export")
    out = base / "onnx"
    proc = subprocess.run(
        [sys.executable, "-m", "vla.cli", "export", f"checkpoint={CKPT}", "format=onnx", f"out={out}",
         f"hydra.run.dir={base / 'run'}", "threads=1"],
        capture_output=True, text=True, timeout=300, cwd=REPO)
    return out, proc


@pytest.fixture(scope="module")
def policies(exported):
    from vla.runtime import load_policy

    torch.set_num_threads(1)
    return load_policy(exported[0]), load_policy(CKPT)


def _obs(robot, instruction: str, seed: int) -> dict:
    from vla.onnx_export import example_observation

    return example_observation(robot, instruction, seed)


def test_cli_writes_a_self_describing_folder(exported):
    out, proc = exported
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "onnxruntime vs eager torch: max |diff|" in proc.stdout
    names = {p.name for p in out.iterdir()}
    assert {"model.onnx", "export.json", "config.json", "fingerprint.json", "model.safetensors",
            "policy_preprocessor.json", "policy_postprocessor.json"} <= names
    assert {p.name for p in CKPT.glob("*.safetensors")} <= names  # the processors' state files too
    from policies.checkpoint_files import check_normalizer_stats, check_processor_files

    check_normalizer_stats(check_processor_files(out))  # the same checks as any checkpoint, untrusted


def test_manifest_names_opset_and_source_fingerprint(exported):
    from vla.onnx_export import sha256

    out, _ = exported
    manifest = json.loads((out / "export.json").read_text())
    source = json.loads((CKPT / "fingerprint.json").read_text())
    assert manifest["format"] == "onnx" and manifest["opset"] == 17
    assert manifest["source_fingerprint"] == source["fingerprint"]
    assert manifest["source_weights_sha256"] == source["weights_sha256"]
    assert manifest["onnx_sha256"] == sha256(out / "model.onnx")
    assert [i["name"] for i in manifest["inputs"]] == ["images", "state", "tokens", "token_mask", "noise"]
    assert manifest["verification"]["max_abs_diff"] <= TOL
    import onnx

    model = onnx.load(str(out / "model.onnx"))
    assert {o.version for o in model.opset_import if o.domain in ("", "ai.onnx")} == {17}


def test_onnx_actions_match_eager_torch(policies):
    from vla.onnx_policy import OnnxChunkPolicy
    from vla.runtime import check_actions, obs_to_batch

    onnx_policy, eager = policies
    assert isinstance(onnx_policy, OnnxChunkPolicy)
    assert onnx_policy.embodiment == eager.embodiment
    assert (onnx_policy.n_action_steps, onnx_policy.chunk_size) == (eager.n_action_steps, eager.chunk_size)
    g = torch.Generator().manual_seed(0)
    # Two instruction lengths (the graph's token axis is dynamic), explicit noise.
    for i, text in enumerate(["push the red cube to the left", "push red left of the blue block please"]):
        obs = _obs(eager.embodiment, text, seed=10 + i)
        noise = torch.randn(1, eager.chunk_size, 7, generator=g)
        with torch.inference_mode():
            batch = eager.preprocessor(obs_to_batch(obs, eager.camera_keys))
            chunk = eager.postprocessor(eager.policy.predict_action_chunk(batch, noise=noise))[0].numpy()
        ref = check_actions(chunk, eager.embodiment)
        got = onnx_policy.infer(obs, noise=noise[0].numpy())
        assert got["actions"].shape == ref.shape == (8, 7)
        assert np.abs(got["actions"] - ref).max() < TOL
        assert got["visual_tokens"] == 160 and set(got["keep_masks"]) == {"agentview", "wrist"}
        eager_masks = eager.infer(obs)["keep_masks"]
        assert all(np.abs(got["keep_masks"][k] - eager_masks[k]).max() < TOL for k in eager_masks)
    # No noise given: drawn from torch's global RNG exactly as the eager head draws it.
    obs = _obs(eager.embodiment, "push the red cube to the left", seed=3)
    torch.manual_seed(7)
    ref = eager.infer(obs)["actions"]
    torch.manual_seed(7)
    assert np.abs(onnx_policy.infer(obs)["actions"] - ref).max() < TOL


def test_load_time_options_the_graph_fixes_are_refused(exported):
    from vla.runtime import load_policy

    out, _ = exported
    with pytest.raises(ValueError, match="accel=fast.*apply the preset when exporting"):
        load_policy(out, accel="fast")
    with pytest.raises(ValueError, match=r"fixes \['head'\]"):
        load_policy(out, head={"num_flow_steps": 2})
    assert load_policy(out, n_action_steps=2).n_action_steps == 2


def test_unsupported_op_is_named(tmp_path, monkeypatch):
    """A compressor calling an op torch.onnx cannot convert (aten::median) -> an error naming the op,
    the module and the line; nothing is left at ``out``."""
    from compressors.compressor_vla import CompressorVLA
    from vla.onnx_export import UnsupportedOpError, export_checkpoint

    forward = CompressorVLA.forward

    def with_median(self, visual_tokens, grid, instruction=None):
        out = forward(self, visual_tokens, grid, instruction)
        out.tokens = out.tokens - 0.0 * out.tokens.median(dim=1, keepdim=True).values
        return out

    monkeypatch.setattr(CompressorVLA, "forward", with_median)
    out = tmp_path / "onnx"
    with pytest.raises(UnsupportedOpError, match=r"'aten::median'.*module 'model\.compressor' \(.*CompressorVLA\)") as e:
        export_checkpoint(CKPT, out)
    assert e.value.op == "aten::median" and e.value.module == "model.compressor"
    assert "tests/vla/test_export.py:" in (e.value.source or "")
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_eval_runs_the_export_like_the_torch_checkpoint(exported, tmp_path):
    from hydra import compose, initialize_config_dir

    from vla.configs import CONFIG_DIR
    from vla.evaluate import evaluate

    def run(checkpoint: Path, name: str) -> dict:
        with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
            cfg = compose("eval", overrides=[f"checkpoint={checkpoint}", "env=tabletop", "tasks=[push_red_left]",
                                             "episodes=1", "video=false", "threads=1"])
        return evaluate(cfg, tmp_path / name)

    onnx_report, torch_report = run(exported[0], "onnx"), run(CKPT, "torch")
    assert onnx_report["policy"]["type"] == "vla (onnxruntime)"
    assert onnx_report["tasks"][0]["success_rate"] == torch_report["tasks"][0]["success_rate"] == 1.0
    assert onnx_report["episodes"][0]["length"] == torch_report["episodes"][0]["length"]


def test_profile_compares_runtimes_side_by_side(tmp_path):
    """`vla profile runtimes=[torch,onnx]`: each policy in each runtime on the same batch and noise."""
    from vla.checkpoint import build_policy
    from vla.batches import make_batch
    from vla.cost import compare_runtimes, format_runtime_table

    torch.manual_seed(0)
    model = {"name": "tiny", "chunk_size": 8, "n_action_steps": 4, "max_instruction_tokens": 16,
             "vision": {"image_size": 64, "patch_size": 8, "hidden_size": 32, "num_layers": 1, "num_heads": 2,
                        "intermediate_size": 64},
             "backbone": {"type": "llama", "hidden_size": 64, "num_layers": 3, "num_heads": 2, "num_kv_heads": 1,
                          "intermediate_size": 128},
             "head": {"type": "flow", "hidden_size": 32, "num_layers": 1, "num_heads": 2, "num_flow_steps": 3}}
    policy, pre, _ = build_policy(model, {"name": "pool"})
    rows = compare_runtimes({"pool": policy}, {"pool": make_batch(policy, pre)}, ["torch", "onnx"], repeats=2,
                            warmup=1, workdir=tmp_path)
    assert set(rows) == {"pool / torch", "pool / onnx"}
    assert rows["pool / onnx"]["max_abs_diff"] < TOL and rows["pool / onnx"]["vs_torch"] > 0
    assert rows["pool / torch"]["vs_torch"] == 1.0
    assert "onnx" in format_runtime_table(rows) and format_runtime_table(rows, markdown=True).startswith("| policy")
