"""Start the vla policy node (and, with sim:=true, the sim bridge) on a ROS 2 install.

    colcon build --packages-select vla && source install/setup.bash
    ros2 launch vla bringup.launch.py checkpoint:=/path/to/checkpoint
    ros2 launch vla bringup.launch.py checkpoint:=/path/to/so100_checkpoint joint_units:=degrees
    ros2 launch vla bringup.launch.py sim:=true policy:=ros_nodes.testing:slow_fake_policy
    ros2 launch vla bringup.launch.py policy_node_params:=/path/to/my_policy_node.yaml

The nodes, executables and params files come from ``ros_nodes.nodes.NODE_SPECS``, the same list
`vla ros bringup` starts in one process, so the two cannot drift. Each node gets its params file
(default: share/vla/configs/ros/<node>.yaml; replace it with ``<node>_params:=<path>``) plus the
launch arguments listed in its spec's ``launch_params`` that are set (non-empty), e.g.
``control_rate_hz:=15``. Values are validated by the node at start-up: a bad one stops it with an
error naming the parameter.

DDS discovery is kept on this machine, as in `vla ros bringup`: ``discovery_range:=subnet`` (or an
exported ROS_AUTOMATIC_DISCOVERY_RANGE) opens it to other hosts; see docs/security.md.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from ros_nodes.nodes import DISCOVERY_ENV, NODE_SPECS, PACKAGE, discovery_range
from ros_nodes.params import parse_param_text


def _truthy(text: str) -> bool:
    return text.strip().lower() in ("true", "1", "yes", "on")


def _nodes(context, *args, **kwargs):
    # localhost unless discovery_range:= or the user's exported range says otherwise
    env = {DISCOVERY_ENV: discovery_range(LaunchConfiguration("discovery_range").perform(context) or None, os.environ)}
    actions = []
    for spec in NODE_SPECS:
        if spec.enabled_by and not _truthy(LaunchConfiguration(spec.enabled_by).perform(context)):
            continue
        params_file = LaunchConfiguration(spec.params_arg).perform(context)
        overrides = {}
        for name in spec.launch_params:
            text = LaunchConfiguration(name).perform(context)
            if text != "":
                overrides[name] = parse_param_text(spec.name, name, text)
        actions.append(
            Node(
                package=PACKAGE,
                executable=spec.executable,
                name=spec.name,
                output="screen",
                emulate_tty=True,
                parameters=[params_file, overrides],
                additional_env=env,
            )
        )
    return actions


def generate_launch_description():
    share = get_package_share_directory(PACKAGE)
    args = [DeclareLaunchArgument("sim", default_value="false", description="also start the sim bridge node"),
            DeclareLaunchArgument("discovery_range", default_value="",
                                  description="DDS discovery: localhost | subnet | off | system_default "
                                              "('' = $ROS_AUTOMATIC_DISCOVERY_RANGE, else localhost)")]
    declared = set()
    for spec in NODE_SPECS:
        args.append(
            DeclareLaunchArgument(
                spec.params_arg,
                default_value=os.path.join(share, "configs", spec.params_file),
                description=f"params file of {spec.name}",
            )
        )
        for name in spec.launch_params:
            if name not in declared:
                declared.add(name)
                args.append(
                    DeclareLaunchArgument(name, default_value="", description=f"{spec.name} parameter '{name}' ('' = from the params file)")
                )
    return LaunchDescription([*args, OpaqueFunction(function=_nodes)])
