"""Run one node as its own process (`ros2 run vla <node>`): the shared main() of every node."""

from __future__ import annotations

from typing import Callable

import rclpy
from rclpy.executors import Executor, ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node

from ros_nodes.params import ParamError


def make_executor(context=None) -> Executor:
    """The executor every vla node spins on (standalone and in `vla ros bringup`).

    Single-threaded on purpose: the callbacks only store the latest message (inference, the control
    loop and the sim run on their own threads), and rclpy's MultiThreadedExecutor polls its futures
    in Python: measured on 2 cores, it used 54 % of a core vs 7 % for this one, and through the GIL it
    starved the 30 Hz control thread (overruns, late camera frames -> holds) on a loaded machine."""
    return SingleThreadedExecutor(context=context)


def run_standalone(make_node: Callable[[], Node], name: str, args: list[str] | None = None) -> None:
    """Build the node, spin it on ``make_executor()`` until shutdown; a start-up error
    (bad parameter, missing checkpoint) is one clear `[FATAL]` line and exit code 2, a failure while
    running (``node.failure()``: a worker thread died) a `[FATAL]` line and exit code 1."""
    rclpy.init(args=args)
    try:
        node = make_node()
    except Exception as e:  # noqa: BLE001 - a start-up error is one clear line, then exit
        print(f"[FATAL] {e}" if isinstance(e, ParamError) else f"[FATAL] {name}: {e}", flush=True)
        rclpy.try_shutdown()
        raise SystemExit(2) from None
    executor = make_executor()
    executor.add_node(node)
    failure = None
    try:
        while rclpy.ok() and (failure := getattr(node, "failure", lambda: None)()) is None:  # spin(), watching the node's threads
            executor.spin_once(timeout_sec=0.2)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    if failure is not None:
        print(f"[FATAL] {name}: {failure}", flush=True)
        raise SystemExit(1)
