"""Checkpoints are data, not code: a shared checkpoint folder must not run anything on load.

The attack: a processor step in policy_preprocessor.json names a ``"class"`` (or a registry name vla
does not write); lerobot's pipeline loader would import and instantiate it. Here the named module
writes a marker file when imported, so "refused" is checked by the file never appearing, at each
level a user loads a checkpoint (``load_policy``, `vla eval`, the ROS policy node, the lerobot
plugin's ``from_pretrained``) — and the opt-in is shown to really load it (the file appears).
Also: ``state_file`` traversal, config.json edited away from fingerprint.json, unusable
normalisation stats.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file, save_file

from policies.checkpoint_files import CheckpointError, UntrustedCheckpointError

REPO = Path(__file__).resolve().parents[2]
SOURCE = REPO / "checkpoints" / "push_red_left_tiny_cvla"
EVIL_MODULE = "vla_evil_step_for_tests"


@pytest.fixture
def ckpt(tmp_path) -> Path:
    return Path(shutil.copytree(SOURCE, tmp_path / "ckpt"))


@pytest.fixture
def evil(tmp_path, monkeypatch):
    """(module dir for PYTHONPATH, marker path): importing the module writes the marker."""
    mod_dir = tmp_path / "evil_pkg"
    mod_dir.mkdir()
    marker = tmp_path / "pwned"
    (mod_dir / f"{EVIL_MODULE}.py").write_text(
        "import os, pathlib\n"
        "pathlib.Path(os.environ['VLA_TEST_MARKER']).write_text('code from the checkpoint ran')\n"
        "class EvilStep:\n"
        "    def __init__(self, **kwargs):\n"
        "        pass\n"
    )
    monkeypatch.syspath_prepend(str(mod_dir))
    monkeypatch.setenv("VLA_TEST_MARKER", str(marker))
    monkeypatch.delenv("VLA_TRUST_CHECKPOINT_CODE", raising=False)
    yield mod_dir, marker
    sys.modules.pop(EVIL_MODULE, None)


def edit_json(file: Path, edit) -> None:
    data = json.loads(file.read_text())
    edit(data)
    file.write_text(json.dumps(data, indent=2))


def add_class_step(ckpt: Path) -> None:
    edit_json(ckpt / "policy_preprocessor.json",
              lambda d: d["steps"].insert(1, {"class": f"{EVIL_MODULE}.EvilStep", "config": {}}))


def subprocess_env(evil_dir: Path, marker: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(evil_dir), str(REPO)]), "VLA_TEST_MARKER": str(marker),
            "HF_HUB_OFFLINE": "1", "MUJOCO_GL": "egl", "OMP_NUM_THREADS": "1"}


def test_load_policy_refuses_a_class_step_and_runs_nothing(ckpt, evil):
    from vla.runtime import load_policy

    _, marker = evil
    add_class_step(ckpt)
    with pytest.raises(UntrustedCheckpointError) as err:
        load_policy(ckpt)
    msg = str(err.value)
    assert "policy_preprocessor.json' step 1" in msg and f"{EVIL_MODULE}.EvilStep" in msg
    assert "trust_checkpoint_code=true" in msg
    assert not marker.exists()


def test_the_opt_in_really_loads_the_code(ckpt, evil):
    """Positive control: the marker is what an executed step would leave behind."""
    from vla.runtime import load_policy

    _, marker = evil
    add_class_step(ckpt)
    with pytest.raises(Exception):  # EvilStep is no processor step, so the pipeline fails after importing it
        load_policy(ckpt, trust_checkpoint_code=True)
    assert marker.read_text() == "code from the checkpoint ran"


def test_unknown_registry_name_and_postprocessor_are_refused(ckpt, evil):
    from vla.checkpoint import load_checkpoint

    edit_json(ckpt / "policy_postprocessor.json",
              lambda d: d["steps"].append({"registry_name": "tokenizer_processor", "config": {}}))
    with pytest.raises(UntrustedCheckpointError, match=r"policy_postprocessor.json' step \d+ names registry name "
                                                       r"'tokenizer_processor'"):
        load_checkpoint(ckpt)


def test_lerobot_plugin_from_pretrained_refuses_it_too(ckpt, evil, monkeypatch):
    """`lerobot-eval --policy.path=<vla checkpoint>` loads weights through VLAPolicy.from_pretrained first."""
    from policies.modeling_vla import VLAPolicy

    _, marker = evil
    add_class_step(ckpt)
    with pytest.raises(UntrustedCheckpointError):
        VLAPolicy.from_pretrained(ckpt)
    monkeypatch.setenv("VLA_TRUST_CHECKPOINT_CODE", "1")  # the opt-in for lerobot's CLIs
    assert VLAPolicy.from_pretrained(ckpt).config.type == "vla"
    assert not marker.exists()  # from_pretrained itself never loads the pipelines


@pytest.mark.parametrize("bad", ["../outside.safetensors", "/etc/hostname", 7])
def test_state_file_must_stay_inside_the_folder(ckpt, bad):
    from vla.checkpoint import load_checkpoint

    name = "policy_preprocessor_step_5_normalizer_processor.safetensors"
    shutil.copy(ckpt / name, ckpt.parent / "outside.safetensors")

    def point_outside(d):
        for step in d["steps"]:
            if step.get("state_file") == name:
                step["state_file"] = bad
    edit_json(ckpt / "policy_preprocessor.json", point_outside)
    with pytest.raises(CheckpointError, match="state_file") as err:
        load_checkpoint(ckpt, trust_checkpoint_code=True)  # refused whatever the opt-in
    assert "outside the checkpoint folder" in str(err.value) or "must be a file name" in str(err.value)


def test_vla_eval_cli_refuses_it(ckpt, evil, tmp_path):
    evil_dir, marker = evil
    add_class_step(ckpt)
    proc = subprocess.run([sys.executable, "-m", "vla.cli", "eval", f"checkpoint={ckpt}", "episodes=1",
                           "tasks=[push_red_left]", "video=false", f"hydra.run.dir={tmp_path / 'run'}"],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path,
                          env=subprocess_env(evil_dir, marker))
    assert proc.returncode != 0
    assert "not one of the processor steps vla writes" in proc.stdout + proc.stderr
    assert not marker.exists()


def test_ros_policy_node_refuses_it(ckpt, evil, tmp_path):
    from ros_nodes.nodes import CONFIG_DIR
    from ros_nodes.testing import isolated_domain_id

    evil_dir, marker = evil
    add_class_step(ckpt)
    env = {**subprocess_env(evil_dir, marker), "ROS_DOMAIN_ID": str(isolated_domain_id()),
           "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
    cmd = [sys.executable, "-m", "ros_nodes.policy_node", "--ros-args", "--params-file",
           str(CONFIG_DIR / "ros" / "policy_node.yaml"), "-p", "policy:=checkpoint", "-p", f"checkpoint:={ckpt}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env)
    assert proc.returncode != 0
    assert "not one of the processor steps vla writes" in proc.stdout + proc.stderr
    assert not marker.exists()


@pytest.mark.parametrize("field,value", [("hidden_size", 48), ("num_layers", 4)])
def test_edited_architecture_names_the_field_before_torch_sees_it(ckpt, field, value):
    from vla.runtime import load_policy

    edit_json(ckpt / "config.json", lambda d: d["backbone"].__setitem__(field, value))
    with pytest.raises(CheckpointError, match=rf"backbone\.{field}: fingerprint \d+ != config {value}"):
        load_policy(ckpt)


def test_edited_action_dim_names_the_field(ckpt):
    from vla.runtime import load_policy

    edit_json(ckpt / "config.json", lambda d: d["output_features"]["action"].__setitem__("shape", [6]))
    with pytest.raises(CheckpointError, match=r"action_dim: fingerprint 7 != config 6"):
        load_policy(ckpt)


@pytest.mark.parametrize("key,value,problem", [
    ("action.std", 0.0, r"outside \[1e-06, 100000\]"),
    ("action.std", 1e6, r"outside \[1e-06, 100000\]"),
    ("observation.state.mean", float("nan"), "non-finite"),
])
def test_unusable_normalisation_stats_are_refused(ckpt, key, value, problem):
    from vla.runtime import load_policy

    name = ("policy_postprocessor_step_0_unnormalizer_processor.safetensors" if key.startswith("action")
            else "policy_preprocessor_step_5_normalizer_processor.safetensors")
    tensors = load_file(str(ckpt / name))
    assert key in tensors, sorted(tensors)
    tensors[key] = tensors[key].clone()
    tensors[key][2] = value
    save_file(tensors, str(ckpt / name))
    with pytest.raises(CheckpointError, match=rf"{name}.*'{key}' is {problem} at dims \[2\]"):
        load_policy(ckpt)


def test_the_committed_checkpoints_pass_every_check():
    from policies.checkpoint_files import check_normalizer_stats, check_processor_files

    for folder in sorted((REPO / "checkpoints").iterdir()):
        if folder.is_dir():
            states = check_processor_files(folder)
            assert states, folder
            check_normalizer_stats(states)
