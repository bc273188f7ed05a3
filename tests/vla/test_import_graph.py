"""Libraries apart from commands (issue 19.3), checked on the source: an AST walk over every import
(module level and inside functions) in vla, policies, compressors, sim and ros_nodes.

* no import-time cycle (module-level imports);
* no library module imports a command module (the `vla` CLI's targets in vla/cli.py, and vla.cli
  itself), not even inside a function: that is how vla/accel.py -> vla/prune.py -> vla/profiling.py ->
  vla/accel.py became a cycle and sim/ came to import vla.cli;
* the rollout engine imports alone, without torch or any command.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("vla", "policies", "compressors", "sim", "ros_nodes")


def _modules() -> dict[str, Path]:
    mods = {}
    for pkg in PACKAGES:
        for path in (REPO / pkg).rglob("*.py"):
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            mods[".".join(parts)] = path
    return mods


def import_graph() -> dict[str, dict[str, bool]]:
    """module -> {imported module in the packages: True if imported at module level}."""
    mods = _modules()

    def resolve(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph = {}
    for mod, path in mods.items():
        out: dict[str, bool] = {}
        package = mod.split(".") if path.name == "__init__.py" else mod.split(".")[:-1]

        def add(name: str, top: bool, mod: str = mod, out: dict = out) -> None:
            target = resolve(name)
            if target and target != mod:
                out[target] = out.get(target, False) or top

        def visit(node: ast.AST, top: bool, package: list = package) -> None:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.Import):
                    for alias in child.names:
                        add(alias.name, top)
                elif isinstance(child, ast.ImportFrom):
                    base = child.module or ""
                    if child.level:
                        base = ".".join(package[: len(package) - (child.level - 1)] + ([base] if base else []))
                    for alias in child.names:
                        add(f"{base}.{alias.name}", top)
                if isinstance(child, ast.If) and getattr(child.test, "id", None) == "TYPE_CHECKING":
                    continue
                visit(child, top and not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

        visit(ast.parse(path.read_text()), True)
        graph[mod] = out
    return graph


def command_modules() -> set[str]:
    return set(re.findall(r'Command\("([\w.]+):', (REPO / "vla" / "cli.py").read_text())) | {"vla.cli"}


def cycles(graph: dict[str, list[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(graph.get(root, ())))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(graph.get(child, ()))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    m = stack.pop()
                    on_stack.discard(m)
                    comp.append(m)
                    if m == node:
                        break
                if len(comp) > 1:
                    found.append(sorted(comp))
    return found


def test_no_import_time_cycles():
    graph = import_graph()
    assert cycles({m: [t for t, top in e.items() if top] for m, e in graph.items()}) == []


def test_libraries_do_not_import_commands():
    graph, commands = import_graph(), command_modules()
    assert {"vla.evaluate", "sim.collect", "sim.experts.evaluate", "vla.prune", "vla.profiling"} <= commands
    bad = sorted((m, t) for m, e in graph.items() if m not in commands for t in e
                 if t in commands)
    assert bad == [], "library module -> command module: " + ", ".join(f"{m} -> {t}" for m, t in bad)


def test_the_accel_prune_profiling_cycle_is_gone():
    graph = import_graph()
    full = cycles({m: list(e) for m, e in graph.items()})
    mine = {"vla.accel", "vla.prune", "vla.profiling", "vla.batches", "vla.configs", "vla.rollout"}
    assert [c for c in full if mine & set(c)] == []
    assert not {"vla.cli", "vla.prune", "vla.profiling"} & set(graph["vla.accel"])
    assert not any(t == "vla.cli" for m, e in graph.items() if m.startswith("sim") for t in e)


def test_rollout_engine_imports_alone_without_torch_or_commands():
    code = ("import sys, vla.rollout; bad = [m for m in ('torch', 'vla.cli', 'vla.evaluate', 'sim.collect', "
            "'hydra') if m in sys.modules]; print(bad)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
