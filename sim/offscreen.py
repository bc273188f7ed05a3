"""A small-frame MuJoCo camera renderer for the suites that render their own camera (ALOHA, Meta-World).

Shadows, reflections and multisampling are off: on llvmpipe (software GL) they cost most of a
frame (ALOHA's 4096 shadow map: 128 ms per 96x128 frame with them, 14 ms without; Meta-World's
corner2 at 128x128: 6 env steps/s with gymnasium's renderer, ~50 without; measured). The pictures
are the same scenes without shadows.
"""

from __future__ import annotations

import atexit
import contextlib
import weakref
from typing import Any


def open_renderer(owner: Any, model: Any, height: int, width: int) -> tuple[Any, weakref.finalize]:
    """A ``mujoco.Renderer`` freed when ``owner`` is garbage collected, on ``finalizer()``, or at exit
    *before* EGL is torn down (dm_control / mujoco register their EGL teardown with atexit on import,
    and atexit runs in reverse order: registering here, later, runs first)."""
    import mujoco

    model.vis.quality.offsamples = 0
    renderer = mujoco.Renderer(model, height, width)
    finalizer = weakref.finalize(owner, _close_quietly, renderer)
    atexit.register(finalizer)
    return renderer, finalizer


def render(renderer: Any, data: Any, camera: str):
    import mujoco

    renderer.update_scene(data, camera=camera)
    for flag in (mujoco.mjtRndFlag.mjRND_SHADOW, mujoco.mjtRndFlag.mjRND_REFLECTION):
        renderer.scene.flags[flag] = 0
    return renderer.render()


def _close_quietly(renderer: Any) -> None:
    try:
        renderer.close()
    except Exception:  # noqa: BLE001 - at exit, after another library terminated the EGL display
        # Nothing left to free; keep mujoco's __del__ from retrying and printing tracebacks.
        with contextlib.suppress(Exception):
            renderer._gl_context._context = None
        renderer._gl_context = renderer._mjr_context = None
