"""ROS 2 layer of vla: thin rclpy nodes around the ``vla.runtime.ChunkPolicy`` boundary.

    policy_node.py      cameras + state + instruction -> policy (worker thread) -> commands
    chunk_broker.py     one action per control tick from the current chunk; next chunk early
    safety_filter.py    clamps, rate limits, holds; always between broker and the robot topic
    sim_bridge_node.py  a sim/ env behind robot-like topics (software-in-the-loop)
    conversions.py      message <-> numpy/dict
    params.py           parameter schema + validation (one dataclass per node)
    health.py           worker threads whose death is a node failure; log and event rate limits
    nodes.py            NODE_SPECS: the node list shared by launch/bringup.launch.py and bringup.py
    bringup.py          `vla ros bringup`: the same nodes in one process
    bench.py            `vla bench ros`: frame->action latency and action rate over the SIL loop
    testing.py          test doubles (slow fake policy, privileged sim expert)

Pure modules (chunk_broker, safety_filter, params, nodes, health) import no rclpy.
"""
