"""The sim bridge's command timing, driven directly (its command callback called from the test, no
DDS traffic): the sim steps on each command when it arrives, once, in order, and the state it
publishes next shows that command. Before, the sim stepped on a 30 Hz clock of its own and took the
oldest queued command: against the policy node's own 30 Hz clock that added 0 or 1 period of delay
depending on the phase between the two clocks (fixed per bringup), so the policy node's chunk
alignment (actions served since the request) was one action off in some bringups and the trained
checkpoint failed SIL episodes that `vla eval` succeeds (issue #21 item 6)."""

import time

import numpy as np
import pytest
import rclpy
from geometry_msgs.msg import TwistStamped
from rclpy.context import Context

from ros_nodes.params import write_params_file
from ros_nodes.sim_bridge_node import SimBridgeNode
from ros_nodes.testing import isolated_domain_id

POS_SCALE = 0.02  # sim/tabletop/env.py: metres per unit action per step
PERIOD = 1.0 / 30.0


@pytest.fixture
def bridge(tmp_path):
    context = Context()
    rclpy.init(context=context, domain_id=isolated_domain_id())
    path = write_params_file(tmp_path / "sim_bridge_node.yaml", "sim_bridge_node",
                             {"task": "push_red_left", "wait_for_policy": False, "env_overrides": "image_size=32"})
    node = SimBridgeNode(cli_args=["--ros-args", "--params-file", str(path)], context=context)
    try:
        deadline = time.monotonic() + 30
        while not node.running and time.monotonic() < deadline:
            time.sleep(0.01)
        assert node.running
        yield node
    finally:
        node.destroy_node()
        context.try_shutdown()


def twist(dx: float) -> TwistStamped:
    msg = TwistStamped()
    msg.twist.linear.x = dx
    return msg


def wait_steps(node, n: int, timeout: float = 5.0) -> float:
    t0 = time.monotonic()
    while node.stats["steps"] < n and time.monotonic() - t0 < timeout:
        time.sleep(0.0005)
    assert node.stats["steps"] >= n, node.stats
    return time.monotonic() - t0


def test_each_command_steps_the_sim_when_it_arrives_and_the_next_state_shows_it(bridge):
    x0 = float(bridge.obs["agent_pos"][0])
    latencies = []
    for k in range(20):
        time.sleep(PERIOD * (0.1 + 0.8 * ((k * 7) % 10) / 10))  # all phases against the bridge's period
        steps, holds = bridge.stats["steps"], bridge.stats["hold_steps"]
        bridge._on_delta(twist(0.1))
        latencies.append(wait_steps(bridge, steps + 1))
        with bridge.lock:
            applied = bridge.stats["commands_applied"]
            x = float(bridge.obs["agent_pos"][0])
        assert applied == k + 1
        # the state after the step shows every command so far (and holds do not move the arm)
        assert x - x0 == pytest.approx((k + 1) * 0.1 * POS_SCALE, abs=2e-3), (k, bridge.stats["hold_steps"] - holds)
    # On arrival, not at the bridge's next period (which waited up to a whole period: ~half of them > PERIOD / 2).
    assert np.median(latencies) < PERIOD / 3, latencies


def test_a_burst_is_applied_in_order_once_each_and_silence_holds(bridge):
    y0 = float(bridge.obs["agent_pos"][0])
    start = bridge.stats["steps"]
    for dx in (0.5, 0.25, -0.5, 1.0, 0.0):  # e.g. the policy node catching up late ticks
        bridge._on_delta(twist(dx))
    wait_steps(bridge, start + 5)
    assert bridge.stats["commands_applied"] == 5 and bridge.stats["commands_dropped"] == 0
    with bridge.lock:
        x = float(bridge.obs["agent_pos"][0])
    assert x - y0 == pytest.approx(1.25 * POS_SCALE, abs=2e-3)
    holds = bridge.stats["hold_steps"]
    time.sleep(10 * PERIOD)  # no commands: hold steps at about one per command_timeout_periods (2) periods
    assert 2 <= bridge.stats["hold_steps"] - holds <= 6
    assert bridge.stats["commands_applied"] == 5
