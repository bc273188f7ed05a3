"""Instruction wordings: paraphrase sets for training augmentation and for evaluation.

One YAML format for both (``configs/instructions/``)::

    families:                       # templates, per task family
      bowl:
        instruction: "put the {cube} cube in the bowl"   # the dataset/env wording, {slots} are words
        wordings:
          - "place the {cube} cube in the bowl"
          - "in the bowl, put the {cube} cube"
    tasks:                          # optional: explicit wordings per task name or per instruction
      red_in_bowl: ["drop the red cube into the bowl"]

A task string that matches a family's ``instruction`` (e.g. "put the red cube in the bowl":
cube=red) gets that family's wordings with the slots filled in. The two uses are kept apart:
``tabletop_augment.yaml`` is drawn from in training (``data.instructions.augment``), and
``tabletop_heldout.yaml`` is only for evaluation (`vla eval instruction_file=...`, `vla probe
wordings=...`); ``tests/vla/test_instructions.py`` checks that no held-out wording is among the
augmentation wordings.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
SLOT = re.compile(r"\{(\w+)\}")


class InstructionFileError(ValueError):
    """An instruction file that cannot be read or used; the message names the file."""


def normalise(text: str) -> str:
    """Lower case, punctuation dropped, single spaces: how two wordings are compared."""
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


@dataclass
class Family:
    name: str
    instruction: str  # template of the original wording
    wordings: list[str]
    _regex: re.Pattern = field(init=False, repr=False)

    def __post_init__(self) -> None:
        parts, pos, seen = [], 0, set()
        for m in SLOT.finditer(self.instruction):
            parts.append(re.escape(self.instruction[pos : m.start()]))
            slot = m.group(1)
            # a slot is one or more words ("red"; LIBERO's "on the cookie box"), the shortest that fits
            parts.append(f"(?P={slot})" if slot in seen else rf"(?P<{slot}>\w+(?:[ '-]\w+)*?)")
            seen.add(slot)
            pos = m.end()
        parts.append(re.escape(self.instruction[pos:]))
        self._regex = re.compile("".join(parts), re.IGNORECASE)

    def match(self, text: str) -> dict[str, str] | None:
        m = self._regex.fullmatch(text.strip())
        return None if m is None else m.groupdict()

    def expand(self, slots: dict[str, str]) -> list[str]:
        return [SLOT.sub(lambda m: slots[m.group(1)], w) for w in self.wordings]


@dataclass
class InstructionSet:
    """Wordings per task; see the module docstring for the file format."""

    families: list[Family] = field(default_factory=list)
    tasks: dict[str, list[str]] = field(default_factory=dict)
    source: str = ""

    @classmethod
    def load(cls, path: str | Path) -> "InstructionSet":
        file = resolve_path(path)
        try:
            data = yaml.safe_load(file.read_text()) or {}
        except yaml.YAMLError as e:
            raise InstructionFileError(f"instruction file '{file}' is not valid YAML: {e}") from e
        if not isinstance(data, dict) or not (data.get("families") or data.get("tasks")):
            raise InstructionFileError(f"instruction file '{file}' needs a 'families:' and/or 'tasks:' mapping")
        families = []
        for name, fam in (data.get("families") or {}).items():
            if not isinstance(fam, dict) or not isinstance(fam.get("instruction"), str) or not fam.get("wordings"):
                raise InstructionFileError(f"'{file}': family '{name}' needs 'instruction: <template>' and 'wordings: [...]'")
            slots = set(SLOT.findall(fam["instruction"]))
            for w in fam["wordings"]:
                extra = set(SLOT.findall(str(w))) - slots
                if extra:
                    raise InstructionFileError(f"'{file}': wording {w!r} of family '{name}' uses slots {sorted(extra)} "
                                               f"that its instruction {fam['instruction']!r} does not define")
            families.append(Family(str(name), fam["instruction"], [str(w) for w in fam["wordings"]]))
        tasks = {}
        for key, words in (data.get("tasks") or {}).items():
            words = [words] if isinstance(words, str) else list(words or [])
            if not words or not all(isinstance(w, str) and w.strip() for w in words):
                raise InstructionFileError(f"'{file}': task '{key}' needs a non-empty list of wordings")
            tasks[str(key)] = words
        return cls(families, tasks, str(file))

    def family_of(self, instruction: str) -> tuple[Family, dict[str, str]] | None:
        for fam in self.families:
            slots = fam.match(instruction)
            if slots is not None:
                return fam, slots
        return None

    def wordings(self, instruction: str | None, task: str | None = None) -> list[str]:
        """The wordings for a task (by name or original instruction), else its family's; [] if none."""
        for key in (task, instruction):
            if key is not None and key in self.tasks:
                return list(self.tasks[key])
        found = self.family_of(instruction) if instruction else None
        return found[0].expand(found[1]) if found else []

    def all_wordings(self, instructions: list[str]) -> set[str]:
        """Every wording (normalised) this set gives for ``instructions`` and its explicit tasks."""
        out = {normalise(w) for ws in self.tasks.values() for w in ws}
        for text in instructions:
            out |= {normalise(w) for w in self.wordings(text)}
        return out


def resolve_path(path: str | Path) -> Path:
    """As given (absolute or from the working directory), else relative to the repo (configs/...)."""
    p = Path(str(path)).expanduser()
    for candidate in (p, REPO / p):
        if candidate.is_file():
            return candidate
    raise InstructionFileError(f"instruction file '{path}' not found (looked in '{p.absolute()}' and '{REPO / p}')")


class Paraphraser:
    """Training augmentation: replace each sample's task string, with probability ``p``, by a wording
    of its family drawn uniformly (the original wording included); strings of no family stay."""

    def __init__(self, instruction_set: InstructionSet, p: float = 0.5) -> None:
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"data.instructions.p={p} must be in [0, 1]")
        self.set, self.p = instruction_set, float(p)
        self._cache: dict[str, list[str]] = {}

    def options(self, task: str) -> list[str]:
        if task not in self._cache:
            words = self.set.wordings(task)
            self._cache[task] = [task, *[w for w in words if normalise(w) != normalise(task)]]
        return self._cache[task]

    def __call__(self, tasks: list[str], gen) -> list[str]:
        import torch

        out = []
        draws = torch.rand(len(tasks), generator=gen).tolist()
        picks = torch.rand(len(tasks), generator=gen).tolist()
        for task, d, u in zip(tasks, draws, picks):
            opts = self.options(task)
            out.append(opts[min(int(u * len(opts)), len(opts) - 1)] if d < self.p and len(opts) > 1 else task)
        return out

    def describe(self) -> dict[str, Any]:
        return {"file": self.set.source, "p": self.p, "families": [f.name for f in self.set.families]}


def eval_wordings(instruction: str | None, instruction_file: str | None, suite: str,
                  tasks: list[str]) -> dict[str, list[str]]:
    """`vla eval instruction=<text>` (that wording for every task) or ``instruction_file=<yaml>``
    (wordings per task, by name or by its family's template) -> {task: [wordings]}; {} = the env's own.
    Every task must get at least one wording from the file, else the error names the ones left."""
    if instruction and instruction_file:
        raise InstructionFileError("give instruction=<text> or instruction_file=<yaml>, not both")
    if instruction:
        if not str(instruction).strip():
            raise InstructionFileError("instruction= is empty")
        return {task: [str(instruction)] for task in tasks}
    if not instruction_file:
        return {}
    from sim.factory import task_instruction

    words = InstructionSet.load(instruction_file)
    out = {task: words.wordings(task_instruction(suite, task), task) for task in tasks}
    missing = [t for t, w in out.items() if not w]
    if missing:
        raise InstructionFileError(
            f"instruction file '{words.source}' has no wording for tasks {missing}: list them under 'tasks:' "
            "(task name -> wordings), or add a family whose 'instruction' template matches their instruction")
    return out
