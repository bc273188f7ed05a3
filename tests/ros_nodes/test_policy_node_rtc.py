"""chunk_execution=rtc on the policy node: the request made while a chunk executes carries that chunk's
next actions, and the flow head's sampling continues them (real-time chunking, vla/chunking.py).
The handlers are driven directly as in test_policy_node_inputs.py; the policy is a real tiny VLA."""

import threading
import time

import numpy as np
import pytest
import torch

from ros_nodes.params import ParamError
from test_policy_node_inputs import INSTRUCTION, feed_valid, make_node  # noqa: F401 - fixture
from tiny_models import save_tiny_checkpoint


def wait_for(predicate, timeout=60.0):
    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, "the inference worker did not answer"
        time.sleep(0.005)


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    return save_tiny_checkpoint(tmp_path_factory.mktemp("rtc") / "ckpt")


def recording(policy, gate: threading.Event):
    """policy.infer records its calls and returns only when ``gate`` is set (a slow inference)."""
    calls, real = [], policy.infer

    def infer(obs, **kwargs):
        out = real(obs, **kwargs)
        calls.append({"obs": obs, "rtc": kwargs.get("rtc"), "actions": np.array(out["actions"])})
        gate.wait(30)
        return out

    policy.infer = infer
    return calls, real


def test_rtc_request_continues_the_executing_chunk(make_node, tiny_checkpoint):
    from vla.chunking import action_normaliser
    from vla.runtime import load_policy

    torch.manual_seed(0)
    policy = load_policy(tiny_checkpoint)
    gate = threading.Event()
    gate.set()
    calls, real_infer = recording(policy, gate)
    node, _ = make_node(policy=policy, instruction=INSTRUCTION, chunk_execution="rtc", rtc_delay_ticks=2,
                        replan_remaining=3)
    def ticked():
        feed_valid(node)
        node._on_control_tick()
        return node.stats["chunks"] == 1

    wait_for(ticked)  # the first request: nothing executes yet, so no guidance
    assert calls[0]["rtc"] is None
    first = calls[0]["actions"]
    horizon = len(first)
    gate.clear()  # the next inference "takes" as long as the test wants
    ticks = 0
    while len(calls) < 2 or calls[-1]["rtc"] is None:
        feed_valid(node)
        node._on_control_tick()
        ticks += 1
        if ticks == horizon - 3:  # replan_remaining=3 left: the request went out at this tick
            wait_for(lambda: len(calls) == 2)
    request_index = horizon - 3
    guide = calls[1]["rtc"]
    # pinned: the 2 actions that execute during the inference; soft: the rest of the chunk
    assert guide.delay == 2
    np.testing.assert_allclose(guide.target.numpy(), action_normaliser(policy)(first[request_index:]).numpy(),
                               atol=1e-6)
    guided = calls[1]["actions"]
    # what runs during the inference is the executing chunk's next actions ...
    for _ in range(2):
        feed_valid(node)
        node._on_control_tick()
    gate.set()
    wait_for(lambda: node.stats["chunks"] == 2)
    # ... and the new chunk starts with them (env units), where an unguided sample from the same
    # observation does not
    err_guided = np.abs(guided[:2] - first[request_index:request_index + 2]).max()
    unguided = np.array(real_infer(calls[1]["obs"])["actions"])
    err_unguided = np.abs(unguided[:2] - first[request_index:request_index + 2]).max()
    assert err_guided < 0.15 and err_guided < 0.5 * err_unguided, (err_guided, err_unguided)


def test_rtc_delay_defaults_to_the_measured_latency(make_node, tiny_checkpoint):
    from vla.runtime import load_policy

    node, _ = make_node(policy=load_policy(tiny_checkpoint), instruction=INSTRUCTION, chunk_execution="rtc",
                        control_rate_hz=30.0)
    assert node._rtc_delay_ticks() == 0  # nothing measured yet
    node.inference_ms.extend([10.0] * 18 + [70.0, 90.0])  # p90 = 16 ms ... the slow tail counts
    assert node._rtc_delay_ticks() == int(np.ceil(np.percentile(node.inference_ms, 90) / (1e3 / 30.0)))
    node.inference_ms.extend([100.0] * 20)
    assert node._rtc_delay_ticks() == 3  # 100 ms at 30 Hz


def test_rtc_needs_a_flow_policy(make_node):
    with pytest.raises(ParamError, match="chunk_execution=rtc guides a flow-matching VLA head"):
        make_node(policy_options="chunk=8", instruction=INSTRUCTION, chunk_execution="rtc")
