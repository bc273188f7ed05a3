"""`vla bench ros hogs=N`: the busy-loop processes it starts run until it kills them, by PID."""

import time

import pytest

from ros_nodes.bench import start_hogs, stop_hogs


# Slow: two busy loops on a 2-core CI box starved the rest of the suite for minutes on a fresh clone
# (`make test-slow` runs it).
@pytest.mark.slow
def test_hogs_burn_cpu_until_killed():
    hogs = start_hogs(2)
    try:
        assert len({h.pid for h in hogs}) == 2
        time.sleep(0.5)
        assert all(h.poll() is None for h in hogs)  # still running
        cpu = [sum(int(v) for v in open(f"/proc/{h.pid}/stat").read().rsplit(")", 1)[1].split()[11:13]) for h in hogs]
        assert all(c > 0 for c in cpu)  # user + system clock ticks: busy, not sleeping
    finally:
        stop_hogs(hogs)
    assert all(h.poll() is not None for h in hogs)  # killed and reaped
