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
    p = build(PolicyNodeParams, {**FAKE, "control_rate_hz": 15, "action_low": [-1, -1, -1, -1, -1, -1, -1],
                                 "action_high": [1] * 7})
    assert p.control_rate_hz == 15.0 and isinstance(p.control_rate_hz, float)
    assert p.period == pytest.approx(1 / 15)


@pytest.mark.parametrize(
    "override, message",
    [
        ({"control_rate_hz": -5.0}, "invalid parameter 'control_rate_hz' = -5.0: in (0, 1000]"),
        ({"control_rate_hz": "fast"}, "invalid parameter 'control_rate_hz' = 'fast': expected a number"),
        ({"replan_remaining": 1.5}, "'replan_remaining' = 1.5: expected an integer"),
        ({"align_chunks": "yes"}, "expected true or false"),
        ({"action_low": [-1.0, -1.0], "action_high": [1.0] * 3}, "'action_high' = [1.0, 1.0, 1.0]: 2 values"),
        ({"action_low": [-1.0, -1.0]}, "'action_low' = [-1.0, -1.0]: given together with action_high"),
        ({"action_low": [1.0] * 7, "action_high": [0.5] * 7}, "each < action_high"),
        ({"max_delta_per_period": [0.0] * 7}, "all > 0"),
        ({"camera_names": ["a", "b"], "camera_topics": ["/a"]}, "one topic per camera ['a', 'b']"),
        ({"camera_names": ["a", "a"]}, "unique, non-empty names"),
        ({"joint_units": "turns"}, "'joint_units' = 'turns': radians or degrees"),
        ({"state_source": "tf"}, "'ee_pose' or 'joint_state'"),
        ({"action_mode": "servo"}, "'auto' or 'delta_eef' or 'joint'"),
        ({"stale_periods": 0.5}, "'stale_periods' = 0.5: >= 1"),
        ({"policy": "nomodule"}, "'checkpoint', 'remote' or 'package.module:factory'"),
        ({"min_image_side": 0}, "'min_image_side' = 0: >= 1"),
        ({"workspace_low": [5.0, 5.0, 5.0]}, "each < workspace_high"),
        ({"workspace_high": [1.0, 1.0]}, "'workspace_high' = [1.0, 1.0]: 3 finite numbers"),
        ({"min_episode_start_interval_s": -1.0}, "'min_episode_start_interval_s' = -1.0: >= 0 (seconds)"),
        ({"camera_stale_periods": 0.5}, "'camera_stale_periods' = 0.5: >= 1"),
        ({"chunk_execution": "smooth"}, "'chunk_execution' = 'smooth': async or sync or rtc"),
        ({"rtc_delay_ticks": -2}, "'rtc_delay_ticks' = -2: >= 0, or -1 (estimated)"),
        ({"policy": "remote"}, "'server_url' = '': ws://host:port of a policy server"),
        ({"policy": "remote", "server_url": "ws://x:1", "remote_timeout_s": 0.0}, "'remote_timeout_s' = 0.0: > 0"),
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


# ------------------------------------------------------------------ the checkpoint's robot -> topics
def so100(**overrides):
    """An SO-100 as lerobot records it (the embodiment tests/e2e/test_any_robot.py's checkpoint has)."""
    from policies.embodiment import Camera, Embodiment

    names = tuple(f"{j}.pos" for j in ("shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper"))
    fields = dict(cameras=(Camera("front", 480, 640), Camera("wrist", 480, 640)), state_dim=6, action_dim=6,
                  action_kind="joint_position", action_low=(-90.0, -45, -10, -20, -180, 0),
                  action_high=(90.0, 10, 70, 60, 180, 45), state_names=names, action_names=names, gripper_dims=(5,))
    return Embodiment(**{**fields, **overrides})


def resolved(robot, **params):
    from ros_nodes.params import resolve

    return resolve(build(PolicyNodeParams, {**FAKE, **params}), robot)


def test_the_tabletop_checkpoint_keeps_todays_topics_and_limits():
    from sim.spaces import embodiment

    p = resolved(embodiment(128))
    assert p.camera_names == ["agentview", "wrist"]
    assert p.camera_topics == ["/vla/camera/agentview/image_raw", "/vla/camera/wrist/image_raw"]
    assert (p.state_source, p.action_mode, p.gripper_joint_names) == ("ee_pose", "delta_eef", ["finger_left", "finger_right"])
    assert p.action_low == [-1.0] * 7 and p.action_high == [1.0] * 7
    assert p.max_delta_per_period == [0.5] * 6 + [2.0] and p.overlay_camera == "agentview"


def test_an_so100_checkpoint_in_degrees_commands_joint_trajectories_in_radians():
    import math

    p = resolved(so100(), joint_units="degrees", control_rate_hz=30.0)
    assert p.camera_topics == ["/vla/camera/front/image_raw", "/vla/camera/wrist/image_raw"]
    joints = ["shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper"]
    assert (p.state_source, p.action_mode) == ("joint_state", "joint")
    assert p.state_joint_names == joints and p.joint_names == joints and p.action_dim == 6
    assert p.action_low[0] == pytest.approx(-math.pi / 2) and p.action_high[4] == pytest.approx(math.pi)
    # Default velocity limit: each joint's whole range per second, i.e. range / 30 per period.
    assert p.max_delta_per_period[0] == pytest.approx(math.pi / 30)
    assert p.joint_velocity_limits[0] == pytest.approx(math.pi)
    p = resolved(so100(), joint_units="degrees", joint_velocity_limits=[1.5] * 6, state_joint_names=[f"j{i}" for i in range(6)],
                 camera_topics=["/front/image", "/wrist/image"])
    assert p.max_delta_per_period == pytest.approx([0.05] * 6) and p.state_joint_names[0] == "j0"
    assert p.camera_topics == ["/front/image", "/wrist/image"]


@pytest.mark.parametrize("robot, params, message", [
    (so100(), {"joint_units": "degrees", "camera_names": ["top", "wrist"]},
     "invalid parameter 'camera_names' = ['top', 'wrist']: the checkpoint's cameras are ['front', 'wrist']"),
    (so100(), {}, "'joint_units' = 'radians': the checkpoint's joint limits reach 180.0"),
    (so100(), {"joint_units": "degrees", "action_mode": "delta_eef"},
     "'action_mode' = 'delta_eef': the checkpoint's actions are joint_position"),
    (so100(), {"joint_units": "degrees", "action_low": [-1.0] * 7, "action_high": [1.0] * 7}, "'action_low' = [-1.0, -1.0, "
     "-1.0, -1.0, -1.0, -1.0, -1.0]: 6 values (one per action dimension of the checkpoint"),
    (so100(), {"joint_units": "degrees", "joint_names": ["a", "b"]}, "'joint_names' = ['a', 'b']: 6 joint names"),
    (so100(action_kind="joint_delta"), {}, "set 'action_low' and 'action_high' (the joints' position limits in rad)"),
    (so100(action_kind="other"), {}, "the checkpoint's actions are other"),
    (so100(state_names=(), action_names=()), {"joint_units": "degrees"}, "(it records no state names: list them)"),
    (so100(), {"joint_units": "degrees", "overlay_camera": "top"}, "'overlay_camera' = 'top': one of ['front', 'wrist']"),
])
def test_parameters_that_contradict_the_checkpoint_are_start_up_errors(robot, params, message):
    with pytest.raises(ParamError) as e:
        resolved(robot, **params)
    assert message in str(e.value), str(e.value)


def test_a_policy_without_an_embodiment_is_refused():
    with pytest.raises(ParamError, match="has no 'embodiment'"):
        resolved(None)
