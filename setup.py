"""Only what colcon's ament_python build needs beyond pyproject.toml (which holds everything else).

`pip install -e .` and `colcon build` both run this through setuptools:
  * scripts: `policy_node` and `sim_bridge_node`, installed into lib/vla by colcon (setup.cfg) so
    `ros2 run vla policy_node` works, and into the environment's bin/ by pip.
    (They are plain scripts, not [project.scripts] entry points: setuptools lets pyproject.toml's
    [project] table override entry points passed here, but not `scripts`/`data_files`.)
  * data_files: the ament index marker, package.xml, the launch file and the ROS params files
    under share/vla (`ros2 launch vla bringup.launch.py` finds them there).
"""

from glob import glob

from setuptools import setup

setup(
    scripts=["ros_nodes/bin/policy_node", "ros_nodes/bin/sim_bridge_node"],
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/vla"]),
        ("share/vla", ["package.xml"]),
        ("share/vla/launch", sorted(glob("launch/*.launch.py"))),
        ("share/vla/configs/ros", sorted(glob("configs/ros/*.yaml"))),
    ],
)
