"""`vla bench ros`: first-attempt SIL success, action rate and frame->action latency over the ROS 2 loop.

Runs ``episodes`` separate bringups of `vla ros bringup` (sim bridge + policy node, one process, real
DDS, fresh nodes and a freshly loaded policy each time), one episode each: the first attempt, on the
same layout every time (``episode_index``, default 0: the layout of `vla eval`'s episode 0), with
``hogs`` busy-loop processes on the CPUs for the whole run (started first, killed by PID at the end).
A probe (ros_nodes.testing.CommandRecorder, its own DDS participant) listens on the command topic:

- **first-attempt success**: successful episodes / bringups (the episode of each bringup);
- **action rate**: commands received by the probe per second in each bringup's episode (median and
  worst bringup), and the share of them that were holds (zero twist) rather than policy actions;
- **frame->action latency**: for each chunk, camera frame timestamp (header.stamp, set by the
  sim bridge when it publishes the frame) -> the policy node publishing that chunk's first action
  (includes waiting for the next control tick), measured by the policy node;
- **inference**: wall time of ``policy.infer`` on the worker thread.

Writes ros.json / ros.md to the Hydra run dir, with the machine's load average before, during
(per bringup) and after the run.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from ros_nodes.bringup import Bringup, params_from_cfg
from ros_nodes.nodes import CONFIG_DIR
from ros_nodes.testing import CommandRecorder, isolated_domain_id


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


# Ends when the thread that started it exits (PR_SET_PDEATHSIG, Linux) or its parent changes: a hog
# must never outlive the bench, even one whose main thread died while another thread still runs.
HOG = ("import ctypes, os, signal\n"
       "try:\n    ctypes.CDLL(None).prctl(1, signal.SIGKILL)\nexcept (OSError, AttributeError):\n    pass\n"
       "parent = os.getppid()\nwhile os.getppid() == parent:\n    pass\n")


def start_hogs(n: int) -> list[subprocess.Popen]:
    """``n`` busy-loop processes (one core each), e.g. the other work on a robot's onboard computer.
    They hold none of our pipes: a caller reading our output never waits on a hog."""
    return [subprocess.Popen([sys.executable, "-c", HOG], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL) for _ in range(n)]


def stop_hogs(hogs: list[subprocess.Popen]) -> None:
    for proc in hogs:  # by PID: only the processes started here
        proc.kill()
    for proc in hogs:
        proc.wait(timeout=10)


def run_bringup(params: dict, run_dir: Path, cfg, probe: CommandRecorder) -> dict[str, Any]:
    """One bringup, until its first episode ends (or max_duration_s): that episode and its timings."""
    with Bringup(params, run_dir, sim=True, domain_id=cfg.domain_id) as b:
        bridge, policy = b.nodes["sim_bridge_node"], b.nodes["policy_node"]
        t0 = time.monotonic()
        while not bridge.results and time.monotonic() - t0 < cfg.max_duration_s:
            if failures := b.failures():  # a dead sim / inference thread: no numbers to report
                raise SystemExit("[FATAL] " + "; ".join(f"{n}: {why}" for n, why in failures.items()))
            time.sleep(0.02)
        elapsed = time.monotonic() - t0
        episode = dict(bridge.results[0]) if bridge.results else None
        start = bridge._episode_t0  # the sim's episode start (monotonic, like the probe's times)
        out = {"episode": episode, "elapsed_s": round(elapsed, 2), "load_avg_1m": round(os.getloadavg()[0], 2),
               "policy_node": dict(policy.stats), "held_ticks": dict(policy.hold_counts), "sim_bridge": dict(bridge.stats),
               "frame_to_action_ms": list(policy.frame_to_action_ms), "inference_ms": list(policy.inference_ms),
               "last_inference": dict(policy.last_inference)}
        published = policy.publish_times()  # the node's own clock of every command it published
    times, deltas = probe.commands(since=start)
    end = start + (episode["wall_s"] if episode else elapsed)
    keep = times <= end
    times, deltas = times[keep], deltas[keep]
    out["action_topic"] = {**rate_stats(times, start + cfg.warmup_s),
                           "hold_fraction": float((~np.any(deltas != 0, axis=1)).mean()) if len(times) else 1.0}
    out["node_published"] = rate_stats(published[published <= end], start + cfg.warmup_s)
    return out


def publish_rates(runs: list[dict[str, Any]]) -> tuple[list[float], int]:
    """Per bringup, the command rate the probe heard; where it heard nothing (its own DDS participant
    had not yet discovered that bringup's new publisher when a short episode ended) the rate the node
    published at, from its own clock. Returns (rates, how many came from the node)."""
    rates, from_node = [], 0
    for r in runs:
        if r["action_topic"]["count"] >= 3:
            rates.append(r["action_topic"]["rate_hz"])
        else:
            rates.append(r["node_published"]["rate_hz"])
            from_node += 1
    return rates, from_node


def measure(cfg, run_dir: Path) -> dict[str, Any]:
    params = params_from_cfg(cfg)
    if cfg.domain_id is None:  # a DDS domain of our own: other SIL runs on a shared machine do not hear us
        cfg.domain_id = isolated_domain_id()
    p = params["policy_node"]
    load_before = [round(x, 2) for x in os.getloadavg()]
    hogs = start_hogs(int(cfg.hogs))
    probe = CommandRecorder(domain_id=cfg.domain_id, delta_topic=p["delta_topic"], gripper_topic=p["gripper_topic"])
    runs: list[dict[str, Any]] = []
    try:
        for i in range(int(cfg.episodes)):
            run = run_bringup(params, run_dir / f"bringup{i:02d}", cfg, probe)
            runs.append(run)
            ep = run["episode"] or {}
            print(f"bringup {i + 1}/{cfg.episodes}: success={ep.get('success')} in {ep.get('steps')} steps, "
                  f"held ticks {run['held_ticks']}, {run['action_topic']['rate_hz']:.1f} Hz, "
                  f"load {run['load_avg_1m']}", flush=True)
    finally:
        probe.close()
        stop_hogs(hogs)
    episodes = [r["episode"] for r in runs if r["episode"] is not None]
    successes = sum(bool(e["success"]) for e in episodes)
    rates, from_node = publish_rates(runs)
    f2a = [v for r in runs for v in r["frame_to_action_ms"]]
    inf = [v for r in runs for v in r["inference_ms"]]
    last = runs[-1]["last_inference"] if runs else {}
    return {
        "bringups": len(runs),
        "first_attempt_successes": successes,
        "success_rate": successes / len(runs) if runs else 0.0,
        "episodes": episodes,
        "hogs": int(cfg.hogs),
        "hog_pids": [h.pid for h in hogs],  # started for the run and killed at its end
        "load_avg": {"before": load_before, "per_bringup": [r["load_avg_1m"] for r in runs],
                     "after": [round(x, 2) for x in os.getloadavg()]},
        "control_rate_hz": float(p["control_rate_hz"]),
        "action_topic": {"rate_hz_median": pct(rates, 50), "rate_hz_min": float(min(rates)) if rates else 0.0,
                         "rates_from_node": from_node,
                         "interval_ms_p99_max": float(np.nanmax([r["action_topic"]["interval_ms_p99"] for r in runs]
                                                                or [float("nan")])),
                         "hold_fraction": float(np.mean([r["action_topic"]["hold_fraction"] for r in runs
                                                         if r["action_topic"]["count"]] or [1.0]))},
        "frame_to_action_ms": {"p50": pct(f2a, 50), "p99": pct(f2a, 99), "n": len(f2a)},
        "inference_ms": {"p50": pct(inf, 50), "p99": pct(inf, 99), "n": len(inf)},
        "policy": p["policy"],
        "checkpoint": p["checkpoint"],
        "visual_tokens": last.get("visual_tokens"),
        "gflops_per_call": last.get("gflops"),
        "chunk_len": last.get("chunk_len"),
        "replan_remaining": p["replan_remaining"],
        "runs": [{k: v for k, v in r.items() if k not in ("frame_to_action_ms", "inference_ms", "last_inference")}
                 for r in runs],
    }


def markdown(report: dict[str, Any]) -> str:
    a, f, i = report["action_topic"], report["frame_to_action_ms"], report["inference_ms"]
    load = report["load_avg"]
    per = load["per_bringup"]
    rows = [
        ("first-attempt success (bringups)", f"{report['first_attempt_successes']}/{report['bringups']}"),
        ("CPU hogs beside it / load average 1 min (before, bringups min-max, after)",
         f"{report['hogs']} / {load['before'][0]}, {min(per, default=float('nan'))}-{max(per, default=float('nan'))}, "
         f"{load['after'][0]}"),
        ("action publish rate (Hz): median / worst bringup",
         f"{a['rate_hz_median']:.2f} / {a['rate_hz_min']:.2f} (target {report['control_rate_hz']:g})"
         + (f"; {a['rates_from_node']} bringup(s) from the node's own publish times (the probe had not discovered "
            "the new publisher yet)" if a.get("rates_from_node") else "")),
        ("command interval p99, worst bringup (ms)", f"{a['interval_ms_p99_max']:.1f}"),
        ("hold commands (share)", f"{a['hold_fraction']:.3f}"),
        ("frame->action latency p50 / p99 (ms)", f"{f['p50']:.1f} / {f['p99']:.1f} (n={f['n']})"),
        ("policy.infer p50 / p99 (ms)", f"{i['p50']:.2f} / {i['p99']:.2f} (n={i['n']})"),
        ("chunk length / re-plan at (actions left)", f"{report['chunk_len']} / {report['replan_remaining']}"),
        ("visual tokens / GFLOPs per call", f"{report['visual_tokens']} / {report['gflops_per_call']}"),
    ]
    table = "| metric | value |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in rows)
    episodes = ", ".join(f"{'ok' if e['success'] else 'FAIL'} {e['steps']}" for e in report["episodes"])
    policy = report["policy"] + (f" ({report['checkpoint']})" if report["checkpoint"] else "")
    return (f"# ROS 2 SIL loop: `{policy}`\n\n- machine: {report['machine']}\n"
            f"- reproduce: `{report['command']}`\n\n{table}\n\nepisodes (result, steps): {episodes}\n")


def main(cfg) -> dict[str, Any]:
    from hydra.core.hydra_config import HydraConfig

    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    print(f"running {cfg.episodes} SIL bringups, one episode each (policy {cfg.policy_node.ros__parameters.policy}"
          f"{', ' + str(cfg.hogs) + ' CPU hogs' if cfg.hogs else ''}) ...", flush=True)
    report = measure(cfg, run_dir)
    report["machine"] = {"cpus": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2),
                         "python": platform.python_version(), "rmw": os.environ.get("RMW_IMPLEMENTATION", "default")}
    report["command"] = " ".join(["vla bench ros", *(shlex.quote(o) for o in hc.overrides.task)])
    md = markdown(report)
    (run_dir / "ros.json").write_text(json.dumps(report, indent=2) + "\n")
    (run_dir / "ros.md").write_text(md)
    print("\n" + md + f"\nwrote {run_dir / 'ros.json'}, {run_dir / 'ros.md'}")
    return report
