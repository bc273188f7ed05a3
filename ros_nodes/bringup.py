"""In-process runner: the nodes of ``NODE_SPECS`` in one process, like a component container.

`vla ros bringup` (configs/ros/bringup.yaml) and the tests use it; `ros2 launch vla
bringup.launch.py` starts the same nodes as separate processes. Both hand each node a ROS 2 params
file through ``--ros-args --params-file``, so parameters take the same parsing path. Here the file
is the composed Hydra config of that node, validated first and written to the run directory.

DDS discovery defaults to this machine (``discovery_range``, ros_nodes.nodes.discovery_range): other
hosts reach the nodes only when asked for (docs/security.md). A node that fails while running (a
worker thread died: ``node.failure()``) ends the run with exit code 1 and the reason on stderr.

    with Bringup({"policy_node": {...}, "sim_bridge_node": {...}}, sim=True, run_dir=tmp) as b:
        b.nodes["sim_bridge_node"].results   # finished episodes
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from ros_nodes.health import WorkerThread
from ros_nodes.nodes import CONFIG_DIR, NODE_SPECS, apply_discovery_range
from ros_nodes.params import PARAMS_BY_NODE, ParamError, build, read_params_file, write_params_file


def default_params() -> dict[str, dict[str, Any]]:
    """Each node's values from its shipped params file (configs/ros/<node>.yaml)."""
    return {s.name: read_params_file(CONFIG_DIR / s.params_file, s.name) for s in NODE_SPECS}


class Bringup:
    """Start the enabled nodes on one executor (``make_executor``) spinning in a background thread."""

    def __init__(self, params: dict[str, dict[str, Any]], run_dir: str | Path, sim: bool = True,
                 domain_id: int | None = None, discovery_range: str | None = None):
        import rclpy
        from rclpy.context import Context

        from ros_nodes.standalone import make_executor

        self.run_dir = Path(run_dir)
        self.enabled = {"sim": sim}
        self.discovery_range = apply_discovery_range(discovery_range, os.environ)  # rcl reads it at init
        self.context = Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.nodes: dict[str, Any] = {}
        self.executor = make_executor(self.context)
        self._thread: WorkerThread | None = None
        try:
            for spec in NODE_SPECS:
                if spec.enabled_by is not None and not self.enabled.get(spec.enabled_by, False):
                    continue
                values = build(PARAMS_BY_NODE[spec.name], dict(params.get(spec.name, {})))  # fail early
                path = write_params_file(self.run_dir / f"{spec.name}.params.yaml", spec.name,
                                         dataclasses.asdict(values))
                node = spec.load_class()(cli_args=["--ros-args", "--params-file", str(path)],
                                         handles=dict(self.nodes), context=self.context)
                self.nodes[spec.name] = node
                self.executor.add_node(node)
        except BaseException:
            self.shutdown()
            raise

    def start(self) -> Bringup:
        self._thread = WorkerThread("bringup.executor", target=self._spin)
        self._thread.start()
        return self

    def failures(self) -> dict[str, str]:
        """Node (or 'bringup') -> why it stopped working; empty while all is well."""
        found = {name: why for name, node in self.nodes.items() if (why := node.failure()) is not None}
        if self._thread is not None and self._thread.failure is not None:  # a callback raised out of spin()
            found["bringup"] = f"{self._thread.failure}\n{self._thread.traceback}".strip()
        return found

    def _spin(self) -> None:
        from rclpy.executors import ExternalShutdownException

        try:
            self.executor.spin()
        except ExternalShutdownException:
            pass

    def shutdown(self) -> None:
        # Stop spinning first, then destroy: destroying entities under a live executor leaves
        # "exception was never retrieved" noise from callbacks that were already scheduled.
        if self._thread is not None:
            self._thread.stopping.set()  # the end of spin() from here on is not a failure
        self.executor.shutdown(timeout_sec=5.0)
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        for node in reversed(list(self.nodes.values())):
            node.destroy_node()
        self.nodes.clear()
        self.context.try_shutdown()

    def __enter__(self) -> Bringup:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.shutdown()


def params_from_cfg(cfg) -> dict[str, dict[str, Any]]:
    from omegaconf import OmegaConf

    params = {s.name: OmegaConf.to_container(cfg[s.name].ros__parameters, resolve=True) for s in NODE_SPECS}
    if cfg.get("trust_checkpoint_code", False):  # the switch every `vla` command takes (docs/security.md)
        params["policy_node"]["trust_checkpoint_code"] = True
    return params


def wait(bringup: Bringup, episodes: int = 0, duration_s: float = 0.0) -> dict[str, str]:
    """Block until ``episodes`` finished (sim), ``duration_s`` passed, a node failed, or Ctrl-C
    (0 = no limit). Returns ``bringup.failures()``."""
    t0 = time.monotonic()
    bridge = bringup.nodes.get("sim_bridge_node")
    try:
        while not (failures := bringup.failures()):
            if episodes and bridge is not None and len(bridge.results) >= episodes:
                break
            if duration_s and time.monotonic() - t0 >= duration_s:
                break
            time.sleep(0.05)
    except KeyboardInterrupt:
        print("interrupted")
    return bringup.failures()


def run(bringup: Bringup, run_dir: str | Path, episodes: int = 0, duration_s: float = 0.0) -> int:
    """Wait (see ``wait``), write summary.json, print it; the exit code: 1 if a node failed, else 0."""
    run_dir = Path(run_dir)
    print(f"running {', '.join(bringup.nodes)} in one process (DDS discovery: {bringup.discovery_range}); "
          f"params files in {run_dir}", flush=True)
    failures = wait(bringup, episodes=episodes, duration_s=duration_s)
    bridge = bringup.nodes.get("sim_bridge_node")
    summary: dict[str, Any] = {"nodes": list(bringup.nodes), "episodes": list(bridge.results) if bridge else [],
                               "failures": failures}
    policy = bringup.nodes.get("policy_node")
    if policy is not None:
        summary["policy_node"] = {**policy.stats, "action_rate_hz": round(policy.action_rate_hz(), 2)}
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    for ep in summary["episodes"]:
        print(f"episode {ep['episode']} ({ep['task']}): success={ep['success']} in {ep['steps']} steps")
    print(f"summary: {run_dir / 'summary.json'}")
    for name, why in failures.items():
        print(f"[FATAL] {name}: {why}", file=sys.stderr, flush=True)
    return 1 if failures else 0


def main(cfg) -> None:
    """Hydra entry point of `vla ros bringup`."""
    from hydra.core.hydra_config import HydraConfig

    run_dir = Path(HydraConfig.get().runtime.output_dir)
    if cfg.domain_id is not None:
        os.environ["ROS_DOMAIN_ID"] = str(cfg.domain_id)
    try:
        bringup = Bringup(params_from_cfg(cfg), run_dir, sim=bool(cfg.sim), domain_id=cfg.domain_id,
                          discovery_range=cfg.discovery_range)
    except Exception as e:  # noqa: BLE001 - a start-up error (bad parameter, refused checkpoint) is one line
        print(f"[FATAL] {e}" if isinstance(e, ParamError) else f"[FATAL] {type(e).__name__}: {e}",
              file=sys.stderr, flush=True)
        raise SystemExit(2) from None
    with bringup:
        code = run(bringup, run_dir, episodes=int(cfg.episodes) if cfg.sim else 0, duration_s=float(cfg.duration_s))
    if code:
        raise SystemExit(code)
