"""The safety filter alone: limits, rate limits, holds, and once-per-condition logging."""

import numpy as np
import pytest

from ros_nodes.health import LogLimiter
from ros_nodes.safety_filter import BAD_ACTION, NO_ACTION, SafetyFilter

LOW, HIGH = [-1.0] * 7, [1.0] * 7
STEP = [0.5] * 6 + [2.0]


def make(**kw):
    logs = {"warn": [], "info": []}
    f = SafetyFilter(LOW, HIGH, STEP, keep_dims=(6,), initial=[0.0] * 6 + [-1.0],
                     warn=logs["warn"].append, info=logs["info"].append, **kw)
    return f, logs


def test_clamps_to_limits_and_rate():
    f, _ = make()
    cmd = f.step(np.array([5.0, -5.0, 0.2, 0, 0, 0, 1.0]))
    assert not cmd.hold
    np.testing.assert_allclose(cmd.values, [0.5, -0.5, 0.2, 0, 0, 0, 1.0])  # rate-limited from 0 / -1
    cmd = f.step(np.array([5.0, -5.0, 0.2, 0, 0, 0, 1.0]))
    np.testing.assert_allclose(cmd.values, [1.0, -1.0, 0.2, 0, 0, 0, 1.0])  # then the box limits


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_action_holds(bad):
    f, logs = make()
    f.step(np.array([0.4, 0, 0, 0, 0, 0, 1.0]))
    action = np.array([0.4, 0, 0, 0, 0, 0, 1.0])
    action[2] = bad
    cmd = f.step(action)
    assert cmd.hold and BAD_ACTION in cmd.reasons
    np.testing.assert_array_equal(cmd.values, [0, 0, 0, 0, 0, 0, 1.0])  # zero delta, gripper kept
    assert len(logs["warn"]) == 1


def test_wrong_shape_and_missing_action_hold():
    f, _ = make()
    assert f.step(np.zeros(3)).reasons == (BAD_ACTION,)
    assert f.step(None).reasons == (NO_ACTION,)


def test_hold_reasons_log_once_per_episode_of_the_condition():
    f, logs = make()
    for _ in range(100):
        cmd = f.step(np.full(7, 0.1), {"camera_stale"})
        assert cmd.hold and cmd.reasons == ("camera_stale",)
    assert logs["warn"] == ["safety: holding (camera_stale)"]
    f.step(np.full(7, 0.1))
    assert logs["info"] == ["safety: 'camera_stale' cleared"]
    f.step(np.full(7, 0.1), {"camera_stale"})  # a new episode of the condition logs again
    assert len(logs["warn"]) == 2
    f.reset()
    f.step(None)  # no_action is routine: debug only, not a warning
    assert len(logs["warn"]) == 2


def test_hold_stops_at_once_and_resume_ramps_up():
    f, _ = make()
    for _ in range(3):
        f.step(np.array([1.0, 1.0, 1.0, 0, 0, 0, 1.0]))
    cmd = f.step(np.array([1.0, 1.0, 1.0, 0, 0, 0, 1.0]), {"no_instruction"})
    np.testing.assert_array_equal(cmd.values, [0, 0, 0, 0, 0, 0, 1.0])  # stop is not rate-limited
    cmd = f.step(np.array([1.0, 1.0, 1.0, 0, 0, 0, 1.0]))
    np.testing.assert_allclose(cmd.values, [0.5, 0.5, 0.5, 0, 0, 0, 1.0])


def test_joint_mode_holds_the_last_command():
    f = SafetyFilter([-3.0] * 3, [3.0] * 3, [0.1] * 3, keep_dims=range(3), warn=lambda m: None)
    f.seed([1.0, 2.0, -1.0])
    cmd = f.step(np.array([1.5, 2.0, -1.0]))
    np.testing.assert_allclose(cmd.values, [1.1, 2.0, -1.0], atol=1e-6)
    cmd = f.step(None)
    np.testing.assert_allclose(cmd.values, [1.1, 2.0, -1.0], atol=1e-6)


def test_fuzz_never_emits_non_finite_or_out_of_limit():
    rng = np.random.default_rng(0)
    f, _ = make()
    specials = np.array([np.nan, np.inf, -np.inf, 1e30, -1e30, 0.0])
    prev = f.last.copy()
    for i in range(10_000):
        action = rng.normal(0, 3, 7)
        if i % 3 == 0:
            action[rng.integers(7)] = rng.choice(specials)
        reasons = {"camera_stale"} if i % 17 == 0 else set()
        cmd = f.step(action if i % 11 else None, reasons)
        assert np.all(np.isfinite(cmd.values))
        assert np.all(cmd.values >= LOW) and np.all(cmd.values <= HIGH)
        if not cmd.hold:
            assert np.all(np.abs(cmd.values - prev) <= np.array(STEP) + 1e-6)
        prev = cmd.values.astype(np.float64)


def test_rejects_inconsistent_limits():
    with pytest.raises(ValueError, match="low < high"):
        SafetyFilter([1.0], [0.0], [1.0])
    with pytest.raises(ValueError, match="'high' has 2 values"):
        SafetyFilter([0.0], [1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="max_step"):
        SafetyFilter([0.0], [1.0], [0.0])


def test_a_command_outside_a_joints_limits_is_clipped_counted_and_logged_once():
    warnings = []
    f = SafetyFilter([-1.0, -0.5], [1.0, 0.5], [10.0, 10.0], keep_dims=(0, 1), names=["shoulder", "elbow"],
                     warn=warnings.append, limiter=LogLimiter(10.0))
    for _ in range(5):
        cmd = f.step(np.array([0.2, 3.0]))
        np.testing.assert_allclose(cmd.values, [0.2, 0.5])
    f.step(np.array([0.2, 0.5 + 1e-9]))  # at the limit up to rounding: not a clip
    assert f.clipped == {"elbow": 5}
    assert warnings == ["safety: clipped into the limits: elbow 3 -> 0.5"]
