"""`vla probe`: does a policy read its instruction? Actions under the dataset's other instructions.

    vla probe checkpoint=<dir> dataset=<LeRobot dataset root> frames=64

A multi-task policy can reach a low training loss while ignoring words it has not grounded yet: it
learns the average behaviour of the tasks it cannot tell apart. Closed-loop videos then show it
going to the wrong object, and the loss curve does not say why. This probe measures it directly:

1. Sample ``frames`` frames of the dataset (seeded; cameras, state and their own task);
   ``frame_index=0`` takes first frames only. Why: later in a demo the gripper's position already
   tells where it is heading, so a policy can follow it without reading the instruction; at the
   first frame only the instruction says which object to go to.
2. For every frame, predict the action chunk under its own instruction and under every other task
   instruction of the dataset, with the flow head's initial noise fixed (zero), so the instruction is
   the only thing that changes.
3. Sensitivity(own -> other) = mean |chunk(other) - chunk(own)| in the normalised action space
   (units of the dataset's action std), averaged over the frames of task ``own``. Reported per task
   pair (a heatmap) and grouped by the words the two instructions differ in when they differ in
   exactly one word ("red -> green"): a word whose swap leaves the actions unchanged is not read.

4. ``wordings=<yaml>`` (e.g. configs/instructions/tabletop_heldout.yaml): for every task and each of
   its wordings in the file, the action change against the frame's own (training) wording, in
   absolute terms and relative to the change caused by the instructions of the other tasks (0 =
   acts as on the training wording, 1 = as differently as for another task), and how often the
   chunk under the wording is closer to the own task's chunk than to every other task's ("reads
   as its own task"). Success in closed loop per wording: `vla eval instruction_file=<yaml>`.

Outputs under ``outputs/probe/<time>/``: ``instruction_probe.json``, ``instruction_probe.md``,
``instruction_probe.png``; the command that reproduces them is printed.
"""

from __future__ import annotations

import json
import shlex
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def single_word_change(a: str, b: str) -> tuple[str, str] | None:
    """The (word in a, word in b) when the two instructions differ in exactly one word, else None."""
    wa, wb = a.lower().split(), b.lower().split()
    if len(wa) != len(wb):
        return None
    diffs = [(x, y) for x, y in zip(wa, wb) if x != y]
    return diffs[0] if len(diffs) == 1 else None


@torch.no_grad()
def instruction_sensitivity(policy, preprocessor, batches: list[dict[str, Any]], tasks: list[str]) -> dict[str, Any]:
    """Per (own task, other task): mean |delta action chunk| over the frames of ``own``; see the module doc."""
    if len(tasks) < 2:
        raise ValueError(f"the probe needs a dataset with at least 2 task instructions, it has {len(tasks)}: {tasks}")
    policy.eval()
    cfg = policy.config
    sums: dict[tuple[str, str], float] = defaultdict(float)
    counts: dict[str, int] = defaultdict(int)
    scale_sum = 0.0
    for raw in batches:
        own = list(raw["task"])
        b = len(own)
        noise = torch.zeros(b, cfg.chunk_size, cfg.action_dim, device=cfg.device)
        chunks = {}
        for task in tasks:
            batch = preprocessor({**raw, "task": [task] * b})
            chunks[task] = policy.predict_action_chunk(batch, noise=noise).cpu()
        unknown = sorted(set(own) - set(tasks))
        if unknown:
            raise ValueError(f"frames with instructions missing from the dataset's task list: {unknown}")
        for i, task in enumerate(own):
            counts[task] += 1
            mine = chunks[task][i]
            scale_sum += float(mine.abs().mean())
            for other in tasks:
                if other != task:
                    sums[(task, other)] += float((chunks[other][i] - mine).abs().mean())
    frames = sum(counts.values())
    pairs = [
        {"own": own, "other": other, "frames": counts[own], "sensitivity": sums[(own, other)] / counts[own],
         "changed_words": single_word_change(own, other)}
        for own in tasks if counts[own] for other in tasks if other != own
    ]
    by_word: dict[str, list[float]] = defaultdict(list)
    for p in pairs:
        if p["changed_words"]:
            by_word[f"{p['changed_words'][0]} -> {p['changed_words'][1]}"].append(p["sensitivity"])
    one_word = [p["sensitivity"] for p in pairs if p["changed_words"]]
    other_pairs = [p["sensitivity"] for p in pairs if not p["changed_words"]]
    return {
        "frames": frames,
        "tasks": tasks,
        "action_scale": scale_sum / max(frames, 1),  # mean |chunk| under the own instruction
        "pairs": pairs,
        "one_word_changes": {k: {"pairs": len(v), "sensitivity": _mean(v)} for k, v in sorted(by_word.items())},
        "mean_one_word_change": _mean(one_word),
        "mean_other_pairs": _mean(other_pairs),
    }


def _rows(raw: dict[str, Any], index: list[int]) -> dict[str, Any]:
    """The frames ``index`` of a collated batch (tensors and lists)."""
    out = {}
    for k, v in raw.items():
        if isinstance(v, torch.Tensor) and v.ndim and v.shape[0] == len(raw["task"]):
            out[k] = v[index]
        elif isinstance(v, list) and len(v) == len(raw["task"]):
            out[k] = [v[i] for i in index]
        else:
            out[k] = v
    return out


@torch.no_grad()
def wording_sensitivity(policy, preprocessor, batches: list[dict[str, Any]], tasks: list[str],
                        wordings: dict[str, list[str]]) -> dict[str, Any]:
    """Per task and wording (``wordings``: own instruction -> its rewordings): see step 4 of the module doc."""
    policy.eval()
    cfg = policy.config
    change: dict[tuple[str, str], float] = defaultdict(float)
    closer: dict[tuple[str, str], int] = defaultdict(int)
    other: dict[str, float] = defaultdict(float)
    counts: dict[str, int] = defaultdict(int)
    for raw in batches:
        own = list(raw["task"])
        for task in sorted(set(own)):
            words = wordings.get(task) or []
            if not words:
                continue
            index = [i for i, t in enumerate(own) if t == task]
            sub = _rows(raw, index)
            n = len(index)
            noise = torch.zeros(n, cfg.chunk_size, cfg.action_dim, device=cfg.device)

            def chunk(text: str) -> torch.Tensor:
                return policy.predict_action_chunk(preprocessor({**sub, "task": [text] * n}), noise=noise).cpu()

            mine = chunk(task)
            others = [chunk(t) for t in tasks if t != task]
            other_dist = torch.stack([(o - mine).abs().mean(dim=(1, 2)) for o in others])  # [tasks-1, n]
            counts[task] += n
            other[task] += float(other_dist.mean(0).sum())
            for w in words:
                got = chunk(w)
                d_own = (got - mine).abs().mean(dim=(1, 2))
                d_other = torch.stack([(got - o).abs().mean(dim=(1, 2)) for o in others])
                change[(task, w)] += float(d_own.sum())
                closer[(task, w)] += int((d_own < d_other.min(0).values).sum())
    rows = []
    for task in tasks:
        if not counts[task]:
            continue
        scale = other[task] / counts[task]
        for w in wordings.get(task) or []:
            c = change[(task, w)] / counts[task]
            rows.append({"task": task, "wording": w, "frames": counts[task], "change": c,
                         "relative_change": c / scale if scale else None,
                         "reads_as_own_task": closer[(task, w)] / counts[task]})
    rel = [r["relative_change"] for r in rows if r["relative_change"] is not None]
    return {"rows": rows, "mean_relative_change": _mean(rel),
            "mean_reads_as_own_task": _mean([r["reads_as_own_task"] for r in rows])}


@torch.no_grad()
def keypose_sensitivity(policy, preprocessor, batches: list[dict[str, Any]], tasks: list[str],
                        targets: torch.Tensor) -> dict[str, float]:
    """For a policy with a keypose head (``keypose_loss_weight > 0``): how far its keypose prediction
    is from the truth (``targets`` [rows, 3] m, by the frames' absolute ``index``), and how far a
    one-word change of the instruction moves it. Low error with a small move = the policy knows
    where it is going without reading that word (e.g. from where the gripper already is)."""
    policy.eval()
    err = dist = move = 0.0
    frames = moves = 0
    for raw in batches:
        preds = {}
        for task in tasks:
            preds[task] = policy.predict_keypose(preprocessor({**raw, "task": [task] * len(raw["task"])})).cpu()
        target = targets[raw["index"].long()]
        for i, own in enumerate(raw["task"]):
            err += float((preds[own][i] - target[i]).norm())
            dist += float(target[i].norm())
            frames += 1
            for other in tasks:
                if single_word_change(own, other):
                    move += float((preds[other][i] - preds[own][i]).norm())
                    moves += 1
    return {"error_m": err / max(frames, 1), "target_distance_m": dist / max(frames, 1),
            "one_word_move_m": move / moves if moves else None}


def format_markdown(report: dict[str, Any]) -> str:
    scale = report["action_scale"]

    def fmt(value: float | None) -> str:
        if value is None:
            return "-"
        return f"{value:.4f} ({100 * value / scale:.1f} %)" if scale else f"{value:.4f}"

    lines = [
        f"# Instruction probe: {report['checkpoint']}",
        "",
        f"{report['frames']} frames of `{report['dataset']}`"
        + (f" (each {report['frame_index']} steps into its episode)" if report.get("frame_index") is not None else "")
        + f", {len(report['tasks'])} instructions. Sensitivity = mean "
        "|change of the action chunk| (normalised units) when the frame's own instruction is replaced; in "
        f"brackets, relative to the mean |action| under the own instruction ({scale:.4f}).",
        "",
        f"- instructions that differ in one word: **{fmt(report['mean_one_word_change'])}**",
        f"- all other pairs: **{fmt(report['mean_other_pairs'])}**",
        "",
    ]
    kp = report.get("keypose")
    if kp:
        move = "-" if kp["one_word_move_m"] is None else f"{100 * kp['one_word_move_m']:.1f} cm"
        lines += [f"Keypose head (where the gripper acts next): off by {100 * kp['error_m']:.1f} cm on average "
                  f"(the targets are {100 * kp['target_distance_m']:.1f} cm away); a one-word swap moves it by {move}.",
                  ""]
    if report["one_word_changes"]:
        lines += ["| word swapped | pairs | sensitivity |", "|---|---|---|"]
        lines += [f"| {k} | {v['pairs']} | {fmt(v['sensitivity'])} |" for k, v in report["one_word_changes"].items()]
        lines.append("")
    worded = report.get("wordings")
    if worded:
        lines += [f"Rewordings (`{worded['file']}`): change of the action chunk against the training wording, "
                  "relative to giving another task's instruction (0 = no change, 1 = as different as another "
                  f"task); mean **{worded['mean_relative_change']:.2f}**; the chunk is closest to its own task's "
                  f"on **{100 * worded['mean_reads_as_own_task']:.0f} %** of frames.", "",
                  "| task | wording | change | relative | reads as own task |", "|---|---|---|---|---|"]
        lines += [f"| {r['task']} | {r['wording']} | {r['change']:.4f} | "
                  f"{'-' if r['relative_change'] is None else f'{r['relative_change']:.2f}'} | "
                  f"{100 * r['reads_as_own_task']:.0f} % |" for r in worded["rows"]]
        lines.append("")
    lines += [f"Heatmap: `{Path(report['plot']).name}`. Reproduce: `{report['reproduce']}`", ""]
    return "\n".join(lines)


def plot_matrix(report: dict[str, Any], path: str | Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = report["tasks"]
    index = {t: i for i, t in enumerate(tasks)}
    grid = torch.full((len(tasks), len(tasks)), float("nan"))
    for p in report["pairs"]:
        grid[index[p["own"]], index[p["other"]]] = p["sensitivity"]
    size = max(5.0, 0.45 * len(tasks) + 3)
    fig, ax = plt.subplots(figsize=(size + 2, size))
    im = ax.imshow(grid.numpy(), cmap="viridis")
    labels = [t if len(t) <= 48 else t[:45] + "..." for t in tasks]
    ax.set_xticks(range(len(tasks)), labels, rotation=90, fontsize=7)
    ax.set_yticks(range(len(tasks)), labels, fontsize=7)
    ax.set_xlabel("instruction given instead")
    ax.set_ylabel("frame's own instruction")
    fig.colorbar(im, ax=ax, label="mean |delta action| (normalised)")
    ax.set_title("instruction sensitivity (dark = that change is ignored)", fontsize=9)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def run(cfg, run_dir: str | Path, overrides: list[str]) -> dict[str, Any]:
    """Probe as ``cfg`` says (the `vla probe` config); reports go to ``run_dir``."""
    from vla.checkpoint import load_checkpoint
    from vla.training.data import load_metadata, resolve_dataset, sample_frames

    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
    loaded = load_checkpoint(cfg.checkpoint, device=str(cfg.device))
    policy = loaded.policy
    frames, batch_size = int(cfg.frames), int(cfg.batch_size)
    num_batches = max(1, -(-frames // batch_size))
    at = cfg.get("frame_index")
    batches = sample_frames(cfg.dataset, policy.config.camera_keys, num_batches, batch_size, int(cfg.seed),
                            None if at is None else int(at))
    source = resolve_dataset(cfg.dataset)
    meta = load_metadata(source)
    tasks = [str(t) for t in meta.tasks.index]
    report = instruction_sensitivity(policy, loaded.preprocessor, batches, tasks)
    if policy.model.keypose_head is not None:
        from lerobot.datasets.lerobot_dataset import LeRobotDataset

        from vla.training.data import keypose_table

        targets = keypose_table(LeRobotDataset(source.repo_id, root=source.root))
        report["keypose"] = keypose_sensitivity(policy, loaded.preprocessor, batches, tasks, targets)
    if cfg.get("wordings"):
        from vla.instructions import InstructionSet

        words = InstructionSet.load(cfg.wordings)
        per_task = {t: words.wordings(t) for t in tasks}
        report["wordings"] = {"file": words.source, **wording_sensitivity(policy, loaded.preprocessor, batches, tasks, per_task)}
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    own = {"checkpoint", "dataset"}
    args = [f"checkpoint={Path(cfg.checkpoint).absolute()}", f"dataset={Path(cfg.dataset).absolute()}"]
    args += [o for o in overrides if o.split("=", 1)[0] not in own]
    report.update(checkpoint=str(Path(cfg.checkpoint).absolute()), dataset=str(cfg.dataset), frame_index=at,
                  plot=str(run_dir / "instruction_probe.png"), reproduce="vla probe " + " ".join(shlex.quote(a) for a in args))
    plot_matrix(report, report["plot"])
    (run_dir / "instruction_probe.json").write_text(json.dumps(report, indent=2) + "\n")
    markdown = format_markdown(report)
    (run_dir / "instruction_probe.md").write_text(markdown)
    print(markdown)
    print(f"report: {run_dir / 'instruction_probe.md'}, {run_dir / 'instruction_probe.json'}, {report['plot']}")
    return report


def main(cfg) -> dict[str, Any]:
    """Hydra entry point (`vla probe ...`)."""
    from hydra.core.hydra_config import HydraConfig

    hc = HydraConfig.get()
    return run(cfg, hc.runtime.output_dir, list(hc.overrides.task))
