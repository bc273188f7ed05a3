"""`vla teleop` as a person meets it: a real terminal (tmux), keys typed, the screen read back,
then the recorded dataset opened with LeRobotDataset.

Needs the `tmux` binary (Debian: `apt-get install tmux`). Runs on a private tmux server socket,
so it never touches a user's tmux sessions.
"""

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np

INSTRUCTION = "nudge the red cube gently"


class Terminal:
    """A detached 120x40 tmux session running one command."""

    def __init__(self, command: str, cwd: Path):
        self.socket = f"vla-test-{uuid.uuid4().hex[:8]}"
        self.tmux("new-session", "-d", "-s", "t", "-x", "120", "-y", "40", "-c", str(cwd), command)

    def tmux(self, *args: str) -> str:
        return subprocess.run(["tmux", "-L", self.socket, *args], check=True, capture_output=True, text=True).stdout

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", "t")

    def keys(self, *keys: str, literal: bool = False) -> None:
        self.tmux("send-keys", "-t", "t", *(["-l"] if literal else []), *keys)

    def wait_for(self, pattern: str, timeout: float = 90.0) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if m := re.search(pattern, self.screen()):
                return m
            time.sleep(0.2)
        raise AssertionError(f"'{pattern}' not on screen after {timeout} s. Screen:\n{self.screen()}")

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True)


def test_teleop_records_a_typed_instruction_episode(tmp_path):
    assert shutil.which("tmux"), "this test drives a real terminal: install tmux (apt-get install tmux)"
    root = tmp_path / "dataset"
    env = "HF_HUB_OFFLINE=1 MUJOCO_GL=egl"
    cmd = (f"env {env} {shlex.quote(sys.executable)} -m vla.cli teleop env=tabletop task=push_red_left "
           f"root={root} hydra.run.dir={tmp_path / 'run'}; echo TELEOP_EXIT=$?; sleep 300")
    term = Terminal(cmd, tmp_path)
    try:
        # The key help and the status are on screen.
        term.wait_for(r"Esc, Ctrl-C\s+save and quit")
        screen = term.screen()
        for text in ("away / toward camera", "open / close gripper", "type the instruction", "recording: off"):
            assert text in screen, screen
        assert "instruction: push the red cube to the left" in screen

        # Type an instruction.
        term.keys("t")
        term.wait_for("type the instruction \\(Enter")
        term.keys(INSTRUCTION, literal=True)
        term.keys("Enter")
        term.wait_for(f"instruction: {INSTRUCTION}")

        # Record a short episode: start, move, close the gripper, stop.
        term.keys("Enter")
        term.wait_for(r"recording: ON")
        for key in ["w", "w", "a", "a", "f", "Space", "d"]:
            term.keys(key)
            time.sleep(0.1)
        term.wait_for(r"recording: ON\s+steps: (1\d|[2-9]\d|\d{3,})")  # at least 10 steps recorded
        term.wait_for("gripper: closed")
        term.keys("Enter")
        m = term.wait_for(r"saved episode 0 \((\d+) frames")
        frames = int(m.group(1))
        assert "recording: off" in term.screen()

        # Quit; the process commits and exits cleanly.
        term.keys("Escape")
        term.wait_for("TELEOP_EXIT=0", timeout=180)
        assert f"dataset:  {root}  (1 episodes, {frames} frames)" in term.screen()
    finally:
        term.close()

    from lerobot.datasets import LeRobotDataset

    ds = LeRobotDataset("local/vla_teleop_tabletop", root=root)
    assert ds.num_episodes == 1 and ds.num_frames == frames
    assert list(ds.meta.tasks.index) == [INSTRUCTION]
    assert ds[0]["task"] == INSTRUCTION and ds[frames - 1]["task"] == INSTRUCTION
    actions = np.stack([ds.hf_dataset[i]["action"] for i in range(frames)])
    assert (actions[:, 0] < 0).any() and (actions[:, 1] < 0).any() and (actions[:, 2] < 0).any()  # w, a, f
    assert actions[0, 6] == -1.0 and actions[-1, 6] == 1.0  # gripper open at start, closed after space
    assert os.path.isdir(root / "meta")
