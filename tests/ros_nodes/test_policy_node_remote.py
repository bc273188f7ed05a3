"""policy:=remote: the policy node with its model in a `vla serve` subprocess (the real CLI). The server
vanishes (SIGKILL) mid-run: the node holds from the tick after its failed call, logs it once, executes no
chunk action until the server is back, then reconnects (back-off) and acts again. Handlers are driven
directly at 30 Hz as in test_policy_node_inputs.py."""

import time

import numpy as np

from serve_helpers import start_server, stop_server
from test_policy_node_inputs import INSTRUCTION, feed_valid, log_lines, make_node  # noqa: F401 - fixture
from tiny_models import save_tiny_checkpoint

PERIOD = 1 / 30


def tick(node) -> bool:
    """One control tick; True if it published a chunk action (not a hold)."""
    feed_valid(node)
    node._on_control_tick()
    time.sleep(PERIOD)
    return not node._last_reasons


def ticks_until(node, predicate, limit_s: float, what: str) -> list[bool]:
    acted, end = [], time.monotonic() + limit_s
    while not predicate():
        assert time.monotonic() < end, f"{what} within {limit_s} s (node stats {node.stats})"
        acted.append(tick(node))
    return acted


def test_server_that_vanishes_is_a_logged_hold_then_a_reconnect(make_node, tmp_path, capfd):
    checkpoint = save_tiny_checkpoint(tmp_path / "ckpt")
    server, info = start_server(checkpoint, tmp_path / "serve1")
    try:
        node, published = make_node(policy="remote", server_url=f"ws://127.0.0.1:{info['port']}",
                                    remote_timeout_s=1.0, instruction=INSTRUCTION, replan_remaining=2)
        assert node.policy.url.endswith(str(info["port"]))  # the node's policy is the server's client
        ticks_until(node, lambda: node.stats["chunks"] >= 3, 60, "3 chunks from the server")
        assert tick(node) or any(tick(node) for _ in range(3)), "chunk actions flow"
        log_lines(capfd)

        server.kill()  # vanished: no close handshake
        server.wait(10)
        after = [tick(node) for _ in range(45)]  # 1.5 s with the server gone
        # the node holds within 2 control periods (the connection's loss is seen before any call fails) and
        # executes nothing more of the server's last chunk
        first_hold = after.index(False)
        assert first_hold <= 2 and not any(after[first_hold:]), after
        held = np.stack(published[-(45 - first_hold):])
        assert np.all(held[:, :6] == 0) and np.all(np.isfinite(held))  # zero twist, gripper kept
        assert node.stats["inference_failures"] >= 1  # a call failed within remote_timeout_s ...
        lines = log_lines(capfd)
        for message in ("policy server connection lost", "inference failed"):  # ... each logged once, not per tick
            assert sum(message in line for line in lines) == 1, (message, lines)

        server, _ = start_server(checkpoint, tmp_path / "serve2", port=info["port"])
        chunks = node.stats["chunks"]
        ticks_until(node, lambda: node.stats["chunks"] > chunks, 30, "a chunk after the server is back")
        assert any(tick(node) for _ in range(5)), "acting again"
        assert any("inference works again" in line for line in log_lines(capfd))
        assert node.policy.reconnects >= 1
    finally:
        stop_server(server)
