"""Software in the loop: `vla ros bringup` (sim bridge + policy node in one process, real DDS)
runs a tabletop episode to success; this test listens to /vla/episode_success from its own DDS
participant. The policy is a parameter of the test: the checkpoints this project trained and
committed (checkpoints/README.md: a one-layout push specialist on its training layout, and the
400-layout push policy on a held-out layout) and the expert test double."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from std_msgs.msg import Bool

from ros_nodes.policy_node import LATCHED
from ros_nodes.testing import Participant, isolated_domain_id

DOMAIN = isolated_domain_id()
CHECKPOINT = Path(__file__).resolve().parents[2] / "checkpoints" / "push_red_left_cvla"
POLICIES = {  # bringup overrides, task, the episode's expected reset options (None: not checked)
    "trained-checkpoint": (["policy_node.ros__parameters.policy=checkpoint",
                            f"policy_node.ros__parameters.checkpoint={CHECKPOINT}",
                            # re-plan after 8 of its 16 actions, as it was evaluated (n_action_steps)
                            "policy_node.ros__parameters.replan_remaining=8",
                            # stop-and-go, as `vla eval` runs chunks (async: 17/20 in vla eval's loop too)
                            "policy_node.ros__parameters.chunk_execution=sync"], "push_red_left", None),
    # trained on 400 train layouts; here on held-out layout 0, which it never saw
    "trained-generalist-heldout-layout": (
        ["policy_node.ros__parameters.policy=checkpoint",
         f"policy_node.ros__parameters.checkpoint={CHECKPOINT.parent / 'push_red_left_tiny_cvla'}",
         "policy_node.ros__parameters.replan_remaining=4",  # its n_action_steps (4 of 8)
         'sim_bridge_node.ros__parameters.env_overrides="split=heldout"'], "push_red_left",
        {"layout": 0, "split": "heldout"}),
    "expert-test-double": (["policy_node.ros__parameters.policy=ros_nodes.testing:expert_policy"],
                           "place_red_on_blue_plate", None),
}


# One bringup, no retry. The sim runs in real time; it steps on each command as it arrives, so the
# policy node's chunk alignment matches what the arm executed, as in `vla eval` (issue #21 item 6:
# the bridge used to step on a clock of its own, which put the new chunk one action off the state
# it was planned from in some bringups; this test then retried up to 3 bringups).
# `vla bench ros episodes=20 [hogs=2]` measures the first-attempt success rate of the trained
# checkpoints (the tiny one 20/20 with two CPU hogs); it is a rate, not a certainty: `vla eval` itself gets 15/20
# with this specialist at seeds 1 and 2 (19/20 at seed 0) because the flow head samples noise. So one
# bringup asserts success only for the deterministic expert double; for the trained checkpoints it
# asserts the loop (commands drive the sim at the control rate, no inference failure, the outcome is
# published), and the rate is the benchmark's job.
MUST_SUCCEED = {"expert-test-double"}


def run_sil_episode(policy: list[str], task: str, run_dir) -> tuple[dict, list[bool], float]:
    listener = Participant("sil_listener", DOMAIN)
    outcomes: list[bool] = []
    listener.node.create_subscription(Bool, "/vla/episode_success", lambda m: outcomes.append(m.data), LATCHED)
    try:
        t0 = time.monotonic()
        proc = subprocess.run(
            [sys.executable, "-m", "vla.cli", "ros", "bringup", *policy, "episodes=1", f"domain_id={DOMAIN}",
             f"sim_bridge_node.ros__parameters.task={task}", f"hydra.run.dir={run_dir}"],
            capture_output=True, text=True, timeout=180,
            env={**os.environ, "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"},
        )
        elapsed = time.monotonic() - t0
        deadline = time.monotonic() + 5
        while not outcomes and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        listener.close()
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert (run_dir / "policy_node.params.yaml").is_file()  # the params file the node was given
    return json.loads((run_dir / "summary.json").read_text()), outcomes, elapsed


@pytest.mark.parametrize("name", list(POLICIES))
def test_sil_episode_runs_on_ros_commands(name, tmp_path):
    policy, task, reset_options = POLICIES[name]
    summary, outcomes, elapsed = run_sil_episode(policy, task, tmp_path / "run")
    episode = summary["episodes"][0]
    print(f"episode {episode}; policy node: {summary['policy_node']}; {elapsed:.1f} s with start-up")
    assert outcomes == [episode["success"]]  # what the bridge published on /vla/episode_success
    if reset_options is not None:  # e.g. a held-out layout, never trained on
        assert episode["reset_options"] == reset_options
    assert summary["policy_node"]["commands"] >= episode["steps"] * 0.8  # the sim ran on ROS commands
    assert summary["policy_node"].get("inference_failures", 0) == 0
    if name in MUST_SUCCEED:
        assert episode["success"], f"the episode failed on the first bringup: {episode}"


def test_sil_runs_a_vla_checkpoint_with_the_accel_preset(tmp_path):
    """The deployment path of a real checkpoint: `policy=checkpoint` + `accel=fast` through the ROS
    loop (random weights: the episode is not expected to succeed, the loop is what is tested)."""
    from tiny_models import save_tiny_checkpoint

    ckpt = save_tiny_checkpoint(tmp_path / "ckpt", compressor="compressor_vla")
    proc = subprocess.run(
        [sys.executable, "-m", "vla.cli", "ros", "bringup", "policy_node.ros__parameters.policy=checkpoint",
         f"policy_node.ros__parameters.checkpoint={ckpt}", "policy_node.ros__parameters.accel=fast",
         "policy_node.ros__parameters.replan_remaining=3", "duration_s=8", f"domain_id={DOMAIN}",
         f"hydra.run.dir={tmp_path / 'run'}"],
        capture_output=True, text=True, timeout=180,
        env={**os.environ, "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"},
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    stats = json.loads((tmp_path / "run" / "summary.json").read_text())["policy_node"]
    print(f"policy node: {stats}")
    # accel=fast was applied at load: the tiny model's 3 decoder layers pruned to 2, head cache on.
    assert "accel=fast" in out and "removed layers" in out, out[-4000:]
    assert stats["inference_failures"] == 0
    assert stats["chunks"] >= 5 and stats["commands"] >= 60  # ~8 s at 30 Hz, after model start-up


@pytest.mark.slow  # a benchmark smoke run: once hung in its bringup beside a busy-loop hog (`make test-slow`)
def test_bench_ros_reports_first_attempt_success_and_kills_its_hogs(tmp_path):
    """`vla bench ros`: N bringups (here 1) of the trained checkpoint, first attempt each, with CPU hogs
    beside it that it starts and kills by PID; the report has the success count, rate and load."""
    import signal

    # Its own process group: on a timeout the bench and anything it started are killed together.
    proc = subprocess.Popen(
        [sys.executable, "-m", "vla.cli", "bench", "ros", "episodes=1", "hogs=1", f"domain_id={DOMAIN}",
         f"hydra.run.dir={tmp_path}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        env={**os.environ, "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"},
    )
    try:
        proc.stdout, proc.stderr = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate(timeout=30)
        raise AssertionError("vla bench ros did not finish in 240 s: " + out[-2000:] + err[-2000:]) from None
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    report = json.loads((tmp_path / "ros.json").read_text())
    print({k: report[k] for k in ("first_attempt_successes", "bringups", "action_topic", "load_avg")})
    assert report["bringups"] == 1 and len(report["episodes"]) == 1 and report["hogs"] == 1
    assert report["episodes"][0]["reset_options"] == {"layout": 0, "split": "train"}  # vla eval's episode 0
    assert report["action_topic"]["rate_hz_median"] > 20  # 30 Hz target
    for pid in report["hog_pids"]:
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
    assert "first-attempt success (bringups)" in (tmp_path / "ros.md").read_text()
