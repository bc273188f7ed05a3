"""The node list: the ONE source of truth for `launch/bringup.launch.py` and `vla ros bringup`.

The launch file imports ``NODE_SPECS`` and builds one ``launch_ros`` Node per entry; the in-process
runner (ros_nodes/bringup.py) builds the same classes with the same params files. A test parses the
launch file and checks it against this list, so the two cannot drift.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from ros_nodes.params import ParamError

PACKAGE = "vla"
CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"  # source tree / editable install


@dataclass(frozen=True)
class NodeSpec:
    name: str  # ROS node name (the params file's top-level key)
    executable: str  # console script in lib/vla (`ros2 run vla <executable>`)
    node_class: str  # "module:Class", constructed in-process by the bringup runner
    params_file: str  # relative to the configs folder (share/vla/configs when installed)
    enabled_by: str | None  # launch argument that switches the node on (None = always)
    launch_params: tuple[str, ...] = ()  # parameters also exposed as launch arguments

    @property
    def params_arg(self) -> str:
        """Launch argument that replaces the whole params file."""
        return f"{self.name}_params"

    def load_class(self):
        module, cls = self.node_class.split(":")
        return getattr(importlib.import_module(module), cls)


# Order matters in-process: the sim bridge exists before the policy node, so an in-process test
# double (ros_nodes.testing.expert_policy) can be handed the bridge's sim handle.
NODE_SPECS: tuple[NodeSpec, ...] = (
    NodeSpec(
        name="sim_bridge_node",
        executable="sim_bridge_node",
        node_class="ros_nodes.sim_bridge_node:SimBridgeNode",
        params_file="ros/sim_bridge_node.yaml",
        enabled_by="sim",
        launch_params=("env", "task", "rate_hz"),
    ),
    NodeSpec(
        name="policy_node",
        executable="policy_node",
        node_class="ros_nodes.policy_node:PolicyNode",
        params_file="ros/policy_node.yaml",
        enabled_by=None,
        launch_params=("checkpoint", "compressor", "device", "policy", "control_rate_hz", "instruction", "joint_units"),
    ),
)


def spec(name: str) -> NodeSpec:
    for s in NODE_SPECS:
        if s.name == name:
            return s
    raise KeyError(f"no node named '{name}'. Nodes: {', '.join(s.name for s in NODE_SPECS)}")


def parse_launch_value(text: str):
    """A launch-argument string -> typed value, the way `ros2 param set` / `-p name:=value` read it."""
    return yaml.safe_load(text)


# ------------------------------------------------------------------------------- DDS discovery
DISCOVERY_ENV = "ROS_AUTOMATIC_DISCOVERY_RANGE"  # ROS 2 Iron and later (this stack: Kilted)
DISCOVERY_RANGES = ("LOCALHOST", "SUBNET", "OFF", "SYSTEM_DEFAULT")


def discovery_range(requested: str | None, environ: Mapping[str, str]) -> str:
    """The DDS discovery range for nodes vla starts (`vla ros bringup`, the launch file).

    ``requested`` (the ``discovery_range`` option) wins; else the ROS_AUTOMATIC_DISCOVERY_RANGE the
    user exported; else LOCALHOST. ROS's own default, SUBNET, lets any host on the network and
    ROS_DOMAIN_ID set the instruction or hold the robot, so reaching other hosts must be asked for
    (docs/security.md). The pre-Iron ROS_LOCALHOST_ONLY is not read: images often export it as 0."""
    if requested:
        value = str(requested).strip().upper()
        if value not in DISCOVERY_RANGES:
            raise ParamError(f"invalid discovery_range {requested!r}: one of "
                             f"{', '.join(r.lower() for r in DISCOVERY_RANGES)} (or null: the environment's, else localhost)")
        return value
    if environ.get(DISCOVERY_ENV):
        return environ[DISCOVERY_ENV]  # the user's choice, as rcl will read it
    return "LOCALHOST"


def apply_discovery_range(requested: str | None, environ: MutableMapping[str, str]) -> str:
    """Export ``discovery_range(requested, environ)`` into ``environ`` (before rclpy.init reads it)."""
    value = discovery_range(requested, environ)
    environ[DISCOVERY_ENV] = value
    return value
