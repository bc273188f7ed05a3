"""`vla results`: docs/results.md, generated from the committed eval reports, never typed by hand.

    vla results                                              rewrite docs/results.md
    vla results check=true                                   exit 1 if docs/results.md is stale
    vla results add=outputs/eval/<time>/eval.json name=<row> record an eval, then rewrite the page

Inputs (paths relative to the repository root, see configs/results.yaml):
* ``results/<suite>/<row>.json``: the ``eval.json`` a `vla eval` run wrote, as written (``add=``
  only makes the checkpoint path repository-relative and adds ``training`` from the checkpoint's
  ``train_config.yaml``: steps, batch size, ``init_from``; ``training.cpu_minutes`` is shown when a
  report carries it).
* ``results/planned.yaml``: the rows the page should have, each with the command that produces it;
  a planned row without its JSON is listed with that command instead of numbers.
* ``results/published.yaml``: published numbers, each with its source and protocol, shown beside
  ours per suite.
* ``results/bench/<kind>/<row>.json``: benchmark reports (``kind``: ``rtc`` = `vla bench rtc`'s
  rtc.json, ``runtimes`` = a `vla profile runtimes=[...]` profile.json, ``profile`` = any other
  `vla profile` profile.json: per-stage cost, ``compression`` = a `vla bench` / `vla bench study`
  bench.json: methods side by side), rendered in "Compression", "Cost" and "Deployment" sections with
  the command that produced each. ``add=`` records these too (by their content).

Per suite the page shows every row's success with its 95 % Wilson interval (vla.evaluate), per task
group (``groups`` in configs/results.yaml: regular expressions on task names), training, policy
latency p50/p99 per ``infer`` call and parameter count, then the command that reproduces the row.
The text depends only on the inputs (no clock, no machine state), so a test can assert the committed
page is what the committed JSONs give.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf

from vla.evaluate import wilson_interval

ROOT = Path(__file__).resolve().parent.parent
TRAIN_CONFIG = "train_config.yaml"
BENCH_DIR = "bench"  # results/bench/<kind>/<row>.json: benchmark reports, not eval reports


# ── inputs ───────────────────────────────────────────────────────────────────────────────────


def _repo_path(path: str | Path, root: Path = ROOT) -> Path:
    path = Path(path).expanduser()
    return path if path.is_absolute() else root / path


def _read_yaml(path: Path, what: str) -> Any:
    if not path.is_file():
        return None
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ValueError(f"{what} '{path}' is not valid YAML: {e}") from e


def check_report(report: Any, where: str) -> dict:
    """An eval.json as `vla eval` writes it; every error names the file and the missing field."""
    if not isinstance(report, dict):
        raise ValueError(f"{where}: expected a `vla eval` report (a JSON object), got {type(report).__name__}")
    for key in ("env", "tasks", "overall", "latency_ms"):
        if key not in report:
            raise ValueError(f"{where}: not a `vla eval` report: no '{key}' field")
    for row in [*report["tasks"], report["overall"]]:
        for key in ("task", "episodes", "successes"):
            if key not in row:
                raise ValueError(f"{where}: task row {row.get('task', '?')!r} has no '{key}'")
        if not 0 <= int(row["successes"]) <= int(row["episodes"]):
            raise ValueError(f"{where}: task {row['task']!r}: successes {row['successes']} not in 0..{row['episodes']}")
    return report


def _read_json(file: Path) -> Any:
    try:
        return json.loads(file.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{file}: not valid JSON: {e}") from e


def load_reports(results_dir: Path) -> dict[str, dict[str, dict]]:
    """{suite: {row name: report}} from ``<results_dir>/<suite>/<row>.json``."""
    out: dict[str, dict[str, dict]] = {}
    if not results_dir.is_dir():
        return out
    for file in sorted(results_dir.glob("*/*.json")):
        if file.parent.name == BENCH_DIR:
            continue
        report = _read_json(file)
        check_report(report, str(file))
        suite = file.parent.name
        if report["env"] != suite:
            raise ValueError(f"{file}: the report is for env '{report['env']}' but lies under results/{suite}/")
        out.setdefault(suite, {})[file.stem] = report
    return out


def bench_kind(report: Any) -> str | None:
    """'rtc' (`vla bench rtc`), 'runtimes' (`vla profile runtimes=[...]`) or None (not a bench report)."""
    if not isinstance(report, dict):
        return None
    if isinstance(report.get("rows"), list) and all(isinstance(r, dict) and "mode" in r for r in report["rows"]):
        return "rtc"
    if isinstance(report.get("runtimes"), dict) and isinstance(report.get("meta"), dict):
        return "runtimes"
    if isinstance(report.get("rows"), dict) and isinstance(report.get("meta"), dict):
        if all(isinstance(r, dict) and "weights" in r for r in report["rows"].values()):
            return "compression"  # `vla bench` (policy) / `vla bench study`: methods side by side
        return "profile"
    return None


def load_bench(results_dir: Path) -> dict[str, dict[str, dict]]:
    """{kind: {row name: report}} from ``<results_dir>/bench/<kind>/<row>.json``."""
    out: dict[str, dict[str, dict]] = {}
    for file in sorted((results_dir / BENCH_DIR).glob("*/*.json")):
        report = _read_json(file)
        kind = bench_kind(report)
        if kind != file.parent.name:
            raise ValueError(f"{file}: not a '{file.parent.name}' bench report (its content reads as {kind})")
        out.setdefault(kind, {})[file.stem] = report
    return out


def load_planned(path: Path) -> list[dict]:
    rows = _read_yaml(path, "planned rows") or []
    for i, row in enumerate(rows):
        missing = [k for k in ("suite", "name", "command") if not row.get(k)]
        if missing:
            raise ValueError(f"{path}: entry {i} lacks {', '.join(missing)}")
    return rows


def load_published(path: Path) -> list[dict]:
    rows = _read_yaml(path, "published rows") or []
    for i, row in enumerate(rows):
        missing = [k for k in ("method", "success_pct", "source", "url", "protocol") if not row.get(k)]
        if missing:
            raise ValueError(f"{path}: entry {i} ({row.get('method', '?')}) lacks {', '.join(missing)}")
    return rows


# ── numbers ──────────────────────────────────────────────────────────────────────────────────


def success_cell(successes: int, episodes: int) -> str:
    """``k/n (p %) [lo, hi %]`` with the 95 % Wilson interval."""
    if episodes <= 0:
        return "-"
    lo, hi = wilson_interval(successes, episodes)
    return f"{successes}/{episodes} ({100 * successes / episodes:.0f} %) [{100 * lo:.0f}, {100 * hi:.0f} %]"


def group_counts(report: dict, patterns: dict[str, list[str]]) -> dict[str, tuple[int, int]]:
    """{group: (successes, episodes)} over the report's tasks; a task joins the first group whose
    pattern matches its name (re.search)."""
    counts = {group: [0, 0] for group in patterns}
    for row in report["tasks"]:
        for group, pats in patterns.items():
            if any(re.search(p, row["task"]) for p in pats):
                counts[group][0] += int(row["successes"])
                counts[group][1] += int(row["episodes"])
                break
    return {g: (k, n) for g, (k, n) in counts.items()}


def _ms(value: Any) -> str:
    return "-" if value is None else f"{float(value):.1f}"


def _params(report: dict) -> str:
    params = (report.get("policy") or {}).get("params")
    return "-" if params is None else f"{params / 1e6:.2f} M"


def _training(report: dict) -> tuple[str, str]:
    """(steps x batch [, from <init>], CPU-minutes) as recorded in the report."""
    t = report.get("training") or {}
    steps, batch = t.get("steps"), t.get("batch_size")
    what = f"{steps:,} x {batch}" if steps and batch else "-"
    if t.get("init_from"):
        what += f", fine-tuned from `{t['init_from']}`"
    cpu = t.get("cpu_minutes")
    return what, ("not recorded" if cpu is None else f"{float(cpu):.0f}")


# ── the page ─────────────────────────────────────────────────────────────────────────────────

HEADER = """# Results

<!-- Generated by `vla results` from results/ (see vla/results.py). Do not edit by hand. -->

Every row of "measured here" is a `vla eval` report committed under `results/<suite>/<row>.json`;
the page is rebuilt from them by `vla results` (a default test checks that it is current). Success
is successes/episodes with the 95 % Wilson score interval; a group is a family of tasks. Latency is
one policy call (`infer`: preprocess, model, postprocess) as timed in that eval, p50 / p99, on the
machine that ran it. To add a row: run the eval, then
`vla results add=outputs/eval/<time>/eval.json name=<row>` and commit the JSON and this page."""


def _suite_section(suite: str, reports: dict[str, dict], planned: list[dict], published: list[dict],
                   groups: dict[str, list[str]]) -> list[str]:
    lines = [f"## {suite}", ""]
    order = [p["name"] for p in planned if p["suite"] == suite]
    names = [n for n in order if n in reports] + sorted(n for n in reports if n not in order)
    if names:
        gnames = list(groups)
        head = ["row", "policy", "params", "tasks x episodes", "success [95 % CI]", *gnames,
                "training (steps x batch)", "CPU-min", "latency p50 / p99 ms"]
        lines += ["Measured here:", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for name in names:
            r = reports[name]
            o = r["overall"]
            info = r.get("policy") or {}
            per_group = group_counts(r, groups)
            steps, cpu = _training(r)
            cells = [f"`{name}`", str(info.get("type", "-")), _params(r),
                     f"{len(r['tasks'])} x {r.get('episodes_per_task', '-')}"
                     + (f" ({r['split']})" if r.get("split") else ""),
                     f"**{success_cell(int(o['successes']), int(o['episodes']))}**",
                     *[success_cell(*per_group[g]) for g in gnames],
                     steps, cpu, f"{_ms(r['latency_ms'].get('p50'))} / {_ms(r['latency_ms'].get('p99'))}"]
            lines.append("| " + " | ".join(cells) + " |")
        lines += ["", "Reproduce:", ""]
        for name in names:
            lines.append(f"- `{name}`: `{reports[name].get('reproduce', '-')}`")
        lines.append("")
    todo = [p for p in planned if p["suite"] == suite and p["name"] not in reports]
    if todo:
        lines += ["Not measured yet (run the command, then `vla results add=<its eval.json> name=<row>`):", ""]
        for p in todo:
            note = f" ({p['note']})" if p.get("note") else ""
            lines.append(f"- `{p['name']}`{note}:<br>`{p['command']}`")
        lines.append("")
    pub = [p for p in published if suite in p["success_pct"]]
    if pub:
        lines += ["Published (not measured here; read the protocol before comparing):", "",
                  "| method | success | protocol | source |", "|---|---|---|---|"]
        for p in pub:
            lines.append(f"| {p['method']} | {float(p['success_pct'][suite]):.1f} % | {p['protocol']} | "
                         f"[{p['source']}]({p['url']}) |")
        lines.append("")
    return lines


def _rtc_section(name: str, report: dict) -> list[str]:
    from vla.bench.rtc import markdown  # the table `vla bench rtc` prints

    what = (f"`{report.get('checkpoint', '?')}` on {report.get('env', '?')} {report.get('tasks', '')}, "
            f"split {report.get('split', '?')}, {report.get('episodes', '?')} episodes per cell, seed "
            f"{report.get('seed', '?')}")
    return [f"### Real-time chunking: `{name}`", "", f"{what}. Success and the action jerk at chunk switches "
            "vs elsewhere, per execution mode and injected inference delay (docs/experiments/rtc.md).", "",
            markdown(report["rows"]), "", f"Reproduce: `{report.get('reproduce', '-')}`", ""]


def _runtimes_section(reports: dict[str, dict]) -> list[str]:
    head = ["row", "policy", "runtime", "ms per call", "vs eager torch", "max abs diff vs torch"]
    lines = ["### Export: onnxruntime / torch.compile vs eager torch", "",
             "Batch 1, interleaved calls in one run per row (the ratio is torch ms / runtime ms; a row's "
             "numbers compare only with each other).", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, report in reports.items():
        for r in report["runtimes"].values():
            if "error" in r:
                cells = [r["policy"], r["runtime"], "-", "-", str(r["error"])[:100]]
            else:
                cells = [r["policy"], r["runtime"], f"{r['total_ms']:.2f}", f"{r.get('vs_torch', float('nan')):.2f}x",
                         f"{r['max_abs_diff']:.1e}"]
            lines.append(f"| `{name}` | " + " | ".join(cells) + " |")
    lines += ["", "Reproduce:", ""]
    for name, report in reports.items():
        meta = report["meta"]
        lines.append(f"- `{name}` ({meta.get('threads', '?')} thread(s), torch {meta.get('torch', '?')}): "
                     f"`{meta.get('command', '-')}`")
    return lines + [""]


def _profile_section(name: str, report: dict) -> list[str]:
    from vla.accel import speedup_line
    from vla.cost import format_table

    rows, meta = report["rows"], report["meta"]
    lines = [f"### `{name}`", "", f"{meta.get('title', '')}.", "", format_table(rows, markdown=True), ""]
    fast = [k for k in rows if k.startswith("accel=")]
    if "none" in rows and fast:
        lines += [f"`{fast[0]}`: {speedup_line(rows['none'], rows[fast[0]])}.", ""]
    return lines + [f"Reproduce: `{meta.get('command', '-')}`", ""]


def _compression_section(name: str, report: dict) -> list[str]:
    from vla.bench.report import goal_line, markdown_table

    meta = report["meta"]
    what = (f"{meta.get('env', '?')} {meta.get('split', '?')}, {meta.get('episodes', '?')} episodes x "
            f"{len(meta.get('tasks') or [])} tasks per method, {meta.get('budget_per_camera', '?')} visual tokens "
            f"per camera; weights: `own` = the method trained with the same recipe, `default` = training-free on "
            f"the trained `none` policy, `untrained` = cost only")
    lines = [f"### `{name}`", "", f"{what}.", "", markdown_table(report, videos=False), ""]
    if report.get("goal"):
        lines += [goal_line(report["goal"]), ""]
    return lines + [f"Reproduce: `{meta.get('command', '-')}`", ""]


def _bench_sections(bench: dict[str, dict[str, dict]]) -> list[str]:
    lines = []
    if bench.get("compression"):
        lines += ["## Compression methods side by side", ""]
        for name, report in bench["compression"].items():
            lines += _compression_section(name, report)
    if bench.get("profile"):
        lines += ["## Cost of one policy call", "", "FLOPs and per-stage latency (`vla profile`), random weights at "
                  "each preset's dimensions; the methods of one table ran interleaved in one process.", ""]
        for name, report in bench["profile"].items():
            lines += _profile_section(name, report)
    if not (bench.get("rtc") or bench.get("runtimes")):
        return lines
    lines += ["## Deployment", ""]
    for name, report in bench.get("rtc", {}).items():
        lines += _rtc_section(name, report)
    if bench.get("runtimes"):
        lines += _runtimes_section(bench["runtimes"])
    return lines


def build_page(reports: dict[str, dict[str, dict]], planned: list[dict], published: list[dict],
               groups: dict[str, dict[str, list[str]]], bench: dict[str, dict[str, dict]] | None = None) -> str:
    suites = list(dict.fromkeys([*sorted(reports), *[p["suite"] for p in planned],
                                 *[s for p in published for s in p["success_pct"]]]))
    lines = [HEADER, ""]
    for suite in suites:
        lines += _suite_section(suite, reports.get(suite, {}), planned, published, groups.get(suite) or {})
    lines += _bench_sections(bench or {})
    return "\n".join(lines).rstrip("\n") + "\n"


# ── add= ─────────────────────────────────────────────────────────────────────────────────────


def _relative(text: str, root: Path) -> str:
    return text.replace(str(root) + "/", "")


def record(eval_json: Path, name: str, results_dir: Path, root: Path = ROOT) -> Path:
    """Copy an eval.json to ``<results_dir>/<env>/<name>.json`` (checkpoint paths made relative to
    the repository, ``training`` read from the checkpoint's train_config.yaml when it has one); a
    bench report (:func:`bench_kind`) to ``<results_dir>/bench/<kind>/<name>.json``."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name or ""):
        raise ValueError(f"name must be a file-name-safe row name (letters, digits, _ . -), got {name!r}")
    if not eval_json.is_file():
        raise FileNotFoundError(f"eval report not found: '{eval_json}' (`vla eval` writes <run dir>/eval.json)")
    report = json.loads(eval_json.read_text())
    kind = bench_kind(report)
    if kind is not None:  # a bench report: paths made relative, filed by kind
        text = _relative(json.dumps(report, indent=2), root)
        return _write(results_dir / BENCH_DIR / kind / f"{name}.json", text + "\n")
    report = check_report(report, str(eval_json))
    ckpt = Path(str(report.get("checkpoint", "")))
    train_cfg = ckpt / TRAIN_CONFIG
    if "training" not in report and train_cfg.is_file():
        t = yaml.safe_load(train_cfg.read_text()) or {}
        report["training"] = {"steps": (t.get("train") or {}).get("steps"), "batch_size": t.get("batch_size"),
                              "init_from": t.get("init_from"), "from": f"{TRAIN_CONFIG} of the checkpoint"}
    for key in ("checkpoint", "reproduce"):
        if isinstance(report.get(key), str):
            report[key] = _relative(report[key], root)
    return _write(results_dir / str(report["env"]) / f"{name}.json", json.dumps(report, indent=2) + "\n")


def _write(out: Path, text: str) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(text)
    tmp.replace(out)
    return out


# ── the command ──────────────────────────────────────────────────────────────────────────────


def render(cfg: DictConfig | dict) -> str:
    cfg = OmegaConf.create(cfg) if isinstance(cfg, dict) else cfg
    groups = OmegaConf.to_container(cfg.groups, resolve=True) if cfg.get("groups") else {}
    results_dir = _repo_path(cfg.results_dir)
    return build_page(load_reports(results_dir), load_planned(_repo_path(cfg.planned)),
                      load_published(_repo_path(cfg.published)), groups, load_bench(results_dir))


def main(cfg: DictConfig) -> str:
    """Hydra entry point (`vla results ...`)."""
    if cfg.get("add"):
        path = record(Path(str(cfg.add)).expanduser().absolute(), str(cfg.get("name") or ""),
                      _repo_path(cfg.results_dir))
        print(f"recorded: {path}")
    page = render(cfg)
    out = _repo_path(cfg.out)
    if cfg.get("check"):
        if not out.is_file() or out.read_text() != page:
            print(f"{out} is not what `vla results` generates from {_repo_path(cfg.results_dir)}: "
                  f"run `vla results` and commit it", file=sys.stderr)
            raise SystemExit(1)
        print(f"up to date: {out}")
        return page
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page)
    print(f"wrote: {out}")
    return page
