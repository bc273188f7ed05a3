"""Keep/merge overlays (vla/overlay.py): kept patches keep their pixels, dropped ones are darkened,
merged groups are tinted one colour per output token."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vla.overlay import DROP_COLOR, draw_overlay, overlay_frame

GRID = (4, 4)  # 4x4 patches on a 32x32 image: 8x8 pixels per patch


def patch(img: np.ndarray, row: int, col: int) -> np.ndarray:
    return img[row * 8 : (row + 1) * 8, col * 8 : (col + 1) * 8]


@pytest.fixture
def image() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(120, 256, size=(32, 32, 3), dtype=np.uint8)  # bright, so darkening is visible


def test_bool_mask_marks_kept_and_dropped_patches(image):
    kept = torch.zeros(16, dtype=torch.bool)
    kept[[0, 5, 15]] = True  # patches (0,0), (1,1), (3,3)
    out = draw_overlay(image, kept, GRID)
    assert out.shape == image.shape and out.dtype == np.uint8
    for r, c in ((0, 0), (1, 1), (3, 3)):
        assert np.array_equal(patch(out, r, c), patch(image, r, c))  # kept: exact pixels
    for r, c in ((0, 1), (2, 2), (3, 0)):
        dropped, original = patch(out, r, c).astype(float), patch(image, r, c).astype(float)
        assert dropped.mean() < 0.5 * original.mean()  # darkened ...
        expected = 0.75 * DROP_COLOR + 0.25 * original  # ... towards the drop colour
        assert np.abs(dropped - expected).max() <= 1.0


def test_hard_merge_groups_are_tinted_per_output_token():
    flat = np.full((32, 32, 3), 128, np.uint8)
    kept = torch.zeros(16, 14)  # 16 patches -> 14 tokens (one-hot rows, as pool / ToMe store them)
    kept[[0, 1], 0] = 1.0  # patches 0 and 1 merged into token 0
    kept[[2, 3], 1] = 1.0  # patches 2 and 3 merged into token 1
    for i in range(4, 16):  # every other patch is its own token
        kept[i, i - 2] = 1.0
    out = draw_overlay(flat, kept, GRID)
    group0, group1 = patch(out, 0, 0), patch(out, 0, 2)
    assert np.array_equal(patch(out, 0, 1), group0)  # same token -> same colour
    assert not np.array_equal(group0, group1)  # different tokens -> different colours
    assert not np.array_equal(group0, patch(flat, 0, 0))  # tinted
    assert np.array_equal(patch(out, 2, 2), patch(flat, 2, 2))  # its own token: kept as is


def test_soft_attention_mass_sets_brightness(image):
    weights = torch.full((16, 2), 0.01)
    weights[0] = torch.tensor([0.9, 0.9])  # the most attended patch
    out = draw_overlay(image, weights, GRID).astype(float)
    assert patch(out, 0, 0).mean() > patch(out, 3, 3).mean() + 20  # barely used patches are faint


def test_overlay_frame_draws_every_camera_and_rejects_bad_input(image):
    kept = {"observation.images.agentview": torch.ones(16, dtype=torch.bool),
            "observation.images.wrist": torch.zeros(16, dtype=torch.bool)}
    frame = overlay_frame({"agentview": image, "wrist": image}, kept, GRID, text="put the cube", footer="x")
    assert frame.ndim == 3 and frame.shape[1] == 2 * 2 * 32  # both cameras side by side, upscaled x2
    with pytest.raises(ValueError, match="grid 4x4 has 16"):
        draw_overlay(image, torch.ones(9, dtype=torch.bool), GRID)
