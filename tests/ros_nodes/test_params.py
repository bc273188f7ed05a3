"""Node parameter schema: the shipped params files, coercion, and the start-up errors users see."""

import pytest

from ros_nodes.nodes import CONFIG_DIR, NODE_SPECS
from ros_nodes.params import (
    PARAMS_BY_NODE,
    ParamError,
    PolicyNodeParams,
    SimBridgeParams,
    build,
    defaults,
    parse_param_text,
    read_params_file,
)

FAKE = {"policy": "ros_nodes.testing:slow_fake_policy"}


@pytest.mark.parametrize("spec", NODE_SPECS, ids=lambda s: s.name)
def test_shipped_params_files_list_every_parameter(spec):
    values = read_params_file(CONFIG_DIR / spec.params_file, spec.name)
    cls = PARAMS_BY_NODE[spec.name]
    assert sorted(values) == sorted(defaults(cls)), "configs/ros YAML and the schema must list the same keys"
    if spec.name == "policy_node":
        values.update(FAKE)  # the shipped file needs a checkpoint (or a test double)
    build(cls, values)


def test_shipped_policy_file_asks_for_a_checkpoint():
    values = read_params_file(CONFIG_DIR / "ros/policy_node.yaml", "policy_node")
    with pytest.raises(ParamError, match="invalid parameter 'checkpoint'"):
        build(PolicyNodeParams, values)


def test_ints_are_fine_where_floats_are_expected():
    p = build(PolicyNodeParams, {**FAKE, "control_rate_hz": 15, "action_low": [-1, -1, -1, -1, -1, -1, -1]})
    assert p.control_rate_hz == 15.0 and isinstance(p.control_rate_hz, float)
    assert p.period == pytest.approx(1 / 15)


@pytest.mark.parametrize(
    "override, message",
    [
        ({"control_rate_hz": -5.0}, "invalid parameter 'control_rate_hz' = -5.0: in (0, 1000]"),
        ({"control_rate_hz": "fast"}, "invalid parameter 'control_rate_hz' = 'fast': expected a number"),
        ({"replan_remaining": 1.5}, "'replan_remaining' = 1.5: expected an integer"),
        ({"align_chunks": "yes"}, "expected true or false"),
        ({"action_low": [-1.0, -1.0]}, "'action_low' = [-1.0, -1.0]: 7 values"),
        ({"action_low": [1.0] * 7}, "each < action_high"),
        ({"max_delta_per_period": [0.0] * 7}, "all > 0"),
        ({"camera_topics": ["/a"]}, "one non-empty topic per camera"),
        ({"state_source": "tf"}, "'ee_pose' or 'joint_state'"),
        ({"action_mode": "joint"}, "'joint_names'"),
        ({"stale_periods": 0.5}, "'stale_periods' = 0.5: >= 1"),
        ({"policy": "nomodule"}, "'checkpoint' or 'package.module:factory'"),
        ({"min_image_side": 0}, "'min_image_side' = 0: >= 1"),
        ({"workspace_low": [5.0, 5.0, 5.0]}, "each < workspace_high"),
        ({"workspace_high": [1.0, 1.0]}, "'workspace_high' = [1.0, 1.0]: 3 finite numbers"),
        ({"min_episode_start_interval_s": -1.0}, "'min_episode_start_interval_s' = -1.0: >= 0 (seconds)"),
        ({"camera_stale_periods": 0.5}, "'camera_stale_periods' = 0.5: >= 1"),
    ],
)
def test_bad_values_name_the_parameter(override, message):
    with pytest.raises(ParamError) as e:
        build(PolicyNodeParams, {**FAKE, **override})
    assert str(e.value).startswith("policy_node: ") and message in str(e.value)


def test_unknown_parameter_suggests_the_closest():
    with pytest.raises(ParamError, match=r"unknown parameter\(s\) 'contrl_rate_hz' \(did you mean 'control_rate_hz'\?\)"):
        build(PolicyNodeParams, {**FAKE, "contrl_rate_hz": 30.0})


def test_sim_bridge_params():
    assert build(SimBridgeParams, {}).rate_hz == 30.0
    with pytest.raises(ParamError, match="'rate_hz'"):
        build(SimBridgeParams, {"rate_hz": 0})
    with pytest.raises(ParamError, match="'env_overrides'"):
        build(SimBridgeParams, {"env_overrides": "split"})


def test_launch_argument_text():
    assert parse_param_text("policy_node", "control_rate_hz", "15") == 15
    assert parse_param_text("policy_node", "instruction", "yes") == "yes"  # strings stay strings
    assert parse_param_text("policy_node", "action_low", "[-1, 0]") == [-1, 0]
