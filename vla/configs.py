"""Where the configs live, for every module that reads one (commands and libraries alike).

    CONFIG_DIR                    <repo>/configs (source tree / editable install)
    preset("accel", "fast")      configs/accel/fast.yaml as a dict; an unknown name lists the available ones

A library module reads presets through here, never through the CLI module (vla/cli.py), so that
importing it does not import the command layer.
"""

from __future__ import annotations

from pathlib import Path

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


def preset_path(group: str, name: str) -> Path:
    """``configs/<group>/<name>.yaml``; ValueError naming the available presets when it does not exist."""
    file = CONFIG_DIR / group / f"{name}.yaml"
    if not file.is_file():
        have = sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))
        raise ValueError(f"unknown {group} preset '{name}'; available: {', '.join(have)}")
    return file


def preset(group: str, name: str) -> dict:
    """The preset's YAML as a plain dict."""
    import yaml

    return yaml.safe_load(preset_path(group, name).read_text())
