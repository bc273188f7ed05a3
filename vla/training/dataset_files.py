"""Finding a training dataset and checking its files, without importing torch or lerobot's dataset
code: `vla train dataset=<typo>` answers in about a second instead of after ~10 s of imports.
``vla.training.data`` re-exports these and reads the metadata itself (``load_metadata``)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

EXPECTED = "a LeRobot v3.0 dataset folder (meta/info.json, meta/episodes/, data/)"


class DatasetError(ValueError):
    """The dataset is missing, is not a LeRobot v3.0 dataset, or does not fit the policy."""


@dataclass(frozen=True)
class DatasetSource:
    root: Path
    repo_id: str


def lerobot_home() -> Path:
    """``lerobot.utils.constants.HF_LEROBOT_HOME``, computed the same way (importing lerobot.utils
    imports torch)."""
    from huggingface_hub.constants import HF_HOME

    return Path(os.getenv("HF_LEROBOT_HOME", Path(HF_HOME) / "lerobot")).expanduser()


def resolve_dataset(spec: str | Path) -> DatasetSource:
    """A local dataset root, or a ``<user>/<name>`` repo_id already in ``$HF_LEROBOT_HOME`` (no download)."""
    if spec is None or str(spec).strip() in ("", "???"):
        raise DatasetError(f"dataset= is required: the root folder of {EXPECTED}, or a repo_id in the local cache")
    path = Path(str(spec)).expanduser()
    if path.exists():
        root = path.resolve()
        return DatasetSource(root, f"local/{root.name}")
    cached = lerobot_home() / str(spec)
    if cached.exists():
        return DatasetSource(cached, str(spec))
    raise DatasetError(
        f"dataset '{spec}' not found: no folder at '{path.resolve()}' and no cached repo at '{cached}'. "
        f"Expected {EXPECTED}. Nothing is downloaded (HF_HUB_OFFLINE): record one with `vla collect`."
    )


def read_info(source: DatasetSource) -> dict[str, Any]:
    """``meta/info.json`` of a LeRobot v3.x dataset; ``DatasetError`` naming the path if it is not one."""
    info_file = source.root / "meta" / "info.json"
    if not source.root.is_dir():
        raise DatasetError(f"dataset path '{source.root}' is not a directory; expected {EXPECTED}")
    if not info_file.is_file():
        raise DatasetError(f"'{source.root}' is not a LeRobot dataset: '{info_file}' is missing; expected {EXPECTED}")
    try:
        info = json.loads(info_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DatasetError(f"'{info_file}' is not valid JSON ({e}); expected {EXPECTED}") from e
    if not isinstance(info, dict):
        raise DatasetError(f"'{info_file}' is not a JSON object; expected {EXPECTED}")
    version = str(info.get("codebase_version", "?"))
    if not version.startswith("v3"):
        raise DatasetError(
            f"dataset '{source.root}' has codebase_version {version}; expected v3.x (convert it with "
            "lerobot.scripts.convert_dataset_v21_to_v30)"
        )
    return info
