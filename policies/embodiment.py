"""One description of a robot, read by every layer: cameras, state, action (kind, limits, grippers).

An :class:`Embodiment` comes from an env's gymnasium spaces (:meth:`Embodiment.from_spaces`) or a
LeRobot dataset's ``meta.features`` (:meth:`Embodiment.from_features`), is saved in every checkpoint
(``VLAConfig.embodiment``), and is what the runtime checks a policy's actions against
(:meth:`Embodiment.check_actions`), what the dataset writer declares and what the ROS node maps its
topics to. No layer outside a suite's own robot definition hard-codes a camera name or a dimension.

Conventions (lerobot's): camera ``name`` -> batch key ``observation.images.<name>``; state
``observation.state`` [state_dim]; action ``action`` [action_dim]. Images are HxWx3 uint8 in envs
and datasets, 3xHxW float in [0, 1] in batches.

Action kinds:
    delta_eef        end-effector deltas (position[, rotation]) + gripper, normalised to [-1, 1]
                     (LIBERO / robosuite OSC_POSE; the tabletop suite; Meta-World's 4-D hand delta)
    joint_position   absolute joint targets in the joints' units (rad, or deg for SO-100 data)
    joint_delta      joint increments
    eef_position     absolute end-effector targets
    other            anything else (no kind-specific behaviour)

Limits are per action dimension, in the action's own units: the runtime clips a chunk into the
limits of the robot the policy was trained for (never into a range that means something else for
that robot, like [-1, 1] for a joint in radians); the ROS safety filter clips into them and logs it.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

ACTION_KINDS = ("delta_eef", "joint_position", "joint_delta", "eef_position", "other")
IMAGE_PREFIX = "observation.images."
STATE_KEY = "observation.state"
ACTION_KEY = "action"


class EmbodimentError(ValueError):
    """An embodiment that is malformed, or data/actions that do not fit one (every field named)."""


@dataclass(frozen=True)
class Camera:
    name: str
    height: int
    width: int

    @property
    def key(self) -> str:
        return IMAGE_PREFIX + self.name


@dataclass(frozen=True)
class Embodiment:
    cameras: tuple[Camera, ...]
    state_dim: int
    action_dim: int
    action_kind: str = "other"
    action_low: tuple[float, ...] = ()  # () = unbounded (then only finiteness is checked)
    action_high: tuple[float, ...] = ()
    state_names: tuple[str, ...] = ()
    action_names: tuple[str, ...] = ()
    gripper_dims: tuple[int, ...] = ()  # action dims that command a gripper
    # State channels that hold the end-effector position in metres (x, y, z), when the state has one;
    # what the keypose auxiliary loss reads. () = no such channels (the loss refuses to train).
    eef_position_dims: tuple[int, ...] = ()
    fps: float | None = None
    name: str = ""
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        problems = []
        if not self.cameras:
            problems.append("no camera")
        names = [c.name for c in self.cameras]
        if len(set(names)) != len(names):
            problems.append(f"camera names repeat: {names}")
        for c in self.cameras:
            if not c.name or "." in c.name or "/" in c.name:
                problems.append(f"camera name {c.name!r} must be a non-empty word (no '.' or '/')")
            if c.height < 1 or c.width < 1:
                problems.append(f"camera {c.name!r} size {c.height}x{c.width} must be positive")
        if self.state_dim < 0 or self.action_dim < 1:
            problems.append(f"state_dim {self.state_dim} must be >= 0 and action_dim {self.action_dim} >= 1")
        if self.action_kind not in ACTION_KINDS:
            problems.append(f"action_kind {self.action_kind!r} is not one of {', '.join(ACTION_KINDS)}")
        for what, values, n in (("action_low", self.action_low, self.action_dim),
                                ("action_high", self.action_high, self.action_dim),
                                ("state_names", self.state_names, self.state_dim),
                                ("action_names", self.action_names, self.action_dim)):
            if values and len(values) != n:
                problems.append(f"{what} has {len(values)} entries, expected {n}")
        if bool(self.action_low) != bool(self.action_high):
            problems.append("action_low and action_high must be given together")
        if self.action_low and not all(lo < hi for lo, hi in zip(self.action_low, self.action_high)):
            problems.append(f"action_low {list(self.action_low)} must be below action_high {list(self.action_high)}")
        if self.action_low and not all(map(math.isfinite, (*self.action_low, *self.action_high))):
            problems.append("action limits must be finite")
        for what, dims, n in (("gripper_dims", self.gripper_dims, self.action_dim),
                              ("eef_position_dims", self.eef_position_dims, self.state_dim)):
            if any(not 0 <= d < n for d in dims):
                problems.append(f"{what} {list(dims)} out of range 0..{n - 1}")
        if self.eef_position_dims and len(self.eef_position_dims) != 3:
            problems.append(f"eef_position_dims must name 3 state channels (x, y, z), got {list(self.eef_position_dims)}")
        if problems:
            raise EmbodimentError("invalid embodiment: " + "; ".join(problems))

    # --- views -----------------------------------------------------------------------------------
    @property
    def camera_names(self) -> list[str]:
        return [c.name for c in self.cameras]

    @property
    def camera_keys(self) -> list[str]:
        return [c.key for c in self.cameras]

    @property
    def limits(self) -> tuple[np.ndarray, np.ndarray] | None:
        if not self.action_low:
            return None
        return np.asarray(self.action_low, np.float64), np.asarray(self.action_high, np.float64)

    def describe(self) -> str:
        cams = ", ".join(f"{c.name} {c.height}x{c.width}" for c in self.cameras)
        return (f"{self.name or 'robot'}: cameras [{cams}], state {self.state_dim}, "
                f"action {self.action_dim} ({self.action_kind})")

    # --- (de)serialisation (config.json, dataset info) -------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["cameras"] = [asdict(c) for c in self.cameras]
        for key in ("action_low", "action_high", "state_names", "action_names", "gripper_dims", "eef_position_dims"):
            d[key] = list(d[key])
        return json.loads(json.dumps(d))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Embodiment":
        d = dict(d)
        unknown = set(d) - {f for f in cls.__dataclass_fields__}
        if unknown:
            raise EmbodimentError(f"unknown embodiment fields {sorted(unknown)}")
        try:
            d["cameras"] = tuple(Camera(str(c["name"]), int(c["height"]), int(c["width"])) for c in d["cameras"])
            d["state_dim"], d["action_dim"] = int(d["state_dim"]), int(d["action_dim"])
        except (KeyError, TypeError, ValueError) as e:
            raise EmbodimentError(f"malformed embodiment {d!r}: {e}") from e
        for key in ("action_low", "action_high"):
            d[key] = tuple(float(v) for v in d.get(key) or ())
        for key in ("state_names", "action_names"):
            d[key] = tuple(str(v) for v in d.get(key) or ())
        for key in ("gripper_dims", "eef_position_dims"):
            d[key] = tuple(int(v) for v in d.get(key) or ())
        return cls(**d)

    @classmethod
    def from_spaces(cls, observation_space: Any, action_space: Any, *, action_kind: str = "other",
                    gripper_dims: tuple[int, ...] = (), eef_position_dims: tuple[int, ...] = (),
                    state_names: tuple[str, ...] = (), action_names: tuple[str, ...] = (),
                    fps: float | None = None, name: str = "") -> "Embodiment":
        """From a gymnasium env in lerobot's format: ``{"pixels": {cam: Box[H,W,3]}, "agent_pos": Box[S]}``
        (a single ``"pixels"`` Box is one camera named ``top``, as gym-aloha's); action Box [A]
        whose finite bounds become the limits."""
        pixels = observation_space["pixels"]
        if hasattr(pixels, "spaces"):
            cams = tuple(Camera(n, int(s.shape[0]), int(s.shape[1])) for n, s in pixels.spaces.items())
        else:
            cams = (Camera("top", int(pixels.shape[0]), int(pixels.shape[1])),)
        state_dim = int(observation_space["agent_pos"].shape[0]) if "agent_pos" in observation_space.spaces else 0
        low, high = np.asarray(action_space.low, np.float64), np.asarray(action_space.high, np.float64)
        bounded = bool(np.all(np.isfinite(low)) and np.all(np.isfinite(high)))
        return cls(cams, state_dim, int(action_space.shape[0]), action_kind,
                   tuple(low.tolist()) if bounded else (), tuple(high.tolist()) if bounded else (),
                   tuple(state_names), tuple(action_names), tuple(gripper_dims), tuple(eef_position_dims), fps, name)

    @classmethod
    def from_features(cls, features: dict[str, Any], stats: dict[str, Any] | None = None, *,
                      fps: float | None = None, action_kind: str | None = None, name: str = "",
                      limit_margin: float = 0.1) -> "Embodiment":
        """From a LeRobot dataset's ``meta.features`` (and ``meta.stats``).

        Cameras: every ``observation.images.*`` feature, in the dataset's order. ``action_kind``:
        given, or ``joint_position`` when every action name ends in ``.pos`` (lerobot's robot
        recordings, e.g. SO-100 ``shoulder_pan.pos``), else ``other``. Limits: the range the
        dataset's actions cover (``stats['action']`` min/max) widened by ``limit_margin`` of that
        range on each side: a policy trained on these demos has no business leaving it.
        """
        cams = []
        for key, ft in features.items():
            if not key.startswith(IMAGE_PREFIX):
                continue
            shape, names = list(ft["shape"]), list(ft.get("names") or [])
            if names[:1] == ["channels"] or (len(shape) == 3 and shape[0] == 3 and shape[2] != 3):
                c, h, w = shape
            else:
                h, w, c = shape
            cams.append(Camera(key[len(IMAGE_PREFIX):], int(h), int(w)))
        if ACTION_KEY not in features:
            raise EmbodimentError(f"the dataset has no '{ACTION_KEY}' feature (features: {sorted(features)})")
        action_dim = int(np.prod(features[ACTION_KEY]["shape"]))
        state_dim = int(np.prod(features[STATE_KEY]["shape"])) if STATE_KEY in features else 0
        action_names = _names(features[ACTION_KEY], action_dim)
        state_names = _names(features.get(STATE_KEY, {}), state_dim)
        if action_kind is None:
            action_kind = "joint_position" if action_names and all(n.endswith(".pos") for n in action_names) else "other"
        low = high = ()
        a = (stats or {}).get(ACTION_KEY) or {}
        if "min" in a and "max" in a:
            lo, hi = (np.asarray(a[k], np.float64).reshape(-1) for k in ("min", "max"))
            pad = np.maximum((hi - lo) * limit_margin, 1e-6)
            low, high = tuple((lo - pad).tolist()), tuple((hi + pad).tolist())
        grippers = tuple(i for i, n in enumerate(action_names) if "gripper" in n.lower())
        return cls(tuple(cams), state_dim, action_dim, action_kind, low, high, state_names, action_names,
                   grippers, (), fps, name)

    # --- checks ------------------------------------------------------------------------------------
    def differences(self, other: "Embodiment") -> list[str]:
        """One line per field in which ``other`` (an env, a dataset) does not provide what this robot
        has: a camera it lacks (image sizes aside: the policy resizes), state/action dims, action kind
        (unless either kind is "other", i.e. not recorded: a lerobot ACT/Diffusion checkpoint stores
        only shapes, so its kind cannot be told apart from the env's)."""
        out = []
        missing = [c for c in self.camera_names if c not in other.camera_names]
        if missing:
            out.append(f"cameras: {missing} missing (has {other.camera_names})")
        for key in ("state_dim", "action_dim", "action_kind"):
            if key == "action_kind" and "other" in (self.action_kind, other.action_kind):
                continue
            if getattr(self, key) != getattr(other, key):
                out.append(f"{key}: {getattr(self, key)!r} != {getattr(other, key)!r}")
        return out

    def check_actions(self, actions: Any, who: str = "policy", clip: bool = True) -> np.ndarray:
        """``actions`` as float32 [H, action_dim] (a single [action_dim] action is [1, action_dim]).

        EmbodimentError naming what, when the shape is wrong or a value is non-finite (never
        clipped: a NaN sent to a robot is a crash at best). Values outside this robot's own limits
        are clipped into them (``clip``; the limits mean the same thing after clipping: the
        largest step / the joint's range) or, with ``clip=False``, an error naming step and dim.
        """
        arr = np.asarray(actions, dtype=np.float32)
        if arr.ndim == 1:
            arr = arr[None]
        if arr.ndim != 2 or arr.shape[0] < 1 or arr.shape[1] != self.action_dim:
            raise EmbodimentError(f"{who} returned actions of shape {tuple(arr.shape)}; expected "
                                  f"[H >= 1, {self.action_dim}] for {self.describe()}")
        bad = ~np.isfinite(arr)
        if bad.any():
            t, d = map(int, np.argwhere(bad)[0])
            raise EmbodimentError(f"{who} returned a non-finite action (step {t}, dim {self._dim(d)}): {arr[t].tolist()}")
        if self.limits is not None and clip:
            low, high = self.limits
            return np.clip(arr, low, high).astype(np.float32)
        if self.limits is not None:
            low, high = self.limits
            tol = 1e-5 * np.maximum(1.0, high - low)
            out = (arr < low - tol) | (arr > high + tol)
            if out.any():
                t, d = map(int, np.argwhere(out)[0])
                raise EmbodimentError(
                    f"{who} returned action {float(arr[t, d]):.4g} at step {t}, dim {self._dim(d)}, outside its "
                    f"limits [{low[d]:.4g}, {high[d]:.4g}] ({self.action_kind})")
        return arr

    def _dim(self, d: int) -> str:
        return f"{d} ({self.action_names[d]})" if self.action_names else str(d)

    def dataset_features(self) -> dict[str, dict]:
        """LeRobot ``features`` for a dataset recorded with this robot (images stored as video)."""
        feats: dict[str, dict] = {
            c.key: {"dtype": "video", "shape": (c.height, c.width, 3), "names": ["height", "width", "channels"]}
            for c in self.cameras
        }
        if self.state_dim:
            feats[STATE_KEY] = {"dtype": "float32", "shape": (self.state_dim,),
                                "names": list(self.state_names) or [f"state_{i}" for i in range(self.state_dim)]}
        feats[ACTION_KEY] = {"dtype": "float32", "shape": (self.action_dim,),
                             "names": list(self.action_names) or [f"action_{i}" for i in range(self.action_dim)]}
        return feats


def env_embodiment(env: Any) -> Embodiment:
    """The robot an env simulates: its own ``embodiment`` attribute (every vla suite defines one),
    else what its gymnasium spaces say (limits = the action Box)."""
    robot = getattr(getattr(env, "unwrapped", env), "embodiment", None)
    if robot is not None:
        return robot
    return Embodiment.from_spaces(env.observation_space, env.action_space)


def _names(feature: dict, n: int) -> tuple[str, ...]:
    names = feature.get("names")
    if isinstance(names, dict):  # older lerobot: {"motors": [...]}
        names = next(iter(names.values()), None)
    if isinstance(names, (list, tuple)) and len(names) == n and all(isinstance(x, str) for x in names):
        return tuple(names)
    return ()
