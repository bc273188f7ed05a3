"""The `vla` command: one Hydra entry point per subcommand.

    vla <command> [key=value ...]          e.g.  vla collect env=tabletop episodes_per_task=5
    vla bench <name> [key=value ...]       e.g.  vla bench env-speed

Each command has a primary config `configs/<command>.yaml` (or `configs/bench/<name>.yaml`) that
composes the shared groups (`env/`, `model/`, `compressor/`, ...); anything after the command is a
Hydra override, so `--cfg job`, `--help` and `hydra.run.dir=...` work as in any Hydra app.
Commands import their implementation lazily so `vla --help` stays fast and a missing optional
extra (LIBERO, ROS) only matters to the command that needs it.
"""

from __future__ import annotations

import difflib
import importlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from vla.configs import CONFIG_DIR  # the one config directory


@dataclass(frozen=True)
class Command:
    target: str  # "module:function" taking the composed DictConfig
    config: str  # config name relative to configs/
    help: str


COMMANDS: dict[str, Command] = {
    "experts": Command("sim.experts.evaluate:main", "experts", "run the scripted experts and print per-task success"),
    "collect": Command("sim.collect:main", "collect", "record scripted-expert demos as a LeRobot v3.0 dataset"),
    "train": Command("vla.train:main", "train", "train or fine-tune the policy on a LeRobot dataset"),
    "eval": Command("vla.evaluate:main", "eval", "closed-loop success rate (95% CI), latency and videos of a checkpoint or the expert"),
    "teleop": Command("sim.teleop:main", "teleop", "drive the sim from the keyboard in a terminal and record a LeRobot dataset"),
    "profile": Command("vla.profiling:main", "profile", "FLOPs + per-stage latency of the policy per compressor"),
    "prune": Command("vla.prune:main", "prune", "EfficientVLA layer pruning of a checkpoint, calibrated on a dataset"),
    "probe": Command("vla.probe:main", "probe", "does a policy read its instruction? action change per swapped instruction/word"),
    "results": Command("vla.results:main", "results", "write docs/results.md from the committed eval reports in results/"),
    "export": Command("vla.export:main", "export", "a checkpoint as ONNX (onnxruntime), verified against eager torch"),
    "serve": Command("vla.serve:main", "serve", "a checkpoint as a policy server: openpi websocket (openpi-client) or lerobot gRPC"),
}

# `vla bench <name>`: benchmarks, each with configs/bench/<name>.yaml.
BENCHES: dict[str, Command] = {
    "policy": Command("vla.bench:main", "bench/policy", "every compressor side by side: success, FLOPs, latency, videos"),
    "env-speed": Command("sim.speed:main", "bench/env_speed", "env steps/s with cameras on/off"),
    "ros": Command("ros_nodes.bench:main", "bench/ros", "frame->action latency and action rate over the ROS 2 SIL loop"),
    "rtc": Command("vla.bench.rtc:main", "bench/rtc", "success and chunk-boundary jerk: sync / async / RTC execution per inference delay"),
    "study": Command("vla.bench.study:main", "bench/study", "the matched-budget compression study: every method trained alike, then benched (resumable)"),
}

# `vla ros <name>`: the ROS 2 layer (ros_nodes/), each with configs/ros/<name>.yaml.
ROS: dict[str, Command] = {
    "bringup": Command("ros_nodes.bringup:main", "ros/bringup", "policy node (+ sim bridge) in one process"),
}


def _suggest(name: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(name, choices, n=1)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    return f"unknown command '{name}'.{hint} Choose from: {', '.join(sorted(choices))}"


def _usage() -> str:
    lines = ["usage: vla <command> [key=value ...]", "", "commands:"]
    lines += [f"  {n:<12} {c.help}" for n, c in COMMANDS.items()]
    lines += ["  bench <name>", *[f"    {n:<10} {c.help}" for n, c in BENCHES.items()]]
    lines += ["  ros <name>", *[f"    {n:<10} {c.help}" for n, c in ROS.items()]]
    lines += ["", "Overrides use Hydra syntax; `vla <command> --cfg job` prints the composed config."]
    return "\n".join(lines)


def resolve(argv: list[str]) -> tuple[Command, list[str]]:
    """Map argv (without the program name) to a command and its Hydra overrides."""
    if not argv or argv[0] in {"-h", "--help", "help"}:
        print(_usage())
        raise SystemExit(0 if argv else 2)
    name, rest = argv[0], argv[1:]
    if name == "bench":
        if not rest or "=" in rest[0] or rest[0].startswith("-"):
            bench = "policy"
        else:
            bench, rest = rest[0], rest[1:]
        if bench not in BENCHES:
            raise SystemExit("vla bench: " + _suggest(bench, list(BENCHES)))
        return BENCHES[bench], rest
    if name == "ros":
        if not rest:
            raise SystemExit(f"vla ros: name a command: {', '.join(ROS)}")
        if rest[0] not in ROS:
            raise SystemExit("vla ros: " + _suggest(rest[0], list(ROS)))
        return ROS[rest[0]], rest[1:]
    if name not in COMMANDS:
        raise SystemExit("vla: " + _suggest(name, list(COMMANDS) + ["bench", "ros"]))
    return COMMANDS[name], rest


def _call(module_name: str, func_name: str, cfg) -> object:
    """Import the command only now, after Hydra composed and checked the config: a typo
    (`model=tinyy`) or `--cfg job` / `--help` answers without importing torch (that took 8-12 s).
    A run that fails before writing anything leaves no run dir (vla/run_dir.py)."""
    from hydra.core.hydra_config import HydraConfig

    try:
        try:
            return getattr(importlib.import_module(module_name), func_name)(cfg)
        except ImportError as e:
            if type(e).__name__ == "MissingExtraError":  # sim.factory's: names the extra to install
                raise SystemExit(f"{sys.argv[0]}: error: {e}") from None  # argv[0]: "vla <command>"
            raise
    except BaseException as e:
        if not (isinstance(e, SystemExit) and e.code in (None, 0)):
            from vla.run_dir import remove_if_unused

            hc = HydraConfig.get()
            remove_if_unused(hc.runtime.output_dir, hc.job.name)
        raise


def run(command: Command, overrides: list[str]) -> None:
    import hydra

    import vla.run_dir  # noqa: F401  (the resolver and callback configs/hydra/default.yaml names)
    from omegaconf import OmegaConf

    if not OmegaConf.has_resolver("vla_config_dir"):  # configs/bench/*.yaml search configs/ through it
        OmegaConf.register_new_resolver("vla_config_dir", lambda: str(CONFIG_DIR))

    module_name, func_name = command.target.split(":")
    config_path = str(CONFIG_DIR / Path(command.config).parent)

    def with_trust_switch(cfg):
        # `trust_checkpoint_code=true` (off by default) is the one opt-in for checkpoints whose
        # processor steps would run code; as an env var it also reaches worker processes.
        trust = cfg.get("trust_checkpoint_code", False)
        if not isinstance(trust, bool):
            raise SystemExit(f"vla: trust_checkpoint_code must be true or false, got {trust!r}")
        if trust:
            from policies.checkpoint_files import TRUST_ENV

            os.environ[TRUST_ENV] = "1"
        return _call(module_name, func_name, cfg)

    # Hydra names the job (outputs/<name>/, <name>.log) after the task function's module.
    with_trust_switch.__module__ = module_name
    task = hydra.main(config_path=config_path, config_name=Path(command.config).name,
                      version_base="1.3")(with_trust_switch)
    # Hydra reads sys.argv; give it only the overrides.
    sys.argv = [f"vla {command.config}", *overrides]
    task()


def main(argv: list[str] | None = None) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing in vla ever downloads from a hub
    os.environ.setdefault("MUJOCO_GL", "egl")  # headless rendering on machines without a display
    command, overrides = resolve(sys.argv[1:] if argv is None else argv)
    run(command, overrides)


if __name__ == "__main__":
    main()
