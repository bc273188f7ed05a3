"""`vla bench ros` aggregation (ros_nodes/bench.py): a bringup the external probe did not hear is
measured by the node's own publish times, never reported as a 0 Hz action rate."""

import numpy as np

from ros_nodes.bench import publish_rates, rate_stats


def run(probe_times, node_times):
    return {"action_topic": rate_stats(np.asarray(probe_times, float), 0.0),
            "node_published": rate_stats(np.asarray(node_times, float), 0.0)}


def test_a_bringup_the_probe_missed_uses_the_node_s_own_rate():
    at_30hz = np.arange(50) / 30.0
    runs = [run(at_30hz, at_30hz), run([], at_30hz), run(at_30hz[:20], at_30hz[:20])]
    rates, from_node = publish_rates(runs)
    assert from_node == 1 and np.allclose(rates, 30.0)
    assert run([], [])["node_published"]["rate_hz"] == 0.0  # a node that published nothing still shows 0
