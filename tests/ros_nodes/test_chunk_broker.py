"""The action-chunk broker alone: serving order, early re-planning, alignment, resets, threads."""

import threading

import numpy as np
import pytest

from ros_nodes.chunk_broker import ChunkBroker


def chunk(start, n=5, dim=2):
    return np.arange(start, start + n, dtype=np.float32)[:, None].repeat(dim, 1)


def test_serves_in_order_and_asks_early():
    b = ChunkBroker(replan_remaining=2, align=False)
    assert b.want_chunk() and b.tick() == (None, None)
    token = b.begin_request({"frame_stamp": 1.0})
    assert not b.want_chunk()  # one request in flight at a time
    assert b.deliver(token, chunk(0))
    action, meta = b.tick()
    assert action[0] == 0 and meta == {"frame_stamp": 1.0, "skipped": 0}
    served = [b.tick()[0][0] for _ in range(2)]
    assert served == [1, 2] and b.remaining == 2 and b.want_chunk()


def test_keeps_serving_the_current_chunk_while_the_next_is_inferred():
    b = ChunkBroker(replan_remaining=3, align=True)
    b.deliver(b.begin_request(), chunk(0, n=10))
    for _ in range(7):
        b.tick()
    token = b.begin_request()  # 3 left: the worker starts on the next chunk
    late = [b.tick()[0][0] for _ in range(2)]  # ... and the robot keeps moving meanwhile
    assert late == [7, 8]
    b.deliver(token, chunk(100, n=10))
    action, meta = b.tick()
    assert meta["skipped"] == 2 and action[0] == 102  # aligned: 2 steps already lived through


def test_alignment_keeps_at_least_the_last_action():
    b = ChunkBroker(replan_remaining=10, align=True)
    b.deliver(b.begin_request(), chunk(0, n=20))
    token = b.begin_request()
    for _ in range(15):
        b.tick()
    b.deliver(token, chunk(100, n=4))
    assert b.tick()[0][0] == 103


def test_reset_orphans_the_request_in_flight():
    b = ChunkBroker()
    token = b.begin_request()
    b.reset()
    assert not b.deliver(token, chunk(0)) and b.tick() == (None, None)
    assert b.want_chunk()


def test_fail_allows_a_new_request():
    b = ChunkBroker()
    token = b.begin_request()
    b.fail(token)
    assert b.want_chunk()


def test_rejects_bad_chunks_and_settings():
    with pytest.raises(ValueError):
        ChunkBroker(replan_remaining=-1)
    b = ChunkBroker()
    with pytest.raises(ValueError):
        b.deliver(b.begin_request(), np.zeros((0, 7)))


def test_concurrent_tick_and_deliver():
    b = ChunkBroker(replan_remaining=2)
    stop = threading.Event()
    errors = []

    def worker():
        i = 0
        while not stop.is_set():
            if b.want_chunk():
                b.deliver(b.begin_request(), chunk(i, n=4))
                i += 4

    t = threading.Thread(target=worker)
    t.start()
    try:
        for _ in range(20_000):
            action, _ = b.tick()
            if action is not None and action.shape != (2,):
                errors.append(action.shape)
    finally:
        stop.set()
        t.join()
    assert not errors


def test_sync_holds_while_the_next_chunk_is_inferred_and_starts_it_at_its_first_action():
    """chunk_execution=sync: stop-and-go as `vla eval` runs chunks (execute, hold while inferring, execute)."""
    b = ChunkBroker(replan_remaining=3, align=True, sync=True)
    b.deliver(b.begin_request(), chunk(0, n=10))
    assert [b.tick()[0][0] for _ in range(7)] == list(range(7))
    token = b.begin_request()  # 3 left: from now on the robot holds until the chunk arrives
    assert [b.tick() for _ in range(4)] == [(None, None)] * 4
    b.deliver(token, chunk(100, n=10))
    action, meta = b.tick()
    assert meta["skipped"] == 0 and action[0] == 100  # planned from the state the robot held in


def test_actions_served_before_the_request_that_the_observation_does_not_show_are_dropped_too():
    """``lived``: the frame was captured before the last served action(s) reached the robot."""
    for sync in (False, True):
        b = ChunkBroker(replan_remaining=3, align=True, sync=sync)
        b.deliver(b.begin_request(), chunk(0, n=10))
        for _ in range(7):
            b.tick()
        token = b.begin_request(lived=1)  # action 6 went out after the frame was taken
        served = 0 if sync else 2
        for _ in range(2):
            b.tick()
        b.deliver(token, chunk(100, n=10))
        action, meta = b.tick()
        assert meta["skipped"] == served + 1 and action[0] == 100 + served + 1


def test_executing_names_the_actions_the_next_chunk_continues():
    """RTC (chunk_execution=rtc): at a request, the current chunk from the observation's action on,
    and how many of its actions run before a chunk inferred now arrives."""
    b = ChunkBroker(replan_remaining=3, align=True)
    assert b.executing(ahead=2) is None  # nothing executing yet
    b.deliver(b.begin_request(), chunk(0, n=8))
    for _ in range(5):
        b.tick()
    cur, start, executing = b.executing(ahead=2)
    assert cur[start][0] == 5 and executing == 2  # actions 5 and 6 run during the 2-tick inference
    cur, start, executing = b.executing(lived=1, ahead=2)
    assert cur[start][0] == 4 and executing == 3  # the frame does not show action 4 yet: it is continued too
    assert b.executing(ahead=10)[2] == 3  # at most what is left of the chunk
    # what executes is what the delivered chunk is aligned past: the two are the same actions
    token = b.begin_request()
    b.tick(), b.tick()
    assert b.deliver(token, chunk(100, n=8)) and b.tick()[0][0] == 102
