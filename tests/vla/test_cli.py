"""The `vla` command as a user meets it: dispatch, help and typo hints."""

import subprocess
import sys
import time

import pytest

from vla import cli


def run_vla(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vla.cli", *args], capture_output=True, text=True, timeout=120)


def test_help_lists_every_command():
    proc = run_vla("--help")
    assert proc.returncode == 0
    for name in [*cli.COMMANDS, *cli.BENCHES]:
        assert name in proc.stdout


def test_unknown_command_suggests_the_closest():
    proc = run_vla("colect")
    assert proc.returncode != 0
    assert "Did you mean 'collect'" in proc.stderr


def test_bench_subcommand_resolution():
    command, overrides = cli.resolve(["bench", "env-speed", "a=1"])
    assert command is cli.BENCHES["env-speed"] and overrides == ["a=1"]
    with pytest.raises(SystemExit, match="Did you mean 'env-speed'"):
        cli.resolve(["bench", "env-sped"])


def test_every_command_has_its_config_file():
    for command in [*cli.COMMANDS.values(), *cli.BENCHES.values()]:
        assert (cli.CONFIG_DIR / f"{command.config}.yaml").is_file(), command.config


# A typo or bad value must answer before torch/lerobot/MuJoCo load (they took 8-12 s here).
HEAVY = ("torch", "lerobot", "mujoco", "transformers")
BAD_INPUT = [
    (("train", "model=tinyy"), "Could not find 'model/tinyy'"),
    (("train", "dataset=/no/such/dataset", "output_dir=out"), "vla train: error: dataset '/no/such/dataset' not found"),
    (("train", "dataset=/no/such/dataset", "batch_size=abc"), "vla train: error: batch_size='abc' must be an integer"),
    (("eval", "checkpoint=expert", "episodes=abc"), "vla eval: error: episodes='abc' must be an integer"),
    (("eval", "checkpoint=expert", "env.image_size=0"), "vla eval: error: env.image_size=0 is out of range"),
    (("eval", "checkpoint=no/such/ckpt"), "vla eval: error: checkpoint folder not found: 'no/such/ckpt'"),
    (("collect", "episodes_per_task=abc"), "vla collect: error: episodes_per_task='abc' must be an integer"),
]


def _timed_vla(args: tuple[str, ...], cwd) -> tuple[float, subprocess.CompletedProcess, set[str]]:
    """(wall seconds, the process, top-level packages it imported) of `python -X importtime -m vla.cli ...`."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "vla.cli", *args], capture_output=True,
                          text=True, timeout=120, cwd=cwd)
    wall = time.perf_counter() - start
    imported = {line.split("|")[-1].strip().split(".")[0] for line in proc.stderr.splitlines()
                if line.startswith("import time:")}
    return wall, proc, imported


@pytest.mark.parametrize("args,message", BAD_INPUT, ids=[" ".join(a) for a, _ in BAD_INPUT])
def test_bad_input_is_one_line_in_under_two_seconds_without_heavy_imports(args, message, tmp_path):
    walls = []
    for _ in range(3):  # the best of 3: the test machine is shared, a slow try is its load, not ours
        wall, proc, imported = _timed_vla(args, tmp_path)
        walls.append(wall)
        if wall < 2.0:
            break
    errors = [line for line in proc.stderr.splitlines() if not line.startswith("import time:")]
    assert proc.returncode != 0
    assert message in "\n".join(errors), errors
    assert "Traceback" not in proc.stderr
    assert not imported & set(HEAVY), f"imported {sorted(imported & set(HEAVY))} before the error"
    assert min(walls) < 2.0, f"took {walls} s"
    assert not list(tmp_path.iterdir()), "a failed start left a folder"  # no outputs/<command>/<time>/, no out/


def test_config_print_and_help_need_no_heavy_import(tmp_path):
    for args in (("train", "--cfg", "job"), ("train", "--help"), ("eval", "--cfg", "job")):
        _, proc, imported = _timed_vla(args, tmp_path)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert not imported & set(HEAVY), f"{args}: imported {sorted(imported & set(HEAVY))}"
    assert not list(tmp_path.iterdir())
