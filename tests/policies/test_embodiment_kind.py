"""Embodiment.differences: an action kind that was not recorded ("other", e.g. a lerobot ACT
checkpoint, which stores only shapes) does not make a policy incompatible with an env of the same
shapes; two recorded kinds that differ still do."""

from policies.embodiment import Camera, Embodiment

TOP = (Camera("top", 120, 160),)


def test_an_unrecorded_action_kind_matches_any_kind_of_the_same_shapes():
    act = Embodiment(TOP, 14, 14)  # what vla.runtime derives from a lerobot ACT config
    aloha = Embodiment(TOP, 14, 14, "joint_position")
    assert act.differences(aloha) == [] and aloha.differences(act) == []


def test_recorded_action_kinds_that_differ_are_still_named():
    diffs = Embodiment(TOP, 14, 14, "joint_position").differences(Embodiment(TOP, 14, 14, "delta_eef"))
    assert diffs == ["action_kind: 'joint_position' != 'delta_eef'"]
    assert Embodiment(TOP, 14, 14).differences(Embodiment(TOP, 14, 7, "joint_position")) == ["action_dim: 14 != 7"]
