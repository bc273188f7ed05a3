"""Registers `--env.type=vla_tabletop` with lerobot (see sim/lerobot_env.py)."""

from sim.lerobot_env import VLATabletopEnvConfig

__all__ = ["VLATabletopEnvConfig"]
