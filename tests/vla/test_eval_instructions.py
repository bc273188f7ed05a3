"""`vla eval instruction=<text>` / `instruction_file=<yaml>`: the user's own wordings, same layouts."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir

from vla.configs import CONFIG_DIR
from vla.evaluate import evaluate, make_plan
from vla.instructions import InstructionFileError, InstructionSet

HELDOUT = "configs/instructions/tabletop_heldout.yaml"


def eval_cfg(*overrides: str):
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        return compose("eval", overrides=list(overrides))


def test_instruction_file_runs_every_wording_on_the_same_episodes(tmp_path):
    cfg = eval_cfg("checkpoint=expert", "env=tabletop", "episodes=1", "tasks=[red_in_bowl]", "video=false",
                   f"instruction_file={HELDOUT}")
    report = evaluate(cfg, tmp_path)
    wordings = InstructionSet.load(HELDOUT).wordings("put the red cube in the bowl")
    row = report["tasks"][0]
    assert row["episodes"] == len(wordings) >= 3
    assert [w["instruction"] for w in row["wordings"]] == wordings
    assert all(w["episodes"] == 1 and w["success_rate"] == 1.0 for w in row["wordings"])  # the expert reads no words
    assert len({e["seed"] for e in report["episodes"]}) == 1  # one layout, replayed per wording
    assert [e["instruction"] for e in report["episodes"]] == wordings
    assert "| red_in_bowl | drop the red block into the bowl | 1.00 (1/1) |" in (tmp_path / "eval.md").read_text()


def test_one_instruction_for_every_task_and_bad_input(tmp_path):
    plan = make_plan(eval_cfg("checkpoint=expert", "env=tabletop", "episodes=2", "tasks=[red_in_bowl,push_red_left]",
                              "instruction=do the thing"), tmp_path)
    assert plan.instructions == {"red_in_bowl": ["do the thing"], "push_red_left": ["do the thing"]}
    assert len(plan.jobs) == 4 and plan.layout_and_wording("red_in_bowl", 1) == (1, "do the thing")
    with pytest.raises(InstructionFileError, match="not both"):
        make_plan(eval_cfg("checkpoint=expert", "env=tabletop", "instruction=x", f"instruction_file={HELDOUT}"), tmp_path)
    only = tmp_path / "one.yaml"
    only.write_text("tasks:\n  red_in_bowl: ['bowl, red cube']\n")
    with pytest.raises(InstructionFileError, match=r"no wording for tasks \['push_red_left'\]"):
        make_plan(eval_cfg("checkpoint=expert", "env=tabletop", "tasks=[red_in_bowl,push_red_left]",
                           f"instruction_file={only}"), tmp_path)
