"""`vla teleop`: drive a sim env from the keyboard in a terminal (works over SSH) and record a
LeRobot dataset with the same features as `vla collect`.

    vla teleop env=tabletop                                   # first task, train layouts
    vla teleop env=tabletop task=stack_red_on_green root=/data/teleop_stack

The screen shows the key help, live status and an ASCII preview of the agentview camera. Keys
(movement keys are configurable in configs/teleop.yaml):

    w/s a/d r/f   move the gripper (away/toward the camera, left/right, up/down)
    q/e           yaw            space  open/close gripper        -/+  speed
    Enter         reset the scene and start recording / stop and save the episode
    x, Backspace  discard the episode being recorded
    t             type the instruction (stored as every frame's `task`)
    Esc, Ctrl-C   save (the episode being recorded too) and quit

The sim runs at ``hz`` whether keys are pressed or not (terminals send no key-up events, so a
movement key moves the gripper for one tick; holding it relies on the terminal's key repeat).
Recording stores, every tick, the observation before the step and the action taken.

Crash safety is sim/dataset.py's: a finished episode is staged to disk at once (atomic file),
then committed to ``root`` in a background thread by ``DatasetStore`` (versioned, atomic swap), so
``root`` always opens with ``LeRobotDataset`` and a rerun with the same root commits leftovers and
appends. Episode i of a task is recorded on layout ``reset_options(env, task, i)``.
"""

from __future__ import annotations

import curses
import logging
import os
import signal
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

KEY_ESC, KEY_CTRL_C = 27, 3
ENTER_KEYS = {10, 13, curses.KEY_ENTER}
BACKSPACE_KEYS = {8, 127, curses.KEY_BACKSPACE}
HELP_WIDTH = 44  # preview column
RAMP = " .:-=+*#%@"
# xterm's 256-colour cube uses the levels 0, 95, 135, ..., 255: map each 0-255 value to the nearest.
CUBE_LEVEL = np.abs(np.arange(256)[:, None] - np.array([0, 95, 135, 175, 215, 255])[None]).argmin(1)  # dark -> bright, for terminals without colours


# ── episode recording on top of sim/dataset.py ─────────────────────────────────────────────


@dataclass
class Buffer:
    """Steps of the episode being recorded: observation before each step + the action taken."""

    cameras: list[str]  # the robot's (Embodiment.camera_names)
    images: dict[str, list[np.ndarray]] = field(default_factory=dict)
    state: list[np.ndarray] = field(default_factory=list)
    action: list[np.ndarray] = field(default_factory=list)
    success: bool = False

    def add(self, obs: dict, action: np.ndarray) -> None:
        for cam in self.cameras:
            self.images.setdefault(cam, []).append(np.array(obs["pixels"][cam], dtype=np.uint8, copy=True))
        self.state.append(np.asarray(obs["agent_pos"], dtype=np.float32).copy())
        self.action.append(action.copy())

    def __len__(self) -> int:
        return len(self.action)


class Recorder:
    """Stages finished episodes and commits them to the dataset in a background thread."""

    def __init__(self, store: Any, task: str):
        from sim.dataset import load_staged

        self.store, self.task = store, task
        done = [a for a in store.ledger() if a.task == task]
        done += [a for a in (load_staged(p, frames=False).attempt for p in store.staged()) if a.task == task]
        self.next_index = 1 + max((a.episode for a in done), default=-1)
        self.saved = len(store.ledger())  # episodes in the dataset (all tasks) once commits finish
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="commit")
        self._pending: list[Future] = []
        self.error: str | None = None
        self._pool.submit(_warm_up)  # import lerobot's writer now, not when the first episode is saved
        if store.staged():  # a previous session died before committing: its episodes go in first
            self._submit(store.staged())

    def save(self, buf: Buffer, instruction: str, seed: int) -> int:
        from sim.dataset import Attempt, Episode, stage_episode

        index = self.next_index
        attempt = Attempt(self.task, index, buf.success, True, seed, len(buf), instruction)
        episode = Episode(attempt, {c: np.stack(v) for c, v in buf.images.items()}, np.stack(buf.state), np.stack(buf.action))
        path = stage_episode(episode, self.store.staging)  # durable from here on
        self.next_index += 1
        self._submit([path])
        return index

    def _submit(self, paths: list[Path]) -> None:
        def commit() -> None:
            committed = self.store.commit(paths)
            self.saved += sum(a.kept for a in committed)

        fut = self._pool.submit(commit)
        fut.add_done_callback(self._check)
        self._pending.append(fut)

    def _check(self, fut: Future) -> None:
        if fut.exception() is not None:
            self.error = f"commit failed (episode kept in {self.store.staging}): {fut.exception()!r}"

    @property
    def committing(self) -> int:
        self._pending = [f for f in self._pending if not f.done()]
        return len(self._pending)

    def close(self) -> None:
        self._pool.shutdown(wait=True)


def _warm_up() -> None:
    import lerobot.datasets  # noqa: F401  (several seconds on a busy machine)


# ── the session: env + keys -> actions -> recording ────────────────────────────────────────


class Session:
    """Everything but the screen: key handling, stepping, recording. Driven by ``tick``."""

    def __init__(self, cfg: DictConfig, env_cfg: Any, env: Any, recorder: Recorder, task: str, fps: float):
        self.cfg, self.env_cfg, self.env, self.recorder, self.task = cfg, env_cfg, env, recorder, task
        from policies.embodiment import env_embodiment

        # Keyboard teleop moves an end effector: the keys map to delta-EEF axes (configs/teleop.yaml).
        self.robot = env_embodiment(env)
        if self.robot.action_kind != "delta_eef" or not self.robot.gripper_dims:
            raise ValueError(f"vla teleop drives delta-EEF arms with a gripper; this env's robot is "
                             f"{self.robot.describe()}. Record it with its own teleop device (lerobot-record).")
        self.gripper_dim = self.robot.gripper_dims[-1]
        self.keys = {str(k): (int(v[0]), float(v[1])) for k, v in cfg["keys"].items()}
        self.fps = fps
        self.speed = float(cfg.speed)
        self.gripper = -1.0
        self.instruction = str(cfg.instruction or getattr(env.unwrapped, "task_description", task))
        self.buffer: Buffer | None = None
        self.typing: str | None = None  # text being typed, None when not typing
        self.quit = False
        self.signalled = False  # set by SIGHUP/SIGTERM handlers; acted on at the next tick
        self.success_now = False
        self.last_success: bool | None = None
        self.message = "ready: press Enter to start recording"
        self.obs = self._reset()

    # --- env
    def _seed(self) -> int:
        from sim.collect import episode_seed

        return episode_seed(int(self.cfg.seed), self.task, self.recorder.next_index)

    def _reset(self) -> dict:
        from sim.factory import reset_options

        options = reset_options(self.env_cfg, self.task, self.recorder.next_index)
        obs, _ = self.env.reset(seed=self._seed(), options=options)
        self.gripper, self.success_now = -1.0, False
        return obs

    def tick(self, pressed: list[int]) -> None:
        """Apply this tick's keys, then step the env once (recording if on)."""
        if self.signalled:
            return self.request_quit()
        action = np.zeros(self.robot.action_dim, dtype=np.float32)
        for key in pressed:
            self._key(key, action)
            if self.quit:
                return
        action[self.gripper_dim] = self.gripper
        if self.buffer is not None:
            self.buffer.add(self.obs, action)
        self.obs, _, _, truncated, info = self.env.step(action)
        self.success_now = bool(info.get("is_success", False))
        if self.buffer is not None:
            self.buffer.success = self.success_now  # success of the final state
            if truncated:
                self.stop(save=True, why="time limit reached: ")

    def _key(self, key: int, action: np.ndarray) -> None:
        if self.typing is not None:
            return self._type(key)
        ch = chr(key) if 0 <= key < 256 else ""
        if ch in self.keys:
            dim, sign = self.keys[ch]
            action[dim] = np.clip(sign * self.speed, -1.0, 1.0)
        elif ch == " ":
            self.gripper = -self.gripper
        elif ch in "-_":
            self.speed = max(0.1, round(self.speed - 0.1, 2))
        elif ch in "+=":
            self.speed = min(1.0, round(self.speed + 0.1, 2))
        elif key in ENTER_KEYS:
            self.stop(save=True) if self.buffer is not None else self.start()
        elif ch == "x" or key in BACKSPACE_KEYS:
            self.stop(save=False) if self.buffer is not None else None
        elif ch == "t":
            if self.buffer is not None:
                self.message = "stop recording (Enter) before changing the instruction"
            else:
                self.typing = ""
        elif key in (KEY_ESC, KEY_CTRL_C):
            self.request_quit()

    def _type(self, key: int) -> None:
        if key in ENTER_KEYS:
            text = " ".join(self.typing.split())
            if text:
                self.instruction, self.message = text, f"instruction set: {text}"
            else:
                self.message = "empty instruction ignored"
            self.typing = None
        elif key == KEY_ESC:
            self.typing, self.message = None, "typing cancelled"
        elif key == KEY_CTRL_C:
            self.typing = None
            self.request_quit()
        elif key in BACKSPACE_KEYS:
            self.typing = self.typing[:-1]
        elif 32 <= key < 127:
            self.typing += chr(key)

    # --- recording
    def start(self) -> None:
        self.obs = self._reset()
        self.buffer = Buffer(self.robot.camera_names)
        self.message = f"recording episode {self.recorder.next_index} of '{self.task}'"

    def stop(self, save: bool, why: str = "") -> None:
        buf, self.buffer = self.buffer, None
        if save and buf is not None and len(buf):
            index = self.recorder.save(buf, self.instruction, self._seed())
            self.last_success = buf.success
            self.message = f"{why}saved episode {index} ({len(buf)} frames, success={buf.success})"
        else:
            self.message = f"{why}discarded the episode" if buf is not None else why
        self.obs = self._reset()  # next layout after a save, same layout again after a discard

    def request_quit(self) -> None:
        if self.buffer is not None:
            self.stop(save=True)
        self.quit = True


# ── the screen ─────────────────────────────────────────────────────────────────────────────


def help_lines(keys: dict[str, tuple[int, float]]) -> list[str]:
    def pair(a: str, b: str) -> str:
        return f"{a}/{b}" if a in keys and b in keys else "?"

    return [
        f"{pair('w', 's'):<12} away / toward camera",
        f"{pair('a', 'd'):<12} left / right",
        f"{pair('r', 'f'):<12} up / down",
        f"{pair('q', 'e'):<12} yaw left / right",
        f"{'space':<12} open / close gripper",
        f"{'- / +':<12} speed",
        f"{'Enter':<12} start / stop+save recording",
        f"{'x, Backspace':<12} discard episode",
        f"{'t':<12} type the instruction",
        f"{'Esc, Ctrl-C':<12} save and quit",
    ]


class Screen:
    """curses drawing: header, key help, status, and a colour (or ASCII) camera preview."""

    def __init__(self, stdscr: Any, preview: bool):
        self.scr, self.preview = stdscr, preview
        self.mode = "mono"
        if curses.has_colors():
            curses.start_color()
            with _suppress_curses():
                curses.use_default_colors()
            if curses.COLORS >= 256 and curses.COLOR_PAIRS >= 217:
                self.mode = "256"  # background-coloured blanks from the 6x6x6 colour cube
                for i in range(216):
                    curses.init_pair(i + 1, 0, 16 + i)
            elif curses.COLORS >= 8:
                self.mode = "8"
                for i in range(8):
                    curses.init_pair(i + 1, i, -1)

    def draw(self, s: Session, title: str) -> None:
        scr = self.scr
        scr.erase()
        h, w = scr.getmaxyx()
        put = lambda y, x, text, attr=0: _put(scr, y, x, text, attr, h, w)  # noqa: E731
        put(0, 0, title, curses.A_BOLD)
        if s.buffer is not None:
            put(0, max(0, w - 28), f" REC  {len(s.buffer):5d} steps ", curses.A_REVERSE | curses.A_BOLD)
        put(1, 0, f"instruction: {s.instruction}")
        grip = "closed" if s.gripper > 0 else "open"
        last = "-" if s.last_success is None else ("yes" if s.last_success else "no")
        busy = f" (committing {s.recorder.committing})" if s.recorder.committing else ""
        put(2, 0, f"recording: {'ON ' if s.buffer is not None else 'off'}  steps: "
                  f"{len(s.buffer) if s.buffer is not None else 0}  episodes saved: {s.recorder.saved}{busy}  "
                  f"last success: {last}  success now: {'yes' if s.success_now else 'no'}")
        put(3, 0, f"gripper: {grip}  speed: {s.speed:.1f}  next episode: {s.recorder.next_index}")
        put(4, 0, s.recorder.error or s.message, curses.A_BOLD if s.recorder.error else 0)
        if s.typing is not None:
            put(5, 0, "type the instruction (Enter = set, Esc = cancel): " + s.typing + "_", curses.A_BOLD)
        put(7, 0, "keys", curses.A_UNDERLINE)
        for i, line in enumerate(help_lines(s.keys)):
            put(8 + i, 2, line)
        if self.preview:
            cam = s.robot.camera_names[0]
            put(7, HELP_WIDTH, f"{cam} camera", curses.A_UNDERLINE)
            self._preview(s.obs["pixels"][cam], top=8, left=HELP_WIDTH, h=h, w=w)
        scr.refresh()

    def _preview(self, img: np.ndarray, top: int, left: int, h: int, w: int) -> None:
        import cv2

        cols = min(w - left - 1, 64)
        rows = min(h - top - 1, cols // 2)  # terminal cells are about twice as tall as wide
        if cols < 8 or rows < 4:
            return
        small = cv2.resize(img, (cols, rows), interpolation=cv2.INTER_AREA).astype(np.int32)
        for y in range(rows):
            for x in range(cols):
                r, g, b = small[y, x]
                if self.mode == "256":
                    idx = 36 * CUBE_LEVEL[r] + 6 * CUBE_LEVEL[g] + CUBE_LEVEL[b]
                    _put(self.scr, top + y, left + x, " ", curses.color_pair(idx + 1), h, w)
                else:
                    ch = RAMP[min(len(RAMP) - 1, (r * 299 + g * 587 + b * 114) * len(RAMP) // 256_000)]
                    attr = curses.color_pair(_nearest8(r, g, b) + 1) if self.mode == "8" else 0
                    _put(self.scr, top + y, left + x, ch, attr, h, w)


def _nearest8(r: int, g: int, b: int) -> int:
    """curses colour index (black, red, green, yellow, blue, magenta, cyan, white) of an RGB pixel."""
    m = max(r, g, b)
    if m < 60:
        return 0
    bits = [c > m * 0.6 for c in (r, g, b)]
    return int(bits[0]) + 2 * int(bits[1]) + 4 * int(bits[2])


def _put(scr: Any, y: int, x: int, text: str, attr: int, h: int, w: int) -> None:
    if 0 <= y < h and 0 <= x < w:
        with _suppress_curses():  # writing the bottom-right cell raises; the text is drawn anyway
            scr.addnstr(y, x, text, w - x - 1 if y == h - 1 else w - x, attr)


class _suppress_curses:
    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, *_: Any) -> bool:
        return kind is not None and issubclass(kind, curses.error)


# ── the command ────────────────────────────────────────────────────────────────────────────


def run_ui(stdscr: Any, session: Session, title: str, preview: bool) -> None:
    curses.raw()  # Ctrl-C arrives as a key (save and quit), not as a signal mid-write
    curses.noecho()
    with _suppress_curses():
        curses.curs_set(0)
    stdscr.nodelay(True)
    stdscr.keypad(True)
    screen = Screen(stdscr, preview)
    period = 1.0 / session.fps
    next_tick = time.monotonic()
    while not session.quit:
        pressed = []
        while (key := stdscr.getch()) != -1:
            pressed.append(key)
        session.tick(pressed)
        screen.draw(session, title)
        next_tick += period
        time.sleep(max(0.0, next_tick - time.monotonic()))
        next_tick = max(next_tick, time.monotonic() - period)  # don't race to catch up after a stall


def _fingerprint(repo_id: str, env_cfg: dict, fps: float, features: dict) -> dict:
    env = {k: v for k, v in env_cfg.items() if k not in ("tasks", "max_episode_steps")}
    return {
        "repo_id": repo_id, "env": env_cfg["suite"], "env_config": env, "fps": int(fps),
        "robot_type": f"vla_{env_cfg['suite']}", "source": "teleop",
        "features": {k: {"dtype": v["dtype"], "shape": list(v["shape"])} for k, v in features.items()},
    }


def main(cfg: DictConfig) -> None:
    """Hydra entry point (`vla teleop ...`)."""
    from hydra.core.hydra_config import HydraConfig

    run_dir = Path(HydraConfig.get().runtime.output_dir) if HydraConfig.initialized() else Path("outputs/teleop")
    teleop(cfg, run_dir)


def _env_config(cfg: DictConfig) -> tuple[DictConfig, str]:
    """The env config for this session (split / horizon applied) and the validated task."""
    from sim.factory import SUITES, task_names

    env_cfg = OmegaConf.create(OmegaConf.to_container(cfg.env, resolve=True))
    suite = env_cfg.get("suite")
    if suite not in SUITES:
        raise ValueError(f"env.suite '{suite}' is not a known suite. Valid suites: {', '.join(SUITES)}")
    if cfg.get("split") is not None and "split" in env_cfg:
        env_cfg.split = cfg.split
    env_cfg.max_episode_steps = int(cfg.max_episode_steps)
    env_cfg.tasks = "all"
    available = task_names(env_cfg)
    task = str(cfg.task) if cfg.get("task") is not None else available[0]
    if task not in available:
        raise ValueError(f"unknown task '{task}'. Valid tasks for {suite}: {', '.join(available)}")
    return env_cfg, task


def teleop(cfg: DictConfig, run_dir: Path) -> Path | None:
    """Run a session (see the module docstring); returns the dataset root, None if nothing was saved."""
    import sim  # noqa: F401  (gym ids)
    from sim.dataset import DatasetStore, dataset_features
    from sim.factory import make_env

    if not sys.stdin.isatty() or not sys.stdout.isatty():
        raise RuntimeError("vla teleop needs an interactive terminal (run it in a shell, tmux or `ssh -t`)")
    env_cfg, task = _env_config(cfg)
    suite = str(env_cfg.suite)
    logging.getLogger("OpenGL").setLevel(logging.WARNING)  # its INFO line would scroll past the UI
    env = make_env(env_cfg, task, cameras=True)
    # One frame = one env step, whatever the UI's pace: the dataset's fps is the env's control rate.
    fps = float(env_cfg.get("fps") or env.metadata.get("render_fps", 20))
    root = Path(cfg.root or f"outputs/datasets/teleop_{suite}").absolute()
    repo_id = str(cfg.repo_id or f"local/vla_teleop_{suite}")
    from policies.embodiment import env_embodiment

    robot = env_embodiment(env)
    features = dataset_features(robot)
    fingerprint = _fingerprint(repo_id, OmegaConf.to_container(env_cfg), fps, features)
    store = DatasetStore(root, repo_id, int(round(fps)), features, fingerprint, embodiment=robot.to_dict())
    run_dir.mkdir(parents=True, exist_ok=True)
    with store, _quiet_terminal(run_dir / "teleop_stderr.log"):
        recorder = Recorder(store, task)
        try:
            session = Session(cfg, env_cfg, env, recorder, task, float(cfg.hz or fps))
            _run_session(session, f"vla teleop  {suite} / {task}  -> {root}", bool(cfg.preview))
        finally:
            recorder.close()  # waits for the commits, also when the UI failed
            env.close()
        if cfg.compact and store.exists():
            _say("finishing: compacting the dataset files ...")
            store.compact()
    return _report(store, recorder, root, repo_id)


def _run_session(session: Session, title: str, preview: bool) -> None:
    """The curses loop, with SIGHUP (ssh dropped) / SIGTERM treated like Esc: save and quit."""
    signals = (signal.SIGHUP, signal.SIGTERM)
    previous = {s: signal.signal(s, lambda *_: setattr(session, "signalled", True)) for s in signals}
    os.environ.setdefault("ESCDELAY", "25")  # a lone Esc quits after 25 ms, not curses' default 1 s
    try:
        curses.wrapper(run_ui, session, title, preview)
    finally:
        if session.buffer is not None:  # the UI died mid-episode: keep what was recorded
            session.stop(save=True)
        for s, handler in previous.items():
            signal.signal(s, handler)
        _say(f"finishing: committing {session.recorder.committing} episode(s) ...")


def _say(text: str) -> None:
    """Print, unless the terminal is gone (ssh dropped): the work goes on without it."""
    try:
        print(text, flush=True)
    except OSError:
        pass


def _report(store: Any, recorder: Recorder, root: Path, repo_id: str) -> Path | None:
    if recorder.error:
        print(f"ERROR: {recorder.error}")
    if not store.exists():
        print("no episodes recorded; nothing was written")
        return None
    ledger = store.ledger()
    print(f"dataset:  {root}  ({len(ledger)} episodes, {sum(a.length for a in ledger)} frames)")
    for a in ledger[-5:]:
        print(f"  episode {a.dataset_episode}: {a.task} #{a.episode}, {a.length} frames, success={a.success}: {a.instruction!r}")
    print(f"open with LeRobotDataset('{repo_id}', root='{root}')")
    return root


class _quiet_terminal:
    """While curses owns the screen: stderr (lerobot/ffmpeg chatter) to a file, no console log handlers."""

    def __init__(self, log_path: Path):
        self.log_path = log_path

    def __enter__(self) -> None:
        sys.stderr.flush()
        self._fd = os.dup(2)
        self._log = open(self.log_path, "ab")
        os.dup2(self._log.fileno(), 2)
        root = logging.getLogger()
        self._handlers = [h for h in root.handlers if type(h) is logging.StreamHandler]
        for h in self._handlers:
            root.removeHandler(h)
        logging.getLogger("lerobot").setLevel(logging.WARNING)

    def __exit__(self, *exc: Any) -> None:
        sys.stderr.flush()
        os.dup2(self._fd, 2)
        os.close(self._fd)
        self._log.close()
        for h in self._handlers:
            logging.getLogger().addHandler(h)
