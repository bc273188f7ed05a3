"""Simulation suites as gymnasium envs, scripted experts and dataset recording.

Importing ``sim`` registers the gym IDs; the simulators themselves load lazily on ``gym.make``.
    vla/Tabletop-v0   fast built-in MuJoCo tabletop suite       (sim.tabletop)
    vla/Libero-v0     LIBERO suites through hf-libero           (sim.libero)
    vla/Aloha-v0      lerobot's ALOHA sim (gym-aloha), 14 joints (sim.aloha)
    vla/MetaWorld-v0  lerobot's Meta-World (metaworld 3.0, MT50) (sim.metaworld)
"""

import gymnasium as gym

TABLETOP_ID = "vla/Tabletop-v0"
LIBERO_ID = "vla/Libero-v0"
ALOHA_ID = "vla/Aloha-v0"
METAWORLD_ID = "vla/MetaWorld-v0"

if TABLETOP_ID not in gym.registry:
    gym.register(TABLETOP_ID, entry_point="sim.tabletop.env:TabletopEnv")
if LIBERO_ID not in gym.registry:
    gym.register(LIBERO_ID, entry_point="sim.libero.env:LiberoEnv")
if ALOHA_ID not in gym.registry:
    gym.register(ALOHA_ID, entry_point="sim.aloha.env:AlohaEnv")
if METAWORLD_ID not in gym.registry:
    gym.register(METAWORLD_ID, entry_point="sim.metaworld.env:MetaWorldEnv")
