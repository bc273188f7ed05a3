"""`vla bench study`: the matched-budget compression study, resumable over sessions.

Every token reducer is TRAINED with the same recipe, the same number of steps and the same visual-
token budget (one `vla train` run per method), then compared on the same held-out episodes beside the
TRAINING-FREE versions applied to the trained `none` policy, the way the Compressor-VLA paper compares
methods:

    vla bench study dataset=<tabletop 13-task dataset>                   train what is missing, then bench
    vla bench study dataset=<dir> 'methods=[stc]' stage=train             one training (one per core, say)
    vla bench study dataset=<dir> stage=bench                              the two benches, once trained
    vla bench study dataset=<dir> budget_per_camera=32 'methods=[none,compressor_vla,efficientvla]'

Under ``root`` (default ``outputs/study/budget<B>``): ``train/<method>/`` is a `vla train` run
(running the study again resumes a half-done one and skips a finished one: its
``checkpoints/<steps>`` exists), ``bench_trained/`` a `vla bench` with every trained method's own
checkpoint (``checkpoints={method: ...}``), ``bench_free/`` a `vla bench` of the training-free methods
on the trained `none` checkpoint. Each bench writes bench.json / bench.md / plots; put them on the
results page with ``vla results add=<root>/bench_trained/bench.json name=study_b<B>_trained`` (and
``..._free``). Training and benches are subprocesses of the real CLI, so each is what a user would run
by hand (the commands are printed and logged).
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

LEARNED = ("compressor_vla", "stc", "src")  # no training-free version: their modules are trained


@dataclass
class Step:
    what: str  # "train <method>" | "bench trained" | "bench free"
    args: list[str]  # `vla` arguments
    out: Path
    done: bool

    @property
    def command(self) -> str:
        return "vla " + " ".join(shlex.quote(a) for a in self.args)


def _compressor_overrides(method: str, budget: int, cameras: int) -> list[str]:
    """`vla train` overrides that train ``method`` at the bench's budget (vla/bench/methods.py)."""
    from vla.bench.methods import method_spec

    preset = dict(method_spec(method, budget, cameras).compressor or {"name": method})
    name = preset.pop("name")
    return [f"compressor={name}", *(f"compressor.{k}={v}" for k, v in sorted(preset.items()))]


def final_checkpoint(train_dir: Path, steps: int) -> Path:
    return train_dir / "checkpoints" / f"{steps:06d}"


def plan(cfg: DictConfig | dict) -> list[Step]:
    """Every step of the study, in order, each marked done or not (nothing runs here)."""
    cfg = OmegaConf.create(cfg) if isinstance(cfg, dict) else cfg
    import compressors

    methods = [str(m) for m in cfg.methods]
    unknown = sorted(set(methods) - set(compressors.available()))
    if unknown:
        raise ValueError(f"vla bench study: unknown methods {unknown}; choose from {compressors.available()}")
    if "none" not in methods:
        raise ValueError("vla bench study: methods must include 'none' (the training-free rows run on it)")
    root = Path(str(cfg.root)).expanduser().absolute()
    steps, budget = int(cfg.steps), int(cfg.budget_per_camera)
    recipe = [str(a) for a in cfg.train_overrides or []]
    out: list[Step] = []
    for m in methods:
        run = root / "train" / m
        args = ["train", f"dataset={cfg.dataset}", *recipe, *_compressor_overrides(m, budget, int(cfg.cameras)),
                f"train.steps={steps}", f"train.save_every={int(cfg.save_every)}", f"output_dir={run}",
                f"threads={int(cfg.threads)}", f"seed={int(cfg.train_seed)}"]
        out.append(Step(f"train {m}", args, run, final_checkpoint(run, steps).is_dir()))
    trained = {m: final_checkpoint(root / "train" / m, steps) for m in methods}
    common = [f"checkpoint={trained['none']}", f"env={cfg.env}", f"split={cfg.split}", f"episodes={int(cfg.episodes)}",
              f"budget_per_camera={budget}", f"seed={int(cfg.seed)}", f"threads={int(cfg.threads)}",
              f"video={str(bool(cfg.video)).lower()}", *[str(a) for a in cfg.bench_overrides or []]]
    own = ",".join(f"{m}:{trained[m]}" for m in methods if m != "none")
    bench_trained = root / "bench_trained"
    out.append(Step("bench trained", ["bench", *common, f"methods=[{','.join(methods)}]",
                                      *([f"checkpoints={{{own}}}"] if own else []), f"hydra.run.dir={bench_trained}"],
                    bench_trained, (bench_trained / "bench.json").is_file()))
    free = [m for m in methods if m not in LEARNED]
    bench_free = root / "bench_free"
    out.append(Step("bench free", ["bench", *common, f"methods=[{','.join(free)}]", f"hydra.run.dir={bench_free}"],
                    bench_free, (bench_free / "bench.json").is_file()))
    return out


def run_step(step: Step) -> None:
    step.out.mkdir(parents=True, exist_ok=True)
    log = step.out / f"study_{step.what.replace(' ', '_')}.log"
    print(f"== {step.what}: {step.command}\n   log: {log}", flush=True)
    with log.open("a") as f:
        f.write(f"$ {step.command}\n")
        f.flush()
        proc = subprocess.run([sys.executable, "-m", "vla.cli", *step.args], stdout=f, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        tail = log.read_text()[-3000:]
        raise SystemExit(f"vla bench study: '{step.what}' failed (exit {proc.returncode}); rerun to resume. "
                         f"Log {log}:\n{tail}")


def main(cfg: DictConfig) -> list[dict[str, Any]]:
    if cfg.stage not in ("all", "train", "bench"):
        raise SystemExit(f"vla bench study: stage={cfg.stage} is not one of all, train, bench")
    if not Path(str(cfg.dataset)).expanduser().is_dir():
        raise SystemExit(f"vla bench study: dataset '{cfg.dataset}' is not a folder (a LeRobot dataset root)")
    try:
        steps = plan(cfg)
    except ValueError as e:
        raise SystemExit(str(e)) from None
    for step in steps:
        kind = step.what.split()[0]
        wanted = cfg.stage == "all" or cfg.stage == kind
        if step.done or not wanted:
            print(f"-- {step.what}: {'done' if step.done else 'skipped (stage=' + str(cfg.stage) + ')'} ({step.out})")
            continue
        if kind == "bench":
            missing = [s.what for s in steps if s.what.startswith("train") and not s.done]
            if missing:
                raise SystemExit(f"vla bench study: cannot bench yet, not trained: {missing} (stage=train first)")
        run_step(step)
        step.done = True
    for name in ("trained", "free"):
        path = Path(str(cfg.root)).expanduser().absolute() / f"bench_{name}" / "bench.json"
        if path.is_file():
            print(f"results page: vla results add={path} name=study_b{cfg.budget_per_camera}_{name}")
    return [{"what": s.what, "done": s.done, "command": s.command} for s in steps]
