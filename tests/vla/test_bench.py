"""`vla bench` on the tiny model: 1 task, 1 short episode, none + pool (evaluated) + stc (cost only)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from tiny_models import save_tiny_checkpoint

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
ROW_KEYS = {"method", "weights", "checkpoint", "prepared_checkpoint", "learned", "compressor", "compressor_kwargs",
            "compressor_stage", "visual_tokens", "visual_tokens_after", "layers", "removed_layers", "cache_interval",
            "gflops", "flops_stages", "latency_ms", "success", "video", "notes", "flops_ratio", "speedup"}


def bench_config(overrides: list[str]):
    import vla.bench  # noqa: F401  (registers the config-dir resolver the bench config uses)

    with initialize_config_dir(config_dir=str(CONFIGS / "bench"), version_base="1.3"):
        return compose("policy", overrides=overrides)


@pytest.fixture(scope="module")
def tiny_bench(tmp_path_factory):
    from vla.bench import run_bench

    tmp = tmp_path_factory.mktemp("bench")
    ckpt = save_tiny_checkpoint(tmp / "none")
    cfg = bench_config([f"checkpoint={ckpt}", "methods=[none,pool,stc]", "tasks=[place_red_on_blue_plate]",
                        "episodes=1", "env.max_episode_steps=12", "repeats=2", "warmup=1", "video_steps=8",
                        "calib=synthetic", "calib_frames=1"])
    return run_bench(cfg, tmp / "run"), tmp / "run", ckpt


def test_bench_json_schema_and_rows(tiny_bench):
    report, out, ckpt = tiny_bench
    saved = json.loads((out / "bench.json").read_text())
    assert saved["rows"].keys() == {"none", "pool", "stc"}
    meta = saved["meta"]
    assert meta["tasks"] == ["place_red_on_blue_plate"] and meta["episodes"] == 1 and meta["env"] == "tabletop"
    assert meta["command"].startswith("vla bench checkpoint=") and meta["wall_s"] > 0
    for name, row in saved["rows"].items():
        assert ROW_KEYS <= set(row), name
        assert row["gflops"] > 0 and row["latency_ms"]["p99"] >= row["latency_ms"]["p50"] > 0
        assert set(row["latency_ms"]["stages"]) == {"vision", "compressor", "backbone", "action_head"}
        assert Path(row["video"]).stat().st_size > 0
        assert (Path(row["prepared_checkpoint"]) / "config.json").is_file()
    none, pool, stc = (saved["rows"][n] for n in ("none", "pool", "stc"))
    assert (none["visual_tokens"], pool["visual_tokens"], stc["visual_tokens"]) == (512, 128, 32)
    assert none["flops_ratio"] == 1.0 and none["speedup"] == 1.0 and pool["flops_ratio"] < 1.0
    assert none["weights"] == pool["weights"] == "default" and stc["weights"] == "untrained"
    for row in (none, pool):
        s = row["success"]
        assert s["episodes"] == 1 and 0.0 <= s["ci95"][0] <= s["rate"] <= s["ci95"][1] <= 1.0
        assert Path(s["report"]).is_file()
    assert stc["success"] is None  # learned method without its own checkpoint: cost only
    for name in ("bench.md", "success_vs_gflops.png", "latency_stages.png"):
        assert (out / name).stat().st_size > 0
    md = (out / "bench.md").read_text()
    assert "untrained (cost only)" in md and "| pool | default ckpt | 128 |" in md


def test_readme_results_section_is_replaced_between_markers(tiny_bench, tmp_path):
    from vla.bench.report import README_END, README_START, update_readme

    report, _, _ = tiny_bench
    readme = tmp_path / "README.md"
    readme.write_text(f"# vla\n\nintro\n\n## Results\n\n{README_START}\nold\n{README_END}\n\n## License\nMIT\n")
    update_readme(readme, report)
    text = readme.read_text()
    assert text.startswith("# vla\n\nintro\n\n## Results\n\n") and text.endswith(f"{README_END}\n\n## License\nMIT\n")
    assert "old" not in text and "| pool | default ckpt | 128 |" in text and "vla bench checkpoint=" in text
    update_readme(readme, report)  # idempotent
    assert readme.read_text() == text


def test_bench_rejects_checkpoints_for_unlisted_methods(tmp_path):
    from vla.bench import run_bench

    ckpt = save_tiny_checkpoint(tmp_path / "none")
    cfg = bench_config([f"checkpoint={ckpt}", "methods=[none]", f"checkpoints={{stc: {ckpt}}}",
                        "tasks=[place_red_on_blue_plate]"])
    with pytest.raises(ValueError, match=r"not in methods=\['none'\]: \['stc'\]"):
        run_bench(cfg, tmp_path / "run")


def test_learned_method_with_a_mismatched_own_checkpoint_is_an_error(tmp_path):
    from vla.bench import methods as M

    ckpt = save_tiny_checkpoint(tmp_path / "none")
    spec = M.method_spec("stc", 80, 2)
    with pytest.raises(ValueError, match="trained with compressor 'none', not 'stc'"):
        M.prepare("stc", spec, str(ckpt), str(ckpt), "cpu", calibrate=lambda p, pre: [])
    own = save_tiny_checkpoint(tmp_path / "stc", compressor="stc")
    prepared = M.prepare("stc", spec, str(ckpt), str(own), "cpu", calibrate=lambda p, pre: [])
    assert prepared.source == "own" and prepared.evaluated and prepared.policy.config.compressor.name == "stc"


def test_method_budgets():
    from vla.bench.methods import method_spec

    assert method_spec("fastv", 80, 2).compressor == {"name": "fastv", "layer": 2, "budget": 160}
    assert method_spec("divprune", 40, 2).compressor["budget"] == 40
    spec = method_spec("efficientvla", 80, 2, {"keep_ratio": 0.75, "cache_interval": 5})
    assert spec.compressor["budget"] == 160 and spec.keep_ratio == 0.75 and spec.cache_interval == 5
    assert method_spec("accel_fast", 80, 2).compressor["name"] == "compressor_vla"


def test_cli_maps_bench_and_prune():
    from vla.cli import BENCHES, COMMANDS, resolve

    assert resolve(["bench", "checkpoint=x"]) == (BENCHES["policy"], ["checkpoint=x"])
    assert resolve(["bench", "policy", "episodes=1"]) == (BENCHES["policy"], ["episodes=1"])
    assert resolve(["prune", "keep_layers=3"]) == (COMMANDS["prune"], ["keep_layers=3"])


def _goal_rows(speedup: float, flops_ratio: float, none_rate: float | None, fast_rate: float | None) -> dict:
    def row(s, f, rate):
        return {"speedup": s, "flops_ratio": f, "success": None if rate is None else {"rate": rate}}
    return {"none": row(1.0, 1.0, none_rate), "accel_fast": row(speedup, flops_ratio, fast_rate)}


@pytest.mark.parametrize("speedup, flops, none_rate, fast_rate, met, missed", [
    (3.2, 0.25, 1.0, 0.96, True, None),        # -4 pp: within 5
    (3.2, 0.25, 1.0, 0.90, False, "success"),  # -10 pp
    (2.4, 0.25, 1.0, 1.0, False, "speedup"),
    (3.2, 0.314, 1.0, 1.0, False, "FLOPs"),
    (3.2, 0.25, None, None, False, "not measured"),
])
def test_goal_check_against_none(speedup, flops, none_rate, fast_rate, met, missed):
    from vla.bench.report import goal_check, goal_line

    check = goal_check(_goal_rows(speedup, flops, none_rate, fast_rate))
    assert check["met"] is met
    line = goal_line(check)
    assert ("**met**" in line) is met
    if missed == "success":
        assert check["success_drop_pp"] == pytest.approx(10.0) and "success -10.0 pp" in line
    elif missed in ("speedup", "FLOPs"):
        assert "MISSED" in line and (f"{speedup:.2f}×" in line) and f"{100 * flops:.1f} %" in line
    elif missed == "not measured":
        assert "success not measured" in line
    assert goal_check({"none": {}}) is None  # no accel_fast row: nothing to check


def test_reproduce_command_paths_are_relative_under_the_working_directory(tmp_path, monkeypatch):
    from vla.bench.report import shown_path

    monkeypatch.chdir(tmp_path)
    assert shown_path("checkpoints/a") == "checkpoints/a" and shown_path(tmp_path / "b") == "b"
    assert shown_path("/elsewhere/c") == "/elsewhere/c"  # outside the working directory: absolute
