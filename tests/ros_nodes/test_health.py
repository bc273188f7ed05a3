"""ros_nodes.health (worker threads, log rate limit, event throttle) and the DDS discovery default."""

import threading
import time

import pytest

from ros_nodes.health import LogLimiter, Throttle, WorkerThread
from ros_nodes.nodes import DISCOVERY_ENV, apply_discovery_range, discovery_range
from ros_nodes.params import ParamError


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def test_a_worker_that_dies_is_a_failure_with_the_reason():
    reported = []

    def boom():
        raise RuntimeError("env.step exploded")

    t = WorkerThread("sim", target=boom, on_failure=reported.append)
    assert t.failure is None  # not started: nothing to report
    t.start()
    t.join(5)
    assert t.failure == "thread 'sim' died: RuntimeError: env.step exploded"
    assert reported == [t.failure] and "in boom" in t.traceback


def test_a_worker_that_returns_early_is_a_failure_but_a_stopped_one_is_not():
    quits = WorkerThread("quits", target=lambda: None)
    quits.start()
    quits.join(5)
    assert quits.failure == "thread 'quits' stopped unexpectedly"
    ev = threading.Event()
    loops = WorkerThread("loops", target=lambda: ev.wait(5))
    loops.start()
    assert loops.failure is None
    loops.stopping.set()
    ev.set()
    loops.stop()
    assert not loops.is_alive() and loops.failure is None


def test_log_limiter_one_line_per_key_per_interval_with_the_count_of_repeats():
    clock = Clock()
    lim = LogLimiter(10.0, clock=clock)
    assert lim.allow("a", "bad a") == "bad a"
    assert lim.allow("b", "bad b") == "bad b"  # keys are independent
    for _ in range(99):
        clock.t += 0.05
        assert lim.allow("a", "bad a") is None
    assert lim.flush() == []  # the interval has not passed
    clock.t += 6.0
    assert lim.flush() == ["bad a (repeated 99 more times in the last 11 s)"]
    assert lim.allow("a", "bad a") is None  # the summary started a new interval
    clock.t += 10.0
    assert lim.allow("a", "bad a") == "bad a (1 more since the last report 10 s ago)"
    assert lim.counts == {"a": 102, "b": 1} and lim.written == 3 and lim.suppressed == 100
    quiet = LogLimiter(10.0, clock=clock)
    quiet.allow("q", "x", summarize=False)
    quiet.allow("q", "x", summarize=False)
    clock.t += 11
    assert quiet.flush() == []
    assert LogLimiter(0.0, clock=clock).allow("a", "x") == "x"


def test_throttle_turns_a_flood_into_one_event_per_interval_and_loses_none():
    clock = Clock()
    th = Throttle(1.0, clock=clock)
    assert th.poll() is None
    accepted = []
    for tick in range(300):  # 10 s at 30 Hz, 20 requests per tick
        clock.t += 1 / 30
        for i in range(20):
            th.request(f"v{tick}.{i}")
        if (v := th.poll()) is not None:
            accepted.append((clock.t, v))
    assert 10 <= len(accepted) <= 11
    assert all(b[0] - a[0] >= 1.0 - 1e-9 for a, b in zip(accepted, accepted[1:]))
    assert th.coalesced == 300 * 20 - len(accepted) - int(th.pending)
    # A single legitimate event right after an accepted one is delayed to the end of the interval.
    clock.t += 0.2
    th.request("late")
    while (v := th.poll()) is None:
        clock.t += 1 / 30
    assert v == "late"
    assert Throttle(0.0, clock=clock).poll() is None
    free = Throttle(0.0, clock=clock)
    free.request(1)
    assert free.poll() == 1


def test_dds_discovery_defaults_to_localhost_and_honours_the_user():
    assert discovery_range(None, {}) == "LOCALHOST"
    assert discovery_range(None, {"ROS_LOCALHOST_ONLY": "0"}) == "LOCALHOST"  # images export it as 0
    assert discovery_range(None, {DISCOVERY_ENV: "SUBNET"}) == "SUBNET"  # exported: the user's choice
    assert discovery_range("subnet", {DISCOVERY_ENV: "OFF"}) == "SUBNET"  # the option wins
    assert discovery_range("off", {}) == "OFF"
    with pytest.raises(ParamError, match="invalid discovery_range 'lan': one of localhost, subnet, off, system_default"):
        discovery_range("lan", {})
    env = {"ROS_DOMAIN_ID": "7"}
    assert apply_discovery_range(None, env) == "LOCALHOST" and env[DISCOVERY_ENV] == "LOCALHOST"


del time
