"""Cost of one policy call: FLOPs and per-stage latency (the library behind `vla profile`,
`vla bench`, the ROS node's diagnostics and the export comparison).

A *policy call* is ``predict_action_chunk`` on one preprocessed observation (batch 1): vision
tower -> compressor -> language backbone -> action head (all flow steps). Preprocessing (resize,
tokenize, normalise) is not included.

- **FLOPs**: ``torch.utils.flop_counter.FlopCounterMode`` over one call, split by stage (matmuls,
  convolutions and attention; elementwise ops are not counted, as usual). PyTorch has no formula
  for the CPU SDPA kernel, so one is registered here (same count as its CUDA kernels).
- **Latency**: wall time per stage (exclusive: the in-LM selection counts as "compressor", not
  "backbone") and in total, as the median over ``repeats`` calls. Calls are INTERLEAVED: each
  round calls every method once (in a rotating order), so machine noise hits all methods alike.
- **Tokens**: visual tokens entering the backbone, and (in-LM methods) the count kept after their layer.
- **Instruction** (``model.instruction.encoder=minilm``): the pretrained text encoder is its own stage
  ("instr ms": per step, served from its per-instruction cache; in brackets the cost of a new
  instruction, once per episode, ``instruction_uncached_ms``). Word-level policies have no such stage.
- **Runtimes**: the same policies, batch and noise run by each runtime (vla/onnx_export.py
  ``runtime_runners``: eager torch, onnxruntime, torch.compile), interleaved the same way; total ms
  per call, the ratio to eager torch and the largest action difference from it.

    profile_policies({name: policy}, {name: batch}, repeats) -> rows     profile_policy(policy, batch)
    count_flops(policy, batch)                                            compare_runtimes(...)
"""


from __future__ import annotations

import logging
import statistics
import sys
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch.utils import flop_counter


STAGES = ("vision", "compressor", "backbone", "action_head")
# A policy with a pretrained text encoder (instruction.encoder=minilm) has one more stage: reading the
# instruction, cached per instruction string, so per step it is the cached cost; the uncached cost
# (once per new instruction) is reported beside it as ``instruction_uncached_ms``.
INSTRUCTION_STAGE = "instruction"


def stages_of(policy) -> tuple[str, ...]:
    return STAGES + ((INSTRUCTION_STAGE,) if getattr(policy.model, "text_encoder", None) is not None else ())
logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------------
# FLOP formula for the CPU attention kernel (missing from torch's registry)
# --------------------------------------------------------------------------------------------------
def _register_cpu_sdpa_formula() -> None:
    aten = torch.ops.aten
    fwd = getattr(aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    if fwd is None or fwd in flop_counter.flop_registry:
        return

    def _shapes(query, key, value):  # the registry passes shapes, not tensors
        b, h, s_q, d = query
        s_k, d_v = key[-2], value[-1]
        return b, h, s_q, s_k, d, d_v

    @flop_counter.register_flop_formula(fwd)
    def _sdpa_cpu(query, key, value, *args, out_shape=None, **kwargs) -> int:
        b, h, s_q, s_k, d, d_v = _shapes(query, key, value)
        return 2 * b * h * s_q * s_k * (d + d_v)  # QK^T and PV

    bwd = getattr(aten, "_scaled_dot_product_flash_attention_for_cpu_backward", None)
    if bwd is not None and bwd not in flop_counter.flop_registry:

        @flop_counter.register_flop_formula(bwd)
        def _sdpa_cpu_bwd(grad_out, query, key, value, *args, out_shape=None, **kwargs) -> int:
            b, h, s_q, s_k, d, d_v = _shapes(query, key, value)
            return 2 * b * h * s_q * s_k * (2 * d + 3 * d_v)  # recompute QK^T; dV, dP, dQ, dK


_register_cpu_sdpa_formula()


# --------------------------------------------------------------------------------------------------
# Stage recorder
# --------------------------------------------------------------------------------------------------
class StageRecorder:
    """``stage(name)`` context manager with exclusive accounting of time (and FLOPs if counting).

    Nested stages are subtracted from their parent, so stage times add up to the call's time.
    """

    def __init__(self, flops: flop_counter.FlopCounterMode | None = None):
        self.flops_mode = flops
        self.seconds: dict[str, float] = defaultdict(float)
        self.flops: dict[str, int] = defaultdict(int)
        self._stack: list[list] = []  # [name, t0, flops0, child_seconds, child_flops]

    def _flops_now(self) -> int:
        return self.flops_mode.get_total_flops() if self.flops_mode is not None else 0

    @contextmanager
    def __call__(self, name: str):
        frame = [name, time.perf_counter(), self._flops_now(), 0.0, 0]
        self._stack.append(frame)
        try:
            yield
        finally:
            self._stack.pop()
            dt, df = time.perf_counter() - frame[1], self._flops_now() - frame[2]
            self.seconds[name] += dt - frame[3]
            self.flops[name] += df - frame[4]
            if self._stack:
                self._stack[-1][3] += dt
                self._stack[-1][4] += df


# --------------------------------------------------------------------------------------------------
# Measurement API
# --------------------------------------------------------------------------------------------------
def _noise(policy, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    cfg = policy.config
    return torch.randn(1, cfg.chunk_size, cfg.action_dim, generator=g).to(cfg.device)


def count_flops(policy, batch: dict[str, Any]) -> dict[str, Any]:
    """FLOPs of one ``predict_action_chunk`` call: {"total": int, "stages": {stage: int}}.

    With a text encoder, of a step within an episode (its cache already holds the instruction)."""
    if INSTRUCTION_STAGE in stages_of(policy):
        policy.predict_action_chunk(batch, noise=_noise(policy))
    with flop_counter.FlopCounterMode(display=False) as mode:
        rec = StageRecorder(flops=mode)
        policy.predict_action_chunk(batch, noise=_noise(policy), stage=rec)
        total = mode.get_total_flops()
    return {"total": int(total), "stages": {s: int(rec.flops.get(s, 0)) for s in stages_of(policy)}}


def _timed_call(policy, batch, noise) -> tuple[float, dict[str, float]]:
    rec = StageRecorder()
    t0 = time.perf_counter()
    policy.predict_action_chunk(batch, noise=noise, stage=rec)
    return time.perf_counter() - t0, {s: rec.seconds.get(s, 0.0) for s in stages_of(policy)}


def uncached_instruction_ms(policy, batch, noise, repeats: int = 3) -> float | None:
    """Median ms of the instruction stage on a cache miss (a new instruction); None without a text encoder."""
    enc = getattr(policy.model, "text_encoder", None)
    if enc is None:
        return None
    times = []
    for _ in range(repeats):
        enc.clear_cache()
        times.append(_timed_call(policy, batch, noise)[1][INSTRUCTION_STAGE])
    return 1e3 * statistics.median(times)


def _describe(policy) -> dict[str, Any]:
    model = policy.model
    comp = model.compressor
    return {
        "compressor": policy.config.compressor.name,
        "compressor_kwargs": dict(policy.config.compressor.kwargs),
        "compressor_stage": comp.stage,
        "learned": bool(comp.learned),
        "params": sum(p.numel() for p in policy.parameters()),
        "compressor_params": sum(p.numel() for p in comp.parameters()),
        # frozen text encoder: not a parameter of the policy (not trained, not saved), counted here
        "frozen_text_encoder_params": (sum(p.numel() for p in model.text_encoder.encoder.parameters())
                                       if getattr(model, "text_encoder", None) is not None else 0),
    }


def profile_policies(
    policies: dict[str, Any],
    batches: dict[str, dict[str, Any]] | dict[str, Any],
    repeats: int = 20,
    warmup: int = 3,
    progress: bool = True,
) -> dict[str, dict[str, Any]]:
    """Profile several policies with INTERLEAVED timing; one result row per name.

    ``batches`` is either one preprocessed batch shared by all policies or {name: batch}.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    names = list(policies)
    per_name = all(n in batches for n in names)  # {name: batch} rather than one shared batch
    batch_of = {n: (batches[n] if per_name else batches) for n in names}
    rows: dict[str, dict[str, Any]] = {}
    for name in names:
        pol = policies[name]
        pol.eval()
        row = _describe(pol)
        row["flops"] = count_flops(pol, batch_of[name])
        _, info = pol.predict_action_chunk_with_info(batch_of[name], noise=_noise(pol))
        row["visual_tokens"] = info["visual_tokens_in"]
        row["visual_tokens_after"] = info["visual_tokens_after"]
        rows[name] = row

    noises = {n: _noise(policies[n]) for n in names}
    totals: dict[str, list[float]] = {n: [] for n in names}
    stages: dict[str, dict[str, list[float]]] = {n: {s: [] for s in stages_of(policies[n])} for n in names}
    rounds = range(warmup + repeats)
    if progress:
        try:
            from tqdm import tqdm

            rounds = tqdm(rounds, desc=f"profiling {len(names)} method(s)", file=sys.stderr, leave=False)
        except ImportError:  # pragma: no cover
            pass
    for r in rounds:
        k = r % len(names)
        for name in names[k:] + names[:k]:  # rotate the order every round
            total, per_stage = _timed_call(policies[name], batch_of[name], noises[name])
            if r >= warmup:
                totals[name].append(total)
                for s in per_stage:
                    stages[name][s].append(per_stage[s])

    for name in names:
        row = rows[name]
        row["latency_ms"] = {s: 1e3 * statistics.median(v) for s, v in stages[name].items()}
        uncached = uncached_instruction_ms(policies[name], batch_of[name], noises[name])
        if uncached is not None:
            row["instruction_uncached_ms"] = uncached
        row["latency_ms"]["total"] = 1e3 * statistics.median(totals[name])
        row["latency_ms_iqr"] = _iqr_ms(totals[name])
        row["latency_ms_p99"] = 1e3 * _percentile(totals[name], 99)
        row["repeats"], row["warmup"] = repeats, warmup
        f = row["flops"]
        row["gflops"] = f["total"] / 1e9
        row["backbone_flop_share"] = f["stages"]["backbone"] / f["total"] if f["total"] else 0.0
    return rows


def _percentile(xs: list[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default); p99 of a few repeats is near the maximum."""
    xs = sorted(xs)
    pos = (len(xs) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def _iqr_ms(xs: list[float]) -> float:
    if len(xs) < 4:
        return 0.0
    q = statistics.quantiles(xs, n=4)
    return 1e3 * (q[2] - q[0])


def profile_policy(policy, batch: dict[str, Any], repeats: int = 20, warmup: int = 3) -> dict[str, Any]:
    """One policy: FLOPs, tokens and median per-stage latency (see ``profile_policies``)."""
    return profile_policies({"policy": policy}, batch, repeats=repeats, warmup=warmup, progress=False)["policy"]


# --------------------------------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------------------------------
COLUMNS = (
    ("method", "{}"),
    ("stage", "{}"),
    ("tokens→LM", "{}"),
    ("GFLOPs", "{:.3f}"),
    ("LM share", "{:.0%}"),
    ("instr ms", "{}"),
    ("vision ms", "{:.1f}"),
    ("compr ms", "{:.1f}"),
    ("LM ms", "{:.1f}"),
    ("head ms", "{:.1f}"),
    ("total ms", "{:.1f}"),
    ("±IQR", "{:.1f}"),
)


def table_rows(rows: dict[str, dict[str, Any]]) -> list[list[str]]:
    out = []
    for name, r in rows.items():
        tokens = str(r["visual_tokens"])
        if r["visual_tokens_after"] != r["visual_tokens"]:
            tokens += f"→{r['visual_tokens_after']}"
        lat = r["latency_ms"]
        values = (
            name,
            r["compressor_stage"],
            tokens,
            r["gflops"],
            r["backbone_flop_share"],
            (f"{lat[INSTRUCTION_STAGE]:.2f} ({r['instruction_uncached_ms']:.1f} new)" if INSTRUCTION_STAGE in lat
             else "-"),
            lat["vision"],
            lat["compressor"],
            lat["backbone"],
            lat["action_head"],
            lat["total"],
            r["latency_ms_iqr"],
        )
        out.append([fmt.format(v) for (_, fmt), v in zip(COLUMNS, values)])
    return out


def format_table(rows: dict[str, dict[str, Any]], markdown: bool = False) -> str:
    header = [c for c, _ in COLUMNS]
    body = table_rows(rows)
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(row) + " |" for row in body]
        return "\n".join(lines)
    widths = [max(len(h), *(len(row[i]) for row in body)) for i, h in enumerate(header)]
    fmt = "  ".join(f"{{:<{w}}}" if i < 3 else f"{{:>{w}}}" for i, w in enumerate(widths))
    return "\n".join([fmt.format(*header), fmt.format(*("-" * w for w in widths)), *(fmt.format(*r) for r in body)])


def compare_runtimes(policies: dict[str, Any], batches: dict[str, dict[str, Any]], runtimes: list[str],
                     repeats: int = 20, warmup: int = 3, workdir: str | Path | None = None) -> dict[str, dict]:
    """{"<name> / <runtime>": row}: total ms per call (median, IQR) of each policy in each runtime,
    interleaved (each round calls every pair once, in a rotating order); ``vs_torch`` = torch's ms /
    this runtime's ms (> 1 = faster), ``max_abs_diff`` = largest action difference from torch."""
    import tempfile

    import numpy as np

    from vla.onnx_export import runtime_runners

    runtimes = ["torch", *[r for r in runtimes if r != "torch"]]
    tmp = tempfile.TemporaryDirectory(prefix="vla-profile-") if workdir is None else None
    pairs, rows, refs = {}, {}, {}
    for name, policy in policies.items():
        runners = runtime_runners(policy, batches[name], _noise(policy), runtimes, workdir or tmp.name)
        for rt, fn in runners.items():
            key = f"{name} / {rt}"
            rows[key] = {"policy": name, "runtime": rt}
            if isinstance(fn, str):
                rows[key]["error"] = fn
                continue
            out = fn()
            refs.setdefault(name, out)
            rows[key]["max_abs_diff"] = float(np.abs(out - refs[name]).max())
            pairs[key] = fn
    keys, times = list(pairs), {k: [] for k in pairs}
    for r in range(warmup + repeats):
        k = r % max(len(keys), 1)
        for key in keys[k:] + keys[:k]:
            t0 = time.perf_counter()
            pairs[key]()
            if r >= warmup:
                times[key].append(time.perf_counter() - t0)
    for key in keys:
        rows[key]["total_ms"] = 1e3 * statistics.median(times[key])
        rows[key]["iqr_ms"] = _iqr_ms(times[key])
    for key, row in rows.items():
        base = rows.get(f"{row['policy']} / torch", {})
        if "total_ms" in row and "total_ms" in base:
            row["vs_torch"] = base["total_ms"] / row["total_ms"]
    if tmp is not None:
        tmp.cleanup()
    return rows


def format_runtime_table(rows: dict[str, dict], markdown: bool = False) -> str:
    header = ["policy", "runtime", "total ms", "±IQR", "vs torch", "max abs diff vs torch"]
    body = []
    for r in rows.values():
        if "error" in r:
            body.append([r["policy"], r["runtime"], "-", "-", "-", r["error"][:120]])
            continue
        body.append([r["policy"], r["runtime"], f"{r['total_ms']:.2f}", f"{r['iqr_ms']:.2f}",
                     f"{r.get('vs_torch', float('nan')):.2f}x", f"{r['max_abs_diff']:.1e}"])
    if markdown:
        return "\n".join(["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
                          *("| " + " | ".join(b) + " |" for b in body)])
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(header)]
    fmt = "  ".join(f"{{:<{w}}}" if i < 2 else f"{{:>{w}}}" for i, w in enumerate(widths))
    return "\n".join([fmt.format(*header), fmt.format(*("-" * w for w in widths)), *(fmt.format(*b) for b in body)])
