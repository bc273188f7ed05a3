"""Read-only geometry queries on a running LIBERO scene (for scripted experts and tests).

Everything is computed from the live MuJoCo model/data, so it follows objects as they move:
world-frame bounding boxes of an object's collision geoms, a goal region's box, the gripper pose.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import mujoco
import numpy as np

# Corners of the unit cube, used to transform a geom's local AABB into the world frame.
_CORNERS = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], dtype=np.float64)


@dataclass(frozen=True)
class Box:
    lo: np.ndarray  # world-frame min corner (3,)
    hi: np.ndarray  # world-frame max corner (3,)

    @property
    def center(self) -> np.ndarray:
        return (self.lo + self.hi) / 2

    @property
    def size(self) -> np.ndarray:
        return self.hi - self.lo


class Scene:
    """Geometry of one LIBERO problem env (``LiberoEnv.libero_env``)."""

    def __init__(self, libero_env: Any) -> None:
        self.env = libero_env
        self.model = libero_env.sim.model._model
        self.data = libero_env.sim.data._data
        self.robot = libero_env.robots[0]
        self._geoms: dict[str, np.ndarray] = {}

    # --- objects -------------------------------------------------------------------------------
    def body_id(self, name: str) -> int:
        """Root body of a movable object or fixture as LIBERO names it (e.g. "plate_1")."""
        if name in self.env.obj_body_id:
            return int(self.env.obj_body_id[name])
        obj = self.env.get_object(name)
        return mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_BODY, obj.root_body)

    def collision_geoms(self, name: str) -> np.ndarray:
        """Collision geoms of the object's whole body subtree (cached: the model never changes)."""
        if name not in self._geoms:
            root = self.body_id(name)
            in_tree = np.zeros(self.model.nbody, dtype=bool)
            for b in range(self.model.nbody):  # parents have lower ids than children in MuJoCo
                in_tree[b] = b == root or (b > root and in_tree[self.model.body_parentid[b]])
            collides = (self.model.geom_contype != 0) | (self.model.geom_conaffinity != 0)
            self._geoms[name] = np.flatnonzero(in_tree[self.model.geom_bodyid] & collides)
        return self._geoms[name]

    def box(self, name: str) -> Box:
        return self.geoms_box(self.collision_geoms(name))

    def geoms_box(self, geoms: np.ndarray) -> Box:
        pts = self.geom_corners(geoms).reshape(-1, 3)
        return Box(pts.min(axis=0), pts.max(axis=0))

    def geom_corners(self, geoms: np.ndarray) -> np.ndarray:
        """World-frame corners of each geom's local bounding box, [n_geoms, 8, 3]."""
        aabb = self.model.geom_aabb[geoms]  # local center (3) + half sizes (3)
        local = aabb[:, None, :3] + _CORNERS[None] * aabb[:, None, 3:]
        rot = self.data.geom_xmat[geoms].reshape(-1, 3, 3)
        return np.einsum("gij,gkj->gki", rot, local) + self.data.geom_xpos[geoms][:, None, :]

    def distance_to_geoms(self, points: np.ndarray, geoms: np.ndarray) -> np.ndarray:
        """For each point [n, 3], the distance to the nearest geom, each geom approximated by its
        local bounding box in its own (rotated) frame. Returns [n] (empty if no geoms)."""
        if len(geoms) == 0:
            return np.zeros(0)
        aabb = self.model.geom_aabb[geoms]
        rot = self.data.geom_xmat[geoms].reshape(-1, 3, 3)
        centre = self.data.geom_xpos[geoms] + np.einsum("gij,gj->gi", rot, aabb[:, :3])
        local = np.einsum("gji,gpj->gpi", rot, points[None] - centre[:, None])  # R^T (p - c)
        gap = np.maximum(np.abs(local) - aabb[:, None, 3:], 0.0)
        return np.linalg.norm(gap, axis=-1).min(axis=0)

    def geom_boxes(self, geoms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        corners = self.geom_corners(geoms)
        return corners.min(axis=1), corners.max(axis=1)

    def position(self, name: str) -> np.ndarray:
        return self.data.xpos[self.body_id(name)].copy()

    def obstacle_geoms(self, exclude: set[str]) -> np.ndarray:
        """Collision geoms of every object and fixture except ``exclude`` (and the robot/floor)."""
        names = [*self.env.objects_dict, *self.env.fixtures_dict]
        parts = [self.collision_geoms(n) for n in names if n not in exclude]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=int)

    # --- goal regions --------------------------------------------------------------------------
    def site_region(self, site: str) -> Box:
        """The box LIBERO's ``In``/``On`` predicates test a site against (SiteObject.in_box)."""
        obj = self.env.object_sites_dict[site]
        pos = self.env.sim.data.get_site_xpos(site)
        half = np.abs(self.env.sim.data.get_site_xmat(site) @ np.asarray(obj.size, dtype=np.float64))
        return Box(pos - half, pos + half)

    # --- robot ---------------------------------------------------------------------------------
    def eef_pos(self) -> np.ndarray:
        return self.data.site_xpos[self.robot.eef_site_id].copy()

    def eef_mat(self) -> np.ndarray:
        return self.data.site_xmat[self.robot.eef_site_id].reshape(3, 3).copy()

    def gripper_opening(self) -> float:
        """Distance between the finger joints (m): ~0.078 open, ~0 closed on nothing."""
        qpos = self.data.qpos[self.robot._ref_gripper_joint_pos_indexes]
        return float(qpos[0] - qpos[1])

    def gripper_touches(self, name: str) -> bool:
        """True if both finger pads touch the object (a real, two-sided grasp)."""
        geoms = set(self.collision_geoms(name).tolist())
        pads = self.robot.gripper.important_geoms
        touching = []
        for side in ("left_fingerpad", "right_fingerpad"):
            ids = {mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_GEOM, g) for g in pads[side]}
            touching.append(self._in_contact(ids, geoms))
        return all(touching)

    def _in_contact(self, geoms_a: set[int], geoms_b: set[int]) -> bool:
        for i in range(self.data.ncon):
            c = self.data.contact[i]
            if (c.geom1 in geoms_a and c.geom2 in geoms_b) or (c.geom2 in geoms_a and c.geom1 in geoms_b):
                return True
        return False
