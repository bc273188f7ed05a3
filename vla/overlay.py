"""Keep/merge overlays: which image patches a compressor kept, drawn over the camera image.

    masks = policy.infer(obs)["compression"]["kept"]         # per camera: [B, N] bool or [B, N, M] float
    frame = draw_overlay(image_uint8_hw3, masks[key][0], grid=(16, 16))

How each patch (one cell of the camera's h x w token grid, scaled to the image) is drawn:
* **kept** (``kept[n]`` True, or a patch that is its own output token): original pixels, untouched;
* **dropped** (``kept[n]`` False): darkened towards ``DROP_COLOR`` (``DROP_ALPHA`` of the colour);
* **merged** (hard-membership ``[N, M]``: pool / ToMe / VisionZip contexts, 2+ patches -> one
  token): tinted with a colour per output token (``MERGE_ALPHA``), so each merged group shows;
* **soft** (attention weights ``[N, M]``: STC / SRC): the patch's total attention mass, relative to
  the most attended patch, sets its brightness (faint = barely used), plus the tint of the output
  token it feeds most.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

DROP_COLOR = np.array([16.0, 16.0, 40.0])  # near-black blue
DROP_ALPHA = 0.75
MERGE_ALPHA = 0.35


def _numpy(kept: Any) -> np.ndarray:
    if hasattr(kept, "detach"):
        kept = kept.detach().float().cpu().numpy()
    return np.asarray(kept, dtype=np.float32)


def _palette(n: int) -> np.ndarray:
    """n saturated RGB colours with evenly spaced hues in a fixed shuffled order, so neighbouring
    output tokens (window m, m+1, m+row) rarely get similar colours."""
    hues = np.random.default_rng(0).permutation(n) / max(n, 1)
    hsv = np.stack([hues * 179, np.full(n, 200), np.full(n, 255)], axis=-1).astype(np.uint8)[None]
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0].astype(np.float32)


def patch_layers(kept: Any, grid: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(keep [h, w] in [0, 1], tint [h, w, 3] RGB, tint_alpha [h, w]) for one camera's ``kept``."""
    h, w = grid
    k = _numpy(kept)
    n = h * w
    if k.shape[0] != n:
        raise ValueError(f"kept has {k.shape[0]} patches but the grid {h}x{w} has {n}")
    tint = np.zeros((n, 3), np.float32)
    alpha = np.zeros(n, np.float32)
    if k.ndim == 1:  # [N] bool: kept or dropped
        keep = (k > 0.5).astype(np.float32)
    elif k.ndim == 2:  # [N, M] assignment
        group = k.argmax(axis=1)
        sizes = np.bincount(group, minlength=k.shape[1])
        merged = sizes[group] > 1
        colors = _palette(k.shape[1])
        tint[merged] = colors[group[merged]]
        alpha[merged] = MERGE_ALPHA
        hard = np.all((k == 0) | (k == 1)) and np.allclose(k.sum(1), 1)
        if hard:
            keep = np.ones(n, np.float32)
        else:
            mass = k.sum(1)
            keep = np.clip(mass / max(float(mass.max()), 1e-12), 0.0, 1.0)
    else:
        raise ValueError(f"kept must be [N] or [N, M], got shape {k.shape}")
    return keep.reshape(h, w), tint.reshape(h, w, 3), alpha.reshape(h, w)


def draw_overlay(image: np.ndarray, kept: Any, grid: tuple[int, int]) -> np.ndarray:
    """The camera image (uint8 [H, W, 3]) with the keep/merge overlay of one camera's ``kept``."""
    img = np.asarray(image)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"image must be uint8 [H, W, 3], got {img.dtype} {img.shape}")
    height, width = img.shape[:2]
    keep, tint, alpha = patch_layers(kept, grid)

    def up(a: np.ndarray) -> np.ndarray:  # patch grid -> pixels (nearest: hard patch borders)
        return cv2.resize(a, (width, height), interpolation=cv2.INTER_NEAREST)

    keep_px = up(keep)[..., None]
    alpha_px = up(alpha)[..., None]
    tint_px = up(tint)
    out = img.astype(np.float32)
    out = alpha_px * tint_px + (1.0 - alpha_px) * out  # merged groups
    drop = DROP_ALPHA * (1.0 - keep_px)
    out = drop * DROP_COLOR + (1.0 - drop) * out  # dropped / faint patches
    out = np.where((keep_px >= 1.0) & (alpha_px == 0.0), img.astype(np.float32), out)  # kept: exact pixels
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def overlay_frame(images: dict[str, np.ndarray], kept: dict[str, Any], grid: tuple[int, int], text: str = "",
                  footer: str = "", scale: int = 2) -> np.ndarray:
    """All cameras with their overlays side by side (``sim.video.compose_frame``), cameras without a
    mask drawn plain. ``kept`` keys may be full feature keys (``observation.images.<cam>``) or camera names."""
    from sim.video import compose_frame

    by_cam = {key.removeprefix("observation.images."): value for key, value in kept.items()}
    tiles = {cam: draw_overlay(img, by_cam[cam], grid) if cam in by_cam else img for cam, img in images.items()}
    return compose_frame(tiles, text, scale=scale, footer=footer)
