"""`vla bench ros`: frame->action latency and action publish rate over the ROS 2 SIL loop.

Runs `vla ros bringup` (sim bridge + policy node, one process, real DDS) until ``episodes`` finish,
with a probe (ros_nodes.testing.CommandRecorder, its own DDS participant) on the command topic:

- **action rate**: commands received by the probe per second (p50 / p1 of the instantaneous rate),
  and the share of them that were holds (zero twist) rather than policy actions;
- **frame->action latency**: for each chunk, camera frame timestamp (header.stamp, set by the
  sim bridge when it publishes the frame) -> the policy node publishing that chunk's first action
  (includes waiting for the next control tick), measured by the policy node;
- **inference**: wall time of ``policy.infer`` on the worker thread.

Writes ros.json / ros.md to the Hydra run dir; the machine's load average is recorded beside them.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import time
from pathlib import Path
from typing import Any

import numpy as np

from ros_nodes.bringup import Bringup, params_from_cfg
from ros_nodes.nodes import CONFIG_DIR
from ros_nodes.testing import CommandRecorder


def _register_config_dir_resolver() -> None:
    """configs/bench/ros.yaml composes configs/ros/*.yaml, which is not on its search path: it adds
    ``file://${vla_config_dir:}``. Registered on import (vla.cli imports this module before Hydra
    composes). ``pkg://configs`` would be the usual way, but `configs` is a namespace package and
    Hydra's importlib-resources lookup rejects those."""
    from omegaconf import OmegaConf

    if not OmegaConf.has_resolver("vla_config_dir"):
        OmegaConf.register_new_resolver("vla_config_dir", lambda: str(CONFIG_DIR))


_register_config_dir_resolver()


def rate_stats(times: np.ndarray, since: float) -> dict[str, float]:
    t = times[times >= since]
    if len(t) < 3:
        return {"count": int(len(t)), "rate_hz": 0.0, "interval_ms_p50": float("nan"), "interval_ms_p99": float("nan")}
    gaps = np.diff(t) * 1e3
    return {"count": int(len(t)), "rate_hz": float((len(t) - 1) / (t[-1] - t[0])),
            "interval_ms_p50": float(np.percentile(gaps, 50)), "interval_ms_p99": float(np.percentile(gaps, 99)),
            "interval_ms_max": float(gaps.max())}


def pct(values, q: float) -> float:
    return float(np.percentile(values, q)) if len(values) else float("nan")


def measure(cfg, run_dir: Path) -> dict[str, Any]:
    params = params_from_cfg(cfg)
    p = params["policy_node"]
    probe = CommandRecorder(domain_id=cfg.domain_id, delta_topic=p["delta_topic"], gripper_topic=p["gripper_topic"])
    try:
        with Bringup(params, run_dir, sim=True, domain_id=cfg.domain_id) as b:
            bridge, policy = b.nodes["sim_bridge_node"], b.nodes["policy_node"]
            t0 = time.monotonic()
            while len(bridge.results) < cfg.episodes and time.monotonic() - t0 < cfg.max_duration_s:
                if failures := b.failures():  # a dead sim / inference thread: no numbers to report
                    raise SystemExit("[FATAL] " + "; ".join(f"{n}: {why}" for n, why in failures.items()))
                time.sleep(0.05)
            elapsed = time.monotonic() - t0
            times, deltas = probe.commands()
            holds = ~np.any(deltas != 0, axis=1)
            f2a, inf = list(policy.frame_to_action_ms), list(policy.inference_ms)
            results, sim_stats, policy_stats = list(bridge.results), dict(bridge.stats), dict(policy.stats)
            last_inference = dict(policy.last_inference)
    finally:
        probe.close()
    since = t0 + cfg.warmup_s
    keep = times >= since
    return {
        "episodes": results,
        "success_rate": float(np.mean([r["success"] for r in results])) if results else 0.0,
        "elapsed_s": round(elapsed, 2),
        "control_rate_hz": float(params["policy_node"]["control_rate_hz"]),
        "action_topic": {**rate_stats(times, since), "hold_fraction": float(holds[keep].mean()) if keep.any() else 1.0},
        "frame_to_action_ms": {"p50": pct(f2a, 50), "p99": pct(f2a, 99), "n": len(f2a)},
        "inference_ms": {"p50": pct(inf, 50), "p99": pct(inf, 99), "n": len(inf)},
        "policy": params["policy_node"]["policy"],
        "checkpoint": params["policy_node"]["checkpoint"],
        "visual_tokens": last_inference.get("visual_tokens"),
        "gflops_per_call": last_inference.get("gflops"),
        "chunk_len": last_inference.get("chunk_len"),
        "replan_remaining": params["policy_node"]["replan_remaining"],
        "policy_node": policy_stats,
        "sim_bridge": sim_stats,
    }


def markdown(report: dict[str, Any]) -> str:
    a, f, i = report["action_topic"], report["frame_to_action_ms"], report["inference_ms"]
    rows = [
        ("action publish rate (Hz)", f"{a['rate_hz']:.2f} (target {report['control_rate_hz']:g})"),
        ("command interval p50 / p99 / max (ms)", f"{a['interval_ms_p50']:.1f} / {a['interval_ms_p99']:.1f} / {a.get('interval_ms_max', float('nan')):.1f}"),
        ("hold commands (share)", f"{a['hold_fraction']:.3f}"),
        ("frame->action latency p50 / p99 (ms)", f"{f['p50']:.1f} / {f['p99']:.1f} (n={f['n']})"),
        ("policy.infer p50 / p99 (ms)", f"{i['p50']:.2f} / {i['p99']:.2f} (n={i['n']})"),
        ("chunk length / re-plan at (actions left)", f"{report['chunk_len']} / {report['replan_remaining']}"),
        ("visual tokens / GFLOPs per call", f"{report['visual_tokens']} / {report['gflops_per_call']}"),
        ("episodes (success)", f"{len(report['episodes'])} ({report['success_rate']:.0%})"),
    ]
    table = "| metric | value |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in rows)
    policy = report["policy"] + (f" ({report['checkpoint']})" if report["checkpoint"] else "")
    return (f"# ROS 2 SIL loop: `{policy}`\n\n- machine: {report['machine']}\n"
            f"- reproduce: `{report['command']}`\n\n{table}\n")


def main(cfg) -> dict[str, Any]:
    from hydra.core.hydra_config import HydraConfig

    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    print(f"running {cfg.episodes} SIL episodes (policy {cfg.policy_node.ros__parameters.policy}) ...", flush=True)
    report = measure(cfg, run_dir)
    report["machine"] = {"cpus": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2),
                         "python": platform.python_version(), "rmw": os.environ.get("RMW_IMPLEMENTATION", "default")}
    report["command"] = " ".join(["vla bench ros", *(shlex.quote(o) for o in hc.overrides.task)])
    md = markdown(report)
    (run_dir / "ros.json").write_text(json.dumps(report, indent=2) + "\n")
    (run_dir / "ros.md").write_text(md)
    print("\n" + md + f"\nwrote {run_dir / 'ros.json'}, {run_dir / 'ros.md'}")
    return report
