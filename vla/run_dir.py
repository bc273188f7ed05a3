"""The Hydra run dir of a `vla` command: where it is, and that a failed start leaves none behind.

* ``hydra.run.dir`` (configs/hydra/default.yaml) is ``output_dir=`` for the commands that have one
  (`vla train`), else ``outputs/<command>/<time>/``: one folder per run, never both.
* Hydra creates that folder (``.hydra/`` config copies, ``<command>.log``) *before* the command
  runs, so every typo or bad value used to leave a near-empty folder. :class:`RunDirGuard` notes
  whether this run creates it; :func:`remove_if_unused` (called by vla/cli.py when the command
  fails) deletes it again, and the parents this run made, when it holds nothing but Hydra's files.
  A folder that existed before, or that the command wrote anything into, is never touched.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

HYDRA_SUBDIR = ".hydra"

# run dir (absolute) -> the topmost folder of it that did not exist when the run started
_CREATED: dict[str, Path] = {}


def first_set(*values: Any) -> Any:
    """``${vla.first_set:a,b}``: the first value that is not null or empty."""
    return next((v for v in values if v not in (None, "")), None)


OmegaConf.register_new_resolver("vla.first_set", first_set, replace=True)


class RunDirGuard(Callback):
    """Hydra callback (``hydra.callbacks``): records, before Hydra makes the run dir, which part of
    the path this run creates."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        from hydra.core.hydra_config import HydraConfig

        HydraConfig.instance().set_config(config)  # run.dir reads ${hydra:job.name}; run_job sets it again
        run_dir = Path(str(config.hydra.run.dir)).absolute()  # ${now:} is cached: the same path run_job makes
        top = None
        for folder in (run_dir, *run_dir.parents):
            if folder.exists():
                break
            top = folder
        if top is not None:
            _CREATED[str(run_dir)] = top


def remove_if_unused(run_dir: str | Path, job_name: str) -> bool:
    """Delete ``run_dir`` (and the parents this run created) if this run created it and it holds
    only Hydra's own files. Returns whether it was removed."""
    run_dir = Path(run_dir).absolute()
    top = _CREATED.pop(str(run_dir), None)
    if top is None or not run_dir.is_dir():
        return False
    if any(p.name not in (HYDRA_SUBDIR, f"{job_name}.log") for p in run_dir.iterdir()):
        return False
    shutil.rmtree(run_dir, ignore_errors=True)
    folder = run_dir.parent
    while folder != top.parent and folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()
        folder = folder.parent
    return True
