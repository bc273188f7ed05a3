"""The launch file, the in-process runner and the ament package files describe the same nodes.

`launch` / `launch_ros` are not installable here (not on PyPI), so the launch file is checked two
ways: its AST (it builds its nodes from NODE_SPECS, nothing hard-coded), and by running
generate_launch_description() against small stand-ins for the launch API that record what the
real one would receive.
"""

import ast
import os
import sys
import types
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from ros_nodes.nodes import NODE_SPECS, PACKAGE, discovery_range
from ros_nodes.params import PARAMS_BY_NODE, defaults

ROOT = Path(__file__).resolve().parents[2]
LAUNCH = ROOT / "launch" / "bringup.launch.py"
SHARE = Path("/opt/fake/share/vla")


def test_launch_file_builds_its_nodes_from_node_specs():
    tree = ast.parse(LAUNCH.read_text())
    imports = {(n.module, a.name) for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names}
    assert ("ros_nodes.nodes", "NODE_SPECS") in imports
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "Node"]
    assert len(calls) == 1, "one Node(...) inside the loop over NODE_SPECS"
    kwargs = {k.arg: ast.unparse(k.value) for k in calls[0].keywords}
    assert kwargs["package"] == "PACKAGE"
    assert kwargs["executable"] == "spec.executable" and kwargs["name"] == "spec.name"
    assert "params_file" in kwargs["parameters"]
    # No node name / executable is spelled out as a string literal anywhere in the file.
    literals = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
    assert not literals & ({s.name for s in NODE_SPECS} | {s.executable for s in NODE_SPECS})


class _Recorder:
    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


class _LaunchConfiguration:
    def __init__(self, name):
        self.name = name

    def perform(self, context):
        return context.launch_configurations[self.name]


@pytest.fixture
def launch_api(monkeypatch):
    """Minimal stand-ins for launch, launch_ros and ament_index_python."""
    mods = {
        "launch": types.SimpleNamespace(LaunchDescription=_Recorder),
        "launch.actions": types.SimpleNamespace(DeclareLaunchArgument=_Recorder, OpaqueFunction=_Recorder),
        "launch.substitutions": types.SimpleNamespace(LaunchConfiguration=_LaunchConfiguration),
        "launch_ros": types.SimpleNamespace(),
        "launch_ros.actions": types.SimpleNamespace(Node=_Recorder),
        "ament_index_python": types.SimpleNamespace(),
        "ament_index_python.packages": types.SimpleNamespace(get_package_share_directory=lambda pkg: str(SHARE)),
    }
    for name, mod in mods.items():
        monkeypatch.setitem(sys.modules, name, mod)
    namespace: dict = {}
    exec(compile(LAUNCH.read_text(), str(LAUNCH), "exec"), namespace)
    return namespace["generate_launch_description"]


def _launch(generate, **args):
    description = generate()
    declared = {a.args[0]: a.kwargs.get("default_value") for a in description.args[0] if a.args}
    opaque = [a for a in description.args[0] if "function" in a.kwargs]
    assert len(opaque) == 1
    context = types.SimpleNamespace(launch_configurations={**declared, **args})
    return declared, opaque[0].kwargs["function"](context)


def test_launch_description_matches_node_specs(launch_api):
    declared, nodes = _launch(launch_api, sim="true")
    assert [n.kwargs["name"] for n in nodes] == [s.name for s in NODE_SPECS]
    for node, spec in zip(nodes, NODE_SPECS):
        assert node.kwargs["package"] == PACKAGE and node.kwargs["executable"] == spec.executable
        params_file, overrides = node.kwargs["parameters"]
        assert params_file == str(SHARE / "configs" / spec.params_file)
        # DDS discovery stays on this machine unless asked (an exported range is honoured)
        assert node.kwargs["additional_env"] == {"ROS_AUTOMATIC_DISCOVERY_RANGE": discovery_range(None, os.environ)}
        assert (ROOT / "configs" / spec.params_file).is_file()
        assert overrides == {}
        for name in spec.launch_params:
            assert name in declared and name in defaults(PARAMS_BY_NODE[spec.name])


def test_launch_arguments_select_and_override(launch_api):
    _, nodes = _launch(launch_api, sim="false", control_rate_hz="15", checkpoint="/ckpt", instruction="yes")
    assert [n.kwargs["name"] for n in nodes] == ["policy_node"]  # no sim bridge without sim:=true
    _, overrides = nodes[0].kwargs["parameters"]
    assert overrides == {"control_rate_hz": 15, "checkpoint": "/ckpt", "instruction": "yes"}
    _, nodes = _launch(launch_api, sim="false", policy_node_params="/my/params.yaml")
    assert nodes[0].kwargs["parameters"][0] == "/my/params.yaml"
    _, nodes = _launch(launch_api, sim="false", discovery_range="subnet")  # opened deliberately
    assert nodes[0].kwargs["additional_env"] == {"ROS_AUTOMATIC_DISCOVERY_RANGE": "SUBNET"}


def test_package_files_install_what_ros2_needs():
    xml = ET.parse(ROOT / "package.xml").getroot()
    assert xml.findtext("name") == PACKAGE
    assert xml.find("export/build_type").text == "ament_python"
    deps = {e.text for e in xml.findall("exec_depend")}
    assert {"rclpy", "sensor_msgs", "std_msgs", "geometry_msgs", "trajectory_msgs", "diagnostic_msgs"} <= deps
    assert (ROOT / "resource" / PACKAGE).is_file()
    setup_py = (ROOT / "setup.py").read_text()
    for spec in NODE_SPECS:  # `ros2 run vla <executable>` finds these in lib/vla (setup.cfg)
        script = ROOT / "ros_nodes" / "bin" / spec.executable
        assert script.is_file() and f"ros_nodes/bin/{spec.executable}" in setup_py
        assert f"from {spec.node_class.split(':')[0]} import main" in script.read_text()
    assert "script_dir=$base/lib/vla" in (ROOT / "setup.cfg").read_text()
    assert "install_scripts=$base/lib/vla" in (ROOT / "setup.cfg").read_text()


def test_bringup_uses_the_same_node_classes_and_files():
    from ros_nodes.bringup import default_params

    params = default_params()
    assert list(params) == [s.name for s in NODE_SPECS]
    for spec in NODE_SPECS:
        cls = spec.load_class()
        assert cls.__module__ == spec.node_class.split(":")[0]
        assert sorted(params[spec.name]) == sorted(defaults(PARAMS_BY_NODE[spec.name]))


def test_cli_dispatches_ros_commands():
    from vla import cli

    command, overrides = cli.resolve(["ros", "bringup", "sim=false"])
    assert command is cli.ROS["bringup"] and overrides == ["sim=false"]
    assert cli.resolve(["bench", "ros"])[0] is cli.BENCHES["ros"]
    for command in [*cli.ROS.values(), cli.BENCHES["ros"]]:
        assert (cli.CONFIG_DIR / f"{command.config}.yaml").is_file()
    with pytest.raises(SystemExit, match="Did you mean 'bringup'"):
        cli.resolve(["ros", "bringp"])


def test_bringup_trust_switch_reaches_the_policy_node():
    """`vla ros bringup trust_checkpoint_code=true` is the same switch as for the other commands."""
    from omegaconf import OmegaConf

    from ros_nodes.bringup import default_params, params_from_cfg

    cfg = OmegaConf.create({name: {"ros__parameters": values} for name, values in default_params().items()})
    assert params_from_cfg(cfg)["policy_node"]["trust_checkpoint_code"] is False  # off by default
    cfg.trust_checkpoint_code = True
    assert params_from_cfg(cfg)["policy_node"]["trust_checkpoint_code"] is True
