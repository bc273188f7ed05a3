"""Instruction wordings (vla/instructions.py, configs/instructions/): augmentation vs held-out sets."""

from __future__ import annotations

import pytest
import torch

from sim.tabletop.tasks import TASKS
from vla.instructions import InstructionFileError, InstructionSet, Paraphraser, normalise

AUGMENT = "configs/instructions/tabletop_augment.yaml"
HELDOUT = "configs/instructions/tabletop_heldout.yaml"
INSTRUCTIONS = [t.instruction for t in TASKS.values()]


def test_every_tabletop_task_has_heldout_and_augment_wordings():
    held, aug = InstructionSet.load(HELDOUT), InstructionSet.load(AUGMENT)
    assert {f.name for f in held.families} == {t.family for t in TASKS.values()}
    for task in TASKS.values():
        wordings = held.wordings(task.instruction, task.name)
        assert len(wordings) >= 3, task.name
        colour = task.obj.split("_")[0]
        assert all(colour in w for w in wordings)  # the object is still named
        assert len(aug.wordings(task.instruction)) >= 8
    assert held.wordings("put the red cube in the bowl")[0] == "drop the red block into the bowl"


def test_no_heldout_wording_is_in_the_augmentation_templates():
    """The held-out set measures wordings never trained on: none may appear among the augmentation ones."""
    held, aug = InstructionSet.load(HELDOUT), InstructionSet.load(AUGMENT)
    heldout = held.all_wordings(INSTRUCTIONS)
    trained = aug.all_wordings(INSTRUCTIONS) | {normalise(t) for t in INSTRUCTIONS}
    assert len(heldout) >= 3 * len(INSTRUCTIONS)
    assert not heldout & trained, sorted(heldout & trained)
    held_templates = {normalise(w) for f in held.families for w in f.wordings}
    aug_templates = {normalise(w) for f in aug.families for w in f.wordings}
    assert not held_templates & aug_templates


def test_wrong_object_control_names_another_task_of_the_same_family():
    from vla.instructions import eval_wordings

    wrong = eval_wordings(None, "configs/instructions/tabletop_wrong_object.yaml", "tabletop", list(TASKS))
    by_instruction = {t.instruction: t for t in TASKS.values()}
    for name, (wording,) in wrong.items():
        other = by_instruction[wording]  # the exact instruction of another tabletop task ...
        assert other.name != name and other.family == TASKS[name].family  # ... of the same family
        assert other.obj != TASKS[name].obj  # naming another object


def test_paraphraser_draws_per_sample_reproducibly_and_keeps_unknown_strings():
    aug = Paraphraser(InstructionSet.load(AUGMENT), p=0.5)
    tasks = ["put the red cube in the bowl"] * 200 + ["wipe the table"]
    out = aug(tasks, torch.Generator().manual_seed(0))
    assert out == aug(tasks, torch.Generator().manual_seed(0))
    assert out[-1] == "wipe the table"
    kept = sum(o == tasks[0] for o in out[:200])
    assert 80 < kept < 150 and len(set(out[:200])) >= 8  # p=0.5 over 11 wordings (the original among them)
    assert all("red" in o and "bowl" in o for o in out[:200])
    assert Paraphraser(InstructionSet.load(AUGMENT), p=0.0)(tasks, torch.Generator()) == tasks
    with pytest.raises(ValueError, match="must be in"):
        Paraphraser(InstructionSet.load(AUGMENT), p=2)


def test_bad_instruction_files_name_the_problem(tmp_path):
    with pytest.raises(InstructionFileError, match="not found"):
        InstructionSet.load(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("families:\n  bowl:\n    instruction: 'put the {cube} cube in the bowl'\n    wordings: ['{colour} in bowl']\n")
    with pytest.raises(InstructionFileError, match="slots"):
        InstructionSet.load(bad)
    explicit = tmp_path / "tasks.yaml"
    explicit.write_text("tasks:\n  red_in_bowl: ['bowl, red cube, now']\n")
    assert InstructionSet.load(explicit).wordings("put the red cube in the bowl", "red_in_bowl") == ["bowl, red cube, now"]


def test_train_config_key_resolves_and_checks_the_augmentation_file(tmp_path):
    from hydra import compose, initialize_config_dir

    from vla.instructions import REPO
    from vla.training.data import augment_instructions
    from vla.training.settings import TrainConfigError, settings_from

    with initialize_config_dir(str(REPO / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=["dataset=x", "train=debug"])
    assert settings_from(cfg).instructions.augment is None  # off by default
    cfg.data.instructions.augment = AUGMENT
    s = settings_from(cfg)
    assert s.instructions.augment.endswith("tabletop_augment.yaml") and s.instructions.p == 0.5
    batch = {"task": ["push the red cube to the left"] * 32}
    augment_instructions(batch, s.instructions.augment, s.instructions.p, torch.Generator().manual_seed(0))
    assert len(set(batch["task"])) > 3 and all("left" in t for t in batch["task"])
    cfg.data.instructions.augment = str(tmp_path / "nope.yaml")
    with pytest.raises(TrainConfigError, match="data.instructions.augment: instruction file .* not found"):
        settings_from(cfg)


LIBERO_SUITES = ("libero_spatial", "libero_object", "libero_goal", "libero_10")


def test_every_libero_task_has_heldout_and_augment_wordings_that_never_overlap():
    """Issue 20 item 4: LIBERO's four suites get their own paraphrase sets, apart like tabletop's."""
    from sim.libero.suites import suite_tasks
    from vla.instructions import eval_wordings

    held = InstructionSet.load("configs/instructions/libero_heldout.yaml")
    aug = InstructionSet.load("configs/instructions/libero_augment.yaml")
    instructions = []
    for suite in LIBERO_SUITES:
        tasks = suite_tasks(suite)
        by_name = eval_wordings(None, "configs/instructions/libero_heldout.yaml", suite, [t.name for t in tasks])
        for t in tasks:
            instructions.append(t.language)
            assert len(by_name[t.name]) >= 3 and len(aug.wordings(t.language)) >= 3, (suite, t.name)
    # the multi-word slots keep what tells the tasks apart: which bowl, which object
    spatial = held.wordings("pick up the black bowl on the cookie box and place it on the plate")
    assert spatial[0] == "grab the dark bowl on the cookie box and drop it onto the plate"
    assert all("on the cookie box" in w for w in spatial)
    assert all("bbq sauce" in w for w in aug.wordings("pick up the bbq sauce and place it in the basket"))
    heldout = held.all_wordings(instructions)
    trained = aug.all_wordings(instructions) | {normalise(t) for t in instructions}
    assert len(heldout) >= 3 * len(set(instructions))
    assert not heldout & trained, sorted(heldout & trained)
