"""Rollout videos: both cameras side by side with the instruction drawn above them, as MP4.

    frames = {"agentview": uint8 [T, H, W, 3], "wrist": uint8 [T, H, W, 3]}
    write_rollout_video("out.mp4", frames, "put the red cube on the blue plate", fps=20)

Used by ``vla collect`` (one sample demo per task) and usable by any evaluator that has per-camera
frame stacks. Frames are upscaled with nearest-neighbour (``scale``) because 128x128 sim cameras
are too small to judge a grasp by eye, and the text would not fit otherwise.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

FONT = cv2.FONT_HERSHEY_SIMPLEX
FONT_SCALE = 0.5
LINE_HEIGHT = 18
MARGIN = 6
TEXT_COLOR = (255, 255, 255)
BANNER_COLOR = (32, 32, 32)


def wrap_text(text: str, width_px: int, font_scale: float = FONT_SCALE) -> list[str]:
    """Greedy word wrap so every line fits in ``width_px`` pixels when drawn with cv2."""
    lines: list[str] = []
    current = ""
    for word in text.split():
        candidate = f"{current} {word}".strip()
        (w, _), _ = cv2.getTextSize(candidate, FONT, font_scale, 1)
        if w <= width_px or not current:
            current = candidate
        else:
            lines.append(current)
            current = word
    if current:
        lines.append(current)
    return lines or [""]


def compose_frame(
    images: Mapping[str, np.ndarray], text: str = "", scale: int = 2, footer: str = ""
) -> np.ndarray:
    """One video frame: cameras side by side (in mapping order), ``text`` in a banner above.

    ``footer`` (e.g. "step 12") is drawn in the banner's last line. Cameras of different heights
    are padded to the tallest one. Returns uint8 [H', W', 3] with even dimensions (H.264 needs them).
    """
    if not images:
        raise ValueError("compose_frame needs at least one camera image")
    tiles = []
    for name, img in images.items():
        arr = np.asarray(img)
        if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
            raise ValueError(f"camera '{name}': expected uint8 [H, W, 3], got {arr.dtype} {arr.shape}")
        if scale != 1:
            arr = cv2.resize(arr, (arr.shape[1] * scale, arr.shape[0] * scale), interpolation=cv2.INTER_NEAREST)
        tiles.append(arr)
    height = max(t.shape[0] for t in tiles)
    tiles = [np.pad(t, ((0, height - t.shape[0]), (0, 0), (0, 0))) for t in tiles]
    body = np.concatenate(tiles, axis=1)

    width = body.shape[1] - 2 * MARGIN
    lines = (wrap_text(text, width) if text else []) + (wrap_text(footer, width) if footer else [])
    banner_h = MARGIN + LINE_HEIGHT * len(lines) + MARGIN // 2
    banner = np.full((banner_h + banner_h % 2, body.shape[1], 3), BANNER_COLOR, np.uint8)
    for i, line in enumerate(lines):
        y = MARGIN + LINE_HEIGHT * (i + 1) - 5
        cv2.putText(banner, line, (MARGIN, y), FONT, FONT_SCALE, TEXT_COLOR, 1, cv2.LINE_AA)
    frame = np.concatenate([banner, body], axis=0) if lines else body
    # H.264 with yuv420p needs even sizes; pad by one row/column instead of resizing.
    return np.pad(frame, ((0, frame.shape[0] % 2), (0, frame.shape[1] % 2), (0, 0)))


def write_mp4(path: str | Path, frames: Iterable[np.ndarray], fps: float) -> Path:
    """Encode uint8 RGB frames to an H.264 MP4 in-process (PyAV), atomically (tmp + os.replace).

    H.264/yuv420p plays everywhere (browsers, VS Code, GitHub), unlike the dataset's AV1 files.
    """
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}.mp4")
    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    n = 0
    with av.open(str(tmp), mode="w") as container:
        stream = None
        for frame in frames:
            if stream is None:
                stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1000))
                stream.height, stream.width = frame.shape[:2]
                stream.pix_fmt = "yuv420p"
                stream.options = {"crf": "23", "preset": "veryfast"} if codec == "libx264" else {}
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
                container.mux(packet)
            n += 1
        if stream is not None:
            for packet in stream.encode():
                container.mux(packet)
    if n == 0:
        tmp.unlink(missing_ok=True)
        raise ValueError(f"no frames to write to {path}")
    os.replace(tmp, path)
    return path


def write_rollout_video(
    path: str | Path,
    frames: Mapping[str, np.ndarray],
    instruction: str,
    fps: float,
    label: str = "",
    scale: int = 2,
) -> Path:
    """Write per-camera frame stacks (uint8 [T, H, W, 3] each) as one side-by-side MP4.

    Every frame carries the instruction; the footer shows ``label`` and the step counter.
    """
    lengths = {name: len(v) for name, v in frames.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"cameras have different frame counts: {lengths}")
    n = next(iter(lengths.values()))
    prefix = f"{label}  " if label else ""
    composed = (
        compose_frame({name: v[t] for name, v in frames.items()}, instruction, scale, f"{prefix}step {t + 1}/{n}")
        for t in range(n)
    )
    return write_mp4(path, composed, fps)
