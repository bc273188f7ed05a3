"""Run one node as its own process (`ros2 run vla <node>`): the shared main() of every node."""

from __future__ import annotations

from typing import Callable

import rclpy
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.node import Node

from ros_nodes.params import ParamError


def run_standalone(make_node: Callable[[], Node], name: str, args: list[str] | None = None) -> None:
    """Build the node, spin it on a multi-threaded executor until shutdown; a start-up error
    (bad parameter, missing checkpoint) is one clear `[FATAL]` line and exit code 2."""
    rclpy.init(args=args)
    try:
        node = make_node()
    except Exception as e:  # noqa: BLE001 - a start-up error is one clear line, then exit
        print(f"[FATAL] {e}" if isinstance(e, ParamError) else f"[FATAL] {name}: {e}", flush=True)
        rclpy.try_shutdown()
        raise SystemExit(2) from None
    executor = MultiThreadedExecutor()
    executor.add_node(node)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
