"""The `vla` command as a user meets it: dispatch, help and typo hints."""

import subprocess
import sys

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
