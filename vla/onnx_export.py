"""A checkpoint as an ONNX graph run by onnxruntime (pre/post-processing stay in Python): the library
behind `vla export` (vla/export.py) and the runtime comparison of `vla profile runtimes=[...]`.

    vla export checkpoint=checkpoints/push_red_left_tiny_cvla format=onnx        -> outputs/export/<time>/onnx/
    vla export checkpoint=<dir> format=onnx out=<dir> [opset=17] [accel=fast]

    policy = vla.runtime.load_policy(<exported folder>)   # OnnxChunkPolicy (vla/onnx_policy.py):
    policy.infer(obs)                                      # same infer/reset/embodiment as the torch one

**In the graph** (one ``model.onnx``): vision tower, compressor, language backbone and the action head
with its fixed flow steps (the Euler loop unrolled; a step cache, ``head.cache_interval``, unrolled
with it), from the preprocessed batch to the normalised chunk:

    inputs   images      float32 [1, C, 3, S, S]   cameras in config.camera_keys order, in [0, 1]
             state       float32 [1, state_dim]    normalised (by the preprocessor)
             tokens      int64   [1, T]            instruction ids; T is dynamic (<= max_instruction_tokens)
             token_mask  bool    [1, T]
             noise       float32 [1, H, A]         the flow head's initial sample (flow heads only). An
                                                   explicit input: the graph itself is deterministic
    outputs  actions     float32 [1, H, A]         the normalised chunk
             kept.<cam>  float32 [1, N] or [1, N, M]  the compressor's keep mask / soft assignment (overlays)

**In Python**, saved beside the graph (the checkpoint's own files, copied): tokenisation, image checks
and resize, state normalisation (``policy_preprocessor.json`` + its ``.safetensors``) and action
un-normalisation (``policy_postprocessor.json`` + state). ``config.json``, ``fingerprint.json`` and
``model.safetensors`` are copied too, so the folder describes itself, passes the same processor-step
checks as any checkpoint (policies/checkpoint_files.py) and can be exported again. ``export.json``
is the manifest (its presence + ``model.onnx`` is what ``load_policy`` dispatches on): format,
opset, exporter and library versions, the source checkpoint and its fingerprint + weights hash,
the graph's inputs/outputs, the SHA-256 of ``model.onnx``, and the verification below.

**Checks.** Refused before tracing, with the reason: a non-float32 model, a pretrained text encoder
(``instruction.encoder`` != word: its per-instruction cache is Python and would be frozen into the
graph). An op the exporter cannot convert -> ``UnsupportedOpError`` naming the op, the module that
calls it (``model.compressor...``) and the source line. After writing, the exported folder is loaded
the way ``load_policy`` loads it and run against eager torch on example observations (two
instruction lengths, seeded noise): a graph whose actions differ by more than ``tolerance``
(default 1e-4, env units) is refused and nothing is left at ``out``.

Exporter: torch.onnx's TorchScript tracer (``dynamo=False``); the dynamo exporter needs onnxscript,
which is not a dependency. Batch size 1 (what the runtime serves).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

from vla.onnx_policy import (  # the folder format lives with its reader (a library module)
    FORMAT,
    FORMAT_VERSION,
    KEPT_PREFIX,
    MANIFEST_FILE,
    ONNX_FILE,
    onnx_session,
    sha256,
)

DEFAULT_OPSET = 17
DEFAULT_TOLERANCE = 1e-4
INPUT_NAMES = ("images", "state", "tokens", "token_mask", "noise")
# Copied from the checkpoint: every json/safetensors (config, fingerprint, weights, processor
# pipelines and their state) and the training config.
COPY_SUFFIXES = (".json", ".safetensors", ".yaml")
VERIFY_INSTRUCTIONS = ("push the red cube to the left", "pick up the cube")


class ExportError(RuntimeError):
    """A checkpoint that cannot be exported as asked (the message says why and what to do)."""


class UnsupportedOpError(ExportError):
    """The exporter has no ONNX conversion for an op the policy calls: ``op``, ``module``, ``source``."""

    def __init__(self, message: str, op: str, module: str | None = None, source: str | None = None) -> None:
        super().__init__(message)
        self.op, self.module, self.source = op, module, source


# --------------------------------------------------------------------------------------------------
# The graph: preprocessed inputs -> normalised chunk (+ keep masks)
# --------------------------------------------------------------------------------------------------
def _graph_module(model, camera_keys: list[str], flow: bool):
    """An nn.Module around a ``VLAModel`` whose forward is exactly what the ONNX graph computes."""
    from torch import nn

    class PolicyGraph(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model  # attribute name "model": scopes read model.compressor..., as in VLAPolicy

        def forward(self, images, state, tokens, token_mask, noise=None):
            cond, info = self.model.encode({"images": images, "state": state, "tokens": tokens,
                                            "token_mask": token_mask})
            actions = self.model.head.sample(cond, noise if flow else None)
            return (actions.float(), *(info["kept"][k].float() for k in camera_keys))

    return PolicyGraph().eval()


def is_flow(policy) -> bool:
    return policy.config.head.type == "flow"


def graph_inputs(policy, batch: dict[str, Any], noise=None) -> dict[str, Any]:
    """The graph's inputs (torch tensors, by name) for a preprocessed batch, as the eager policy sees them."""
    import torch

    inputs = policy._inputs(batch)  # the eager policy's own picking/casting of the batch
    out = {"images": inputs["images"], "state": inputs["state"], "tokens": inputs["tokens"],
           "token_mask": inputs["token_mask"]}
    if is_flow(policy):
        cfg = policy.config
        out["noise"] = (torch.randn(1, cfg.chunk_size, cfg.action_dim) if noise is None
                        else torch.as_tensor(noise)).to(inputs["images"])
    return out


def output_names(policy) -> list[str]:
    return ["actions", *(KEPT_PREFIX + k.removeprefix("observation.images.") for k in policy.config.camera_keys)]


def check_exportable(policy) -> None:
    """ExportError for what the graph cannot hold faithfully (before anything is traced)."""
    cfg = policy.config
    if cfg.dtype != "float32":
        raise ExportError(f"dtype={cfg.dtype}: ONNX export supports float32 policies only (onnxruntime's CPU "
                          "kernels); load the checkpoint with dtype=float32 or export a float32 checkpoint")
    if getattr(policy.model, "text_encoder", None) is not None:
        raise ExportError(f"instruction.encoder={cfg.instruction.encoder}: the pretrained text encoder caches its "
                          "output per instruction in Python, which a traced graph would freeze to the example "
                          "instruction; exporting it is not supported (word-level instruction policies are)")


def export_graph(policy, inputs: dict[str, Any], path: str | Path, opset: int = DEFAULT_OPSET) -> dict[str, Any]:
    """Trace ``policy`` (a VLAPolicy) on ``inputs`` (``graph_inputs``) into ``path``; returns the graph spec.

    Raises ``UnsupportedOpError`` naming the op/module/source line the exporter cannot convert and
    ``ExportError`` for any other exporter failure."""
    import torch

    check_exportable(policy)
    names = [n for n in INPUT_NAMES if n in inputs]
    module = _graph_module(policy.model, list(policy.config.camera_keys), "noise" in inputs)
    args = tuple(inputs[n] for n in names)
    outs = output_names(policy)
    dynamic = {"tokens": {1: "instruction_tokens"}, "token_mask": {1: "instruction_tokens"}}
    try:
        with torch.no_grad(), warnings.catch_warnings(), _quiet_stdout():
            warnings.simplefilter("ignore")  # tracer warnings about frozen Python values: checked by verify
            torch.onnx.export(module, args, str(path), dynamo=False, opset_version=int(opset),
                              input_names=names, output_names=outs, dynamic_axes=dynamic,
                              do_constant_folding=True)
    except torch.onnx.errors.UnsupportedOperatorError as e:
        raise _unsupported(e, module, args, opset) from None
    except Exception as e:  # noqa: BLE001 - tracer/exporter errors of every kind: named, with the cause
        m = re.search(r"op for (aten::\w+)", str(e))  # the TorchScript exporter's internal assert on some ops
        if m:
            raise _unsupported(e, module, args, opset, op=m.group(1)) from None
        raise ExportError(f"torch.onnx could not export the policy (opset {opset}): {type(e).__name__}: "
                          f"{_first_line(e)}") from e
    return {
        "inputs": [{"name": n, "shape": list(inputs[n].shape), "dtype": str(inputs[n].dtype).removeprefix("torch."),
                    **({"dynamic_axes": {"1": "instruction_tokens"}} if n in dynamic else {})} for n in names],
        "outputs": outs,
    }


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _unsupported(e: Exception, module, args, opset: int, op: str | None = None) -> UnsupportedOpError:
    m = re.search(r"operator '([\w:.]+)'", str(e))
    op = op or (m.group(1) if m else "?")
    where, cls, source = _locate_op(module, args, op)
    msg = f"cannot export this policy to ONNX: the op '{op}'"
    if where:
        msg += f" (called in module '{where}' ({cls})" + (f" at {source})" if source else ")")
    msg += (f" has no ONNX conversion in torch.onnx at opset {opset}. Use a compressor/method without it, "
            "replace the op with supported ones, or try a higher opset (opset=...)")
    return UnsupportedOpError(msg, op=op, module=where, source=source)


def _locate_op(module, args, op: str) -> tuple[str | None, str | None, str | None]:
    """(module path 'model.compressor...', its class, 'file:line') of the first node ``op`` in a trace of ``module``."""
    import torch

    import torch.jit._trace as jit_trace

    # Scope names per node, as torch.onnx's own export records them: the tracer's module map.
    saved = getattr(jit_trace, "_trace_module_map", None)
    try:
        jit_trace._trace_module_map = {m: f"{torch.typename(type(m))}::{name}" for name, m in module.named_modules()}
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            graph, _ = torch.jit._get_trace_graph(module, args)
    except Exception:  # noqa: BLE001 - best effort: the op name alone still goes into the error
        return None, None, None
    finally:
        jit_trace._trace_module_map = saved
    for node in graph.nodes():
        if node.kind() != op:
            continue
        scope = node.scopeName()  # "pkg.PolicyGraph::/pkg.VLAModel::model/pkg.Compressor::model.compressor"
        last = scope.rsplit("/", 1)[-1] if "/" in scope else ""
        cls, _, path = last.partition("::")
        source = None
        src = str(node.sourceRange() or "")
        sm = re.search(r"([^\s()]+\.py)\((\d+)\)", src) or re.search(r"([^\s:]+\.py):(\d+)", src)
        if sm:
            file = Path(sm.group(1))
            try:
                file = file.resolve().relative_to(Path(__file__).resolve().parent.parent)
            except ValueError:
                pass
            source = f"{file}:{sm.group(2)}"
        return path or None, cls or None, source
    return None, None, None


@contextlib.contextmanager
def _quiet_stdout():
    """Swallow what torch's C++ exporter prints on fd 1 (a whole IR graph on failure)."""
    try:
        fd = os.dup(1)
    except OSError:  # pragma: no cover - no stdout
        yield
        return
    with tempfile.TemporaryFile() as sink:
        try:
            import sys

            sys.stdout.flush()
            os.dup2(sink.fileno(), 1)
            yield
        finally:
            os.dup2(fd, 1)
            os.close(fd)


# --------------------------------------------------------------------------------------------------
# onnxruntime
# --------------------------------------------------------------------------------------------------
def to_numpy_feed(inputs: dict[str, Any], session) -> dict[str, np.ndarray]:
    wanted = {i.name for i in session.get_inputs()}
    return {k: v.detach().cpu().numpy() if hasattr(v, "detach") else np.asarray(v)
            for k, v in inputs.items() if k in wanted}


# --------------------------------------------------------------------------------------------------
# Exporting a checkpoint folder
# --------------------------------------------------------------------------------------------------
def example_observation(robot, instruction: str, seed: int = 0) -> dict[str, Any]:
    """A runtime obs dict for ``robot`` (vla/runtime.py format): random uint8 frames, a random state."""
    rng = np.random.default_rng(seed)
    return {
        "images": {cam.key.removeprefix("observation.images."): rng.integers(0, 256, (cam.height, cam.width, 3),
                                                                             dtype=np.uint8)
                   for cam in robot.cameras},
        "state": (0.1 * rng.standard_normal(robot.state_dim)).astype(np.float32),
        "instruction": instruction,
    }


def _load_torch(checkpoint: Path, device: str, accel: Any, trust: bool | None):
    """The eager VLAChunkPolicy of a checkpoint folder (never the ONNX dispatch: an exported folder
    keeps its torch weights, so it can be exported again)."""
    from vla.checkpoint import load_checkpoint
    from vla.runtime import VLA_TYPE, VLAChunkPolicy, checkpoint_type

    kind = checkpoint_type(checkpoint)
    if kind != VLA_TYPE:
        raise ExportError(f"'{checkpoint}' holds a lerobot '{kind}' policy; vla export exports VLA checkpoints")
    loaded = load_checkpoint(checkpoint, device=device, trust_checkpoint_code=trust)
    policy = loaded.policy
    if accel is not None:
        from vla.accel import accelerate

        policy, _ = accelerate(policy, loaded.preprocessor, accel)
    return VLAChunkPolicy(policy, loaded.preprocessor, loaded.postprocessor, checkpoint=checkpoint)


def export_checkpoint(checkpoint: str | Path, out: str | Path, opset: int = DEFAULT_OPSET, accel: Any = None,
                      tolerance: float = DEFAULT_TOLERANCE, instructions: tuple[str, ...] = VERIFY_INSTRUCTIONS,
                      seed: int = 0, overwrite: bool = False, trust_checkpoint_code: bool | None = None) -> dict:
    """Export ``checkpoint`` to the folder ``out`` (see the module docstring); returns the manifest."""
    import torch

    from vla.accel import accel_spec

    src = Path(checkpoint).expanduser().absolute()
    out = Path(out).expanduser().absolute()
    if out == src or src in out.parents:
        raise ExportError(f"out='{out}' is the checkpoint folder or inside it; export to another folder")
    if out.exists() and any(out.iterdir()):
        if not overwrite or not (out / MANIFEST_FILE).is_file():
            raise ExportError(f"out='{out}' exists and is not empty; choose another folder"
                              + (" (or overwrite=true: it is an earlier export)" if (out / MANIFEST_FILE).is_file()
                                 else ""))
    spec = accel_spec(accel)
    started = time.perf_counter()
    eager = _load_torch(src, "cpu", spec, trust_checkpoint_code)
    policy = eager.policy
    check_exportable(policy)

    obs = example_observation(eager.embodiment, instructions[0], seed)
    with torch.inference_mode():
        batch = eager.preprocessor(eager._batch(obs))
    g = torch.Generator().manual_seed(seed)
    cfg = policy.config
    noise = torch.randn(1, cfg.chunk_size, cfg.action_dim, generator=g)
    inputs = graph_inputs(policy, batch, noise)
    with torch.inference_mode():
        _, compression = policy.predict_action_chunk_with_info(batch, noise=noise)  # token counts for the manifest
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        graph = export_graph(policy, inputs, staging / ONNX_FILE, opset)
        import onnx

        onnx.checker.check_model(str(staging / ONNX_FILE))
        if spec is None:
            for f in sorted(src.iterdir()):
                if f.is_file() and f.suffix in COPY_SUFFIXES and f.name != MANIFEST_FILE:
                    shutil.copy2(f, staging / f.name)
        else:  # the accelerated policy's own config/weights/fingerprint (pruned layers, its compressor)
            from vla.checkpoint import save_checkpoint

            save_checkpoint(staging, policy, eager.preprocessor, eager.postprocessor)
            if (src / "train_config.yaml").is_file():
                shutil.copy2(src / "train_config.yaml", staging / "train_config.yaml")
        manifest = _manifest(src, eager, graph, opset, spec, compression)
        manifest["onnx_sha256"] = sha256(staging / ONNX_FILE)
        _write_manifest(staging, manifest)
        manifest["verification"] = verify(eager, staging, instructions, seed, tolerance)
        manifest["export_seconds"] = round(time.perf_counter() - started, 2)
        _write_manifest(staging, manifest)
        umask = os.umask(0)
        os.umask(umask)
        staging.chmod(0o777 & ~umask)  # mkdtemp makes it private; the export is an ordinary folder
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest


def _write_manifest(folder: Path, manifest: dict) -> None:
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, default=str) + "\n")


def _manifest(src: Path, eager, graph: dict, opset: int, spec, compression: dict) -> dict[str, Any]:
    import onnx
    import onnxruntime
    import torch

    policy = eager.policy
    cfg = policy.config
    fp_file = src / "fingerprint.json"
    fp = json.loads(fp_file.read_text()) if fp_file.is_file() else {}
    info = compression
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "onnx_file": ONNX_FILE,
        "opset": int(opset),
        "exporter": f"torch.onnx TorchScript tracer (dynamo=False), torch {torch.__version__}",
        "versions": {"torch": torch.__version__, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__},
        "source_checkpoint": str(src),
        "source_fingerprint": fp.get("fingerprint") or cfg.fingerprint(),
        "source_weights_sha256": fp.get("weights_sha256"),
        # the graph's own architecture (differs from the source's with accel: pruned layers, compressor)
        "fingerprint": cfg.fingerprint(),
        "accel": spec.name if spec is not None else "none",
        "policy_type": str(cfg.type),
        "batch_size": 1,
        "camera_keys": list(cfg.camera_keys),
        "grid": list(cfg.vision.grid),
        "chunk_size": int(cfg.chunk_size),
        "action_dim": int(cfg.action_dim),
        "n_action_steps": int(cfg.n_action_steps),
        "head": {"type": cfg.head.type, "num_flow_steps": int(getattr(cfg.head, "num_flow_steps", 0) or 0),
                 "cache_interval": int(getattr(policy.model.head, "cache_interval", 1))},
        "compressor": cfg.compressor.name,
        "visual_tokens": int(info.get("visual_tokens_in") or 0),
        "visual_tokens_after": int(info.get("visual_tokens_after") or 0),
        "num_params": int(sum(p.numel() for p in policy.parameters())),
        "inputs": graph["inputs"],
        "outputs": graph["outputs"],
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def verify(eager, folder: Path, instructions, seed: int, tolerance: float) -> dict[str, Any]:
    """Load ``folder`` as ``load_policy`` would and compare its chunks with eager torch's (same obs,
    same seeded noise, env units); ExportError above ``tolerance``."""
    import torch

    from vla.onnx_policy import OnnxChunkPolicy

    onnx_policy = OnnxChunkPolicy(folder)
    worst, cases = 0.0, []
    for i, text in enumerate(instructions):
        obs = example_observation(eager.embodiment, text, seed + 1 + i)
        torch.manual_seed(seed + i)
        ref = eager.infer(obs)["actions"]
        torch.manual_seed(seed + i)
        try:
            got = onnx_policy.infer(obs)["actions"]
        except Exception as e:  # noqa: BLE001 - onnxruntime's own error types
            raise ExportError(f"the exported graph does not run in onnxruntime on an observation with the instruction "
                              f"{text!r}: {type(e).__name__}: {_first_line(e)} (a shape the tracer froze, or an op "
                              "onnxruntime does not implement); refusing the export") from e
        diff = float(np.abs(ref - got).max())
        cases.append({"instruction": text, "max_abs_diff": diff})
        worst = max(worst, diff)
    if not worst <= tolerance:
        raise ExportError(f"the exported graph's actions differ from eager torch by {worst:.3g} (> tolerance "
                          f"{tolerance:g}) on {cases}; a value the tracer froze (a Python branch or int() on a "
                          "tensor) probably depends on the input. Refusing the export.")
    return {"max_abs_diff": worst, "tolerance": tolerance, "cases": cases, "noise": "torch.manual_seed per case"}


# --------------------------------------------------------------------------------------------------
# CLI (Hydra)
# --------------------------------------------------------------------------------------------------
# --------------------------------------------------------------------------------------------------
# Runtimes side by side (`vla profile runtimes=[torch,onnx]`)
# --------------------------------------------------------------------------------------------------
RUNTIMES = ("torch", "onnx", "compile")


def runtime_runners(policy, batch: dict[str, Any], noise, runtimes, workdir: str | Path,
                    opset: int = DEFAULT_OPSET) -> dict[str, Any]:
    """One policy call (batch 1, the same preprocessed batch and noise) per runtime, for timing:
    {runtime: fn() -> normalised chunk (numpy)}, or {runtime: "n/a: <why>"} when it cannot run.

    ``torch``: eager ``predict_action_chunk``; ``onnx``: this module's graph in onnxruntime (as many
    intra-op threads as torch uses); ``compile``: ``torch.compile`` of the same graph module
    (inductor, compiled on the first call: offline, but slow to build)."""
    import torch

    unknown = sorted(set(runtimes) - set(RUNTIMES))
    if unknown:
        raise ValueError(f"unknown runtimes {unknown}; choose from {list(RUNTIMES)}")
    inputs = graph_inputs(policy, batch, noise)
    names = [n for n in INPUT_NAMES if n in inputs]
    runners: dict[str, Any] = {}
    for rt in runtimes:
        if rt == "torch":
            def run_torch():
                with torch.inference_mode():
                    return policy.predict_action_chunk(batch, noise=inputs.get("noise")).numpy()
            runners[rt] = run_torch
        elif rt == "onnx":
            try:
                path = Path(workdir) / f"policy_{len(list(Path(workdir).glob('*.onnx')))}.onnx"
                export_graph(policy, inputs, path, opset)
                session = onnx_session(path)
                feed = to_numpy_feed(inputs, session)
                session.run(None, feed)  # a graph onnxruntime cannot run fails here, not in the timing
                runners[rt] = lambda s=session, f=feed: s.run(None, f)[0]
            except Exception as e:  # noqa: BLE001 - not exportable / onnxruntime refuses or fails the graph
                runners[rt] = f"n/a: {type(e).__name__}: {_first_line(e)}"
        else:
            module = _graph_module(policy.model, list(policy.config.camera_keys), "noise" in inputs)
            args = tuple(inputs[n] for n in names)
            try:
                compiled = torch.compile(module, dynamic=False)
                with torch.inference_mode():
                    compiled(*args)  # compile now, not inside the timed calls
            except Exception as e:  # noqa: BLE001 - no compiler, unsupported graph, ...
                runners[rt] = f"n/a: torch.compile failed: {_first_line(e)}"
                continue

            def run_compiled(c=compiled, a=args):
                with torch.inference_mode():
                    return c(*a)[0].numpy()
            runners[rt] = run_compiled
    return runners
