"""`vla results`: docs/results.md from eval reports — rows, Wilson intervals, groups, staleness."""

import json
import subprocess
import sys

import pytest
import yaml
from omegaconf import OmegaConf

from vla import cli, results
from vla.evaluate import wilson_interval

GROUPS = {"tabletop": {"place": ["^place_"], "push": ["^push_"]}}


def eval_report(env: str, tasks: dict[str, tuple[int, int]], checkpoint: str = "/x/ckpt", p50: float = 5.0) -> dict:
    """The fields `vla eval` writes (vla/evaluate.py summarize) that the page reads."""
    rows = [{"task": t, "episodes": n, "successes": k} for t, (k, n) in tasks.items()]
    k, n = sum(r["successes"] for r in rows), sum(r["episodes"] for r in rows)
    return {"checkpoint": checkpoint, "env": env, "split": "heldout", "episodes_per_task": rows[0]["episodes"],
            "policy": {"type": "vla", "params": 256778}, "tasks": rows,
            "overall": {"task": "overall", "episodes": n, "successes": k},
            "latency_ms": {"calls": 10, "p50": p50, "p99": 2 * p50},
            "reproduce": f"vla eval checkpoint={checkpoint} env={env}"}


@pytest.fixture
def inputs(tmp_path):
    res = tmp_path / "results"
    (res / "tabletop").mkdir(parents=True)
    (res / "tabletop" / "cvla.json").write_text(json.dumps(eval_report(
        "tabletop", {"place_red_on_blue_plate": (9, 10), "place_green_on_pink_plate": (8, 10), "push_red_left": (0, 10)})))
    (res / "tabletop" / "none.json").write_text(json.dumps(eval_report("tabletop", {"push_red_left": (7, 10)}, p50=7.8)))
    planned = tmp_path / "planned.yaml"
    planned.write_text(yaml.safe_dump([
        {"suite": "tabletop", "name": "none", "command": "vla eval checkpoint=b env=tabletop"},
        {"suite": "tabletop", "name": "cvla", "command": "vla eval checkpoint=a env=tabletop"},
        {"suite": "libero_goal", "name": "goal", "command": "vla eval checkpoint=g env=libero_goal", "note": "to do"},
    ]))
    published = tmp_path / "published.yaml"
    published.write_text(yaml.safe_dump([
        {"method": "Diffusion Policy", "success_pct": {"libero_goal": 68.3}, "protocol": "3 seeds x 500",
         "source": "OpenVLA paper", "url": "https://example.org/dp"}]))
    cfg = {"results_dir": str(res), "planned": str(planned), "published": str(published),
           "out": str(tmp_path / "results.md"), "groups": GROUPS}
    return tmp_path, cfg


def table_row(page: str, name: str) -> list[str]:
    line = next(ln for ln in page.splitlines() if ln.startswith(f"| `{name}` |"))
    return [c.strip() for c in line.strip("|").split("|")]


def test_success_cell_is_the_wilson_interval():
    lo, hi = wilson_interval(7, 10)
    assert (round(100 * lo), round(100 * hi)) == (40, 89)
    assert results.success_cell(7, 10) == "7/10 (70 %) [40, 89 %]"
    assert results.success_cell(0, 10) == "0/10 (0 %) [0, 28 %]"
    assert results.success_cell(0, 0) == "-"


def test_page_rows_groups_planned_and_published(inputs):
    _, cfg = inputs
    page = results.render(cfg)
    # Rows in the planned order; overall = 17/30, groups from the task names.
    assert page.index("| `none` |") < page.index("| `cvla` |")
    head = next(ln for ln in page.splitlines() if ln.startswith("| row |"))
    cols = [c.strip() for c in head.strip("|").split("|")]
    row = dict(zip(cols, table_row(page, "cvla")))
    assert row["success [95 % CI]"] == "**17/30 (57 %) [39, 73 %]**"
    assert row["place"] == "17/20 (85 %) [64, 95 %]"
    assert row["push"] == "0/10 (0 %) [0, 28 %]"
    assert row["params"] == "0.26 M" and row["latency p50 / p99 ms"] == "5.0 / 10.0"
    assert row["CPU-min"] == "not recorded" and row["tasks x episodes"] == "3 x 10 (heldout)"
    assert dict(zip(cols, table_row(page, "none")))["place"] == "-"  # no place task evaluated
    # A planned row without its JSON shows its command; the published row its number and source.
    goal = page[page.index("## libero_goal"):]
    assert "`goal` (to do):<br>`vla eval checkpoint=g env=libero_goal`" in goal
    assert "| Diffusion Policy | 68.3 % | 3 seeds x 500 | [OpenVLA paper](https://example.org/dp) |" in goal
    assert results.render(cfg) == page  # deterministic


def test_cli_writes_then_checks_the_page(inputs):
    tmp, cfg = inputs
    args = [f"{k}={v}" for k, v in cfg.items() if k != "groups"]

    def run(*extra):
        return subprocess.run([sys.executable, "-m", "vla.cli", "results", *args, *extra],
                              capture_output=True, text=True, timeout=120, cwd=tmp)

    proc = run()
    assert proc.returncode == 0, proc.stderr
    page = (tmp / "results.md").read_text()
    assert "| `cvla` |" in page and "| place | stack | bowl | push |" in page  # configs/results.yaml groups
    assert run("check=true").returncode == 0
    (tmp / "results.md").write_text(page.replace("17/30", "18/30"))
    stale = run("check=true")
    assert stale.returncode == 1 and "run `vla results`" in stale.stderr
    assert not (tmp / "outputs").exists()  # no Hydra run folder


def test_add_records_an_eval_json_with_its_training(inputs, tmp_path):
    _, cfg = inputs
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "train_config.yaml").write_text(yaml.safe_dump({"batch_size": 32, "init_from": None, "train": {"steps": 3000}}))
    report = eval_report("tabletop", {"push_red_left": (18, 20)}, checkpoint=str(ckpt))
    src = tmp_path / "eval.json"
    src.write_text(json.dumps(report))
    out = results.record(src, "push", tmp_path / "results")
    assert out == tmp_path / "results" / "tabletop" / "push.json"
    saved = json.loads(out.read_text())
    assert saved["training"]["steps"] == 3000 and saved["training"]["batch_size"] == 32
    assert saved["tasks"] == report["tasks"]
    row = table_row(results.render(cfg), "push")
    assert "**18/20 (90 %) [70, 97 %]**" in row and "3,000 x 32" in row
    with pytest.raises(ValueError, match="name must be"):
        results.record(src, "../evil", tmp_path / "results")
    with pytest.raises(FileNotFoundError, match="eval report not found"):
        results.record(tmp_path / "missing.json", "x", tmp_path / "results")


def test_bad_reports_name_the_file_and_field(inputs):
    tmp, cfg = inputs
    bad = tmp / "results" / "tabletop" / "bad.json"
    bad.write_text(json.dumps({"env": "tabletop", "tasks": []}))
    with pytest.raises(ValueError, match=r"bad\.json: not a `vla eval` report: no 'overall'"):
        results.render(cfg)
    bad.write_text(json.dumps(eval_report("libero_goal", {"t": (1, 2)})))
    with pytest.raises(ValueError, match="report is for env 'libero_goal' but lies under results/tabletop/"):
        results.render(cfg)
    bad.write_text(json.dumps(eval_report("tabletop", {"t": (3, 2)})))
    with pytest.raises(ValueError, match="successes 3 not in 0..2"):
        results.render(cfg)


def test_committed_page_is_what_the_committed_reports_give():
    cfg = OmegaConf.load(cli.CONFIG_DIR / "results.yaml")
    page = results.render(cfg)
    committed = results.ROOT / cfg.out
    assert committed.read_text() == page, "docs/results.md is stale: run `vla results` and commit it"
    # Every committed report is on the page, and every published row names its source.
    for file in (results.ROOT / cfg.results_dir).glob("*/*.json"):
        assert f"| `{file.stem}` |" in page
    for row in results.load_published(results.ROOT / cfg.published):
        assert row["url"].startswith("https://") and f"]({row['url']})" in page


def test_bench_reports_make_the_deployment_section(inputs, tmp_path):
    """`vla bench rtc` and `vla profile runtimes=[...]` reports, recorded with add=, become tables."""
    _, cfg = inputs
    rtc = {"checkpoint": str(tmp_path / "ckpt"), "env": "tabletop", "tasks": ["push_red_left"], "split": "heldout",
           "episodes": 10, "seed": 0, "reproduce": "vla bench rtc",
           "rows": [{"mode": m, "delay_ms": 100.0, "delay_steps": 2, "successes": k, "episodes": 10,
                     "ci95": list(wilson_interval(k, 10)), "mean_length": 50.0, "jerk_boundary": jb,
                     "jerk_other": 0.3, "jerk_ratio": jb / 0.3, "holds_per_episode": 2.0}
                    for m, k, jb in (("async", 9, 0.452), ("rtc", 7, 0.383))]}
    profile = {"meta": {"command": "vla profile model=tiny 'runtimes=[torch,onnx]'", "threads": 1, "torch": "2.x"},
               "rows": {}, "runtimes": {
                   "none / torch": {"policy": "none", "runtime": "torch", "total_ms": 11.5, "max_abs_diff": 0.0,
                                    "vs_torch": 1.0},
                   "none / onnx": {"policy": "none", "runtime": "onnx", "total_ms": 7.4, "max_abs_diff": 4.8e-7,
                                   "vs_torch": 11.5 / 7.4}}}
    for name, report in (("rtc", rtc), ("profile", profile)):
        (tmp_path / f"{name}.json").write_text(json.dumps(report))
    results.record(tmp_path / "rtc.json", "tiny_rtc", tmp_path / "results", root=tmp_path)
    results.record(tmp_path / "profile.json", "tiny_onnx", tmp_path / "results", root=tmp_path)
    saved = json.loads((tmp_path / "results" / "bench" / "rtc" / "tiny_rtc.json").read_text())
    assert saved["checkpoint"] == "ckpt"  # repository-relative
    page = results.render(cfg)
    section = page[page.index("## Deployment"):]
    assert "| rtc | 100 (2) | 7/10 | [0.40, 0.89] | 50.0 | 0.383 | 0.300 | 1.28 | 2.0 |" in section
    assert "| `tiny_onnx` | none | onnx | 7.40 | 1.55x | 4.8e-07 |" in section
    assert "`vla profile model=tiny 'runtimes=[torch,onnx]'`" in section and "Reproduce: `vla bench rtc`" in section
    assert "tiny_rtc" not in page[:page.index("## Deployment")]  # not read as an eval report
    # a file under the wrong kind is named
    (tmp_path / "results" / "bench" / "rtc" / "bad.json").write_text(json.dumps(profile))
    with pytest.raises(ValueError, match="bad.json: not a 'rtc' bench report"):
        results.render(cfg)


def test_a_compression_bench_gets_its_table(inputs, tmp_path):
    """A `vla bench` / `vla bench study` bench.json (methods side by side) is its own section."""
    _, cfg = inputs

    def row(method, weights, k):
        return {"method": method, "weights": weights, "visual_tokens": 512 if method == "none" else 160,
                "visual_tokens_after": 512 if method == "none" else 160, "layers": 4, "cache_interval": 1,
                "gflops": 1.0 if method == "none" else 0.4, "flops_ratio": 1.0 if method == "none" else 0.4,
                "speedup": 1.0 if method == "none" else 1.9, "latency_ms": {"p50": 10.0, "p99": 12.0},
                "success": {"rate": k / 20, "ci95": list(wilson_interval(k, 20)), "successes": k, "episodes": 20}}

    report = {"meta": {"env": "tabletop", "split": "heldout", "episodes": 20, "tasks": ["push_red_left"],
                       "budget_per_camera": 80, "methods": ["none", "pool"], "command": "vla bench study dataset=d"},
              "rows": {"none": row("none", "own", 15), "pool": row("pool", "own", 12)}, "goal": None}
    (tmp_path / "bench.json").write_text(json.dumps(report))
    results.record(tmp_path / "bench.json", "study_b80_trained", tmp_path / "results", root=tmp_path)
    page = results.render(cfg)
    section = page[page.index("## Compression methods side by side"):]
    assert "| pool | own ckpt | 160 | 4 | - | 0.400 | 40.0 % | 10.0 | 12.0 | 1.90× | 0.60 [0.39, 0.78] (12/20) |" in section
    assert "Reproduce: `vla bench study dataset=d`" in section
