"""Peak memory of attribution (EAP-IG over inputs) and of a faithfulness curve against one plain
forward+backward of the same batch (`dfa bench --memory MODEL`).

Each of the three runs (plain, attribution, curve) is measured in a fresh process, after the
model and the batch are loaded, so that one run's freed memory never hides the next one's peak:
- on CUDA, `torch.cuda.max_memory_allocated` above what was allocated before the run;
- on CPU, the peak resident set size (Linux `VmHWM`, reset through `/proc/self/clear_refs`)
  above the resident set before the run.
The plain pass is the model's ordinary forward (every position unembedded) and a backward of
the task metric to the input embeddings, as a user would run it.
"""

from __future__ import annotations

import multiprocessing as mp
import queue as queue_module
import re
from pathlib import Path
from typing import Any

import torch

from dfa.core.errors import DfaError

PHASES = ("plain", "attribution", "curve")
TARGET_RATIO = 1.5


def _status(key: str) -> int:
    """A `/proc/self/status` field in bytes (Linux)."""
    text = Path("/proc/self/status").read_text()
    found = re.search(rf"^{key}:\s+(\d+) kB", text, re.MULTILINE)
    if found is None:
        raise DfaError(f"Peak memory on the CPU needs Linux's /proc/self/status ({key} is missing).")
    return int(found.group(1)) * 1024


def _reset_peak(device: torch.device) -> int:
    """Forget the peak so far; the memory in use now (the run's baseline)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        return torch.cuda.memory_allocated(device)
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current VmRSS
    except OSError as err:
        raise DfaError(f"Peak memory on the CPU needs Linux's /proc/self/clear_refs ({err}).") from None
    return _status("VmRSS")


def _peak(device: torch.device) -> int:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device)
    return _status("VmHWM")


def measure(spec: dict[str, Any]) -> dict[str, Any]:
    """One run's peak memory above its baseline, in this process (`spec`: model, task, batch,
    ig_steps, device, dtype, max_rows, phase; optional tokenizer)."""
    from dfa.core.attribution import attribute
    from dfa.core.evaluate import evaluate_circuits, random_scores
    from dfa.core.interventions import model_device
    from dfa.experiments.bench import bench_batch, plain_forward_backward

    torch.set_num_threads(spec.get("threads") or torch.get_num_threads())
    model, graph, data, batch = bench_batch(
        spec["model"], spec["task"], spec["batch"], spec["device"], spec["dtype"], spec.get("tokenizer")
    )
    dev = model_device(model)
    rows = {} if spec["max_rows"] is None else {"max_rows": spec["max_rows"]}
    scores = random_scores(len(graph), 0)
    runs = {
        "plain": lambda: plain_forward_backward(model, batch, data.metric),
        "attribution": lambda: attribute(
            model, graph, [batch], data.metric, "eap-ig-inputs", ig_steps=spec["ig_steps"], **rows
        ),
        "curve": lambda: evaluate_circuits(
            model, graph, [batch], data.metric, {"r": scores}, n_boot=0, **rows
        ),
    }
    base = _reset_peak(dev)
    runs[spec["phase"]]()
    return {
        "bytes": _peak(dev) - base,
        "positions": int(batch["clean"].shape[1]),
        "vocab": int(model.cfg.d_vocab),
        "nodes": len(graph),
        "device": str(dev) if dev.type != "cuda" else torch.cuda.get_device_name(dev),
    }


def _child(spec: dict[str, Any], queue) -> None:
    try:
        queue.put(("ok", measure(spec)))
    except Exception as err:  # noqa: BLE001 (any failure is reported by the parent)
        queue.put(("error", f"{type(err).__name__}: {err}"))


def measure_fresh(spec: dict[str, Any]) -> dict[str, Any]:
    """`measure` in a fresh (spawned) process."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(spec, queue))
    proc.start()
    while True:
        try:
            status, value = queue.get(timeout=2)
            break
        except queue_module.Empty:
            if not proc.is_alive():  # killed (out of memory?) or failed before reporting
                status, value = "error", f"the process exited with code {proc.exitcode}"
                break
    proc.join()
    if status != "ok":
        raise DfaError(f"The {spec['phase']} memory run failed: {value}")
    return value


def run_memory(
    model_name: str,
    task: str = "ioi",
    batch_size: int = 25,
    ig_steps: int = 5,
    device: str | None = None,
    dtype: str = "float32",
    max_rows: int | None = None,
    tokenizer: str | None = None,
) -> dict[str, Any]:
    """Peak memory of eap-ig-inputs and of a curve (one batch), and their ratios to one plain
    forward+backward of the batch (module docstring)."""
    spec = {
        "model": model_name,
        "task": task,
        "batch": batch_size,
        "ig_steps": ig_steps,
        "device": device,
        "dtype": dtype,
        "max_rows": max_rows,
        "tokenizer": tokenizer,
        "threads": torch.get_num_threads(),
    }
    got = {phase: measure_fresh({**spec, "phase": phase}) for phase in PHASES}
    mib = {phase: round(v["bytes"] / 2**20, 1) for phase, v in got.items()}
    plain = max(1, got["plain"]["bytes"])
    info = got["plain"]
    return {
        "model": model_name,
        "tokenizer": tokenizer,
        "task": task,
        "device": info["device"],
        "dtype": dtype,
        "vocab": info["vocab"],
        "nodes": info["nodes"],
        "batch": batch_size,
        "positions": info["positions"],
        "ig_steps": ig_steps,
        "max_rows": max_rows,
        "measured": "cuda max_memory_allocated" if info["device"] != "cpu" else "peak RSS (VmHWM)",
        "plain_forward_backward_mib": mib["plain"],
        "attribution_peak_mib": mib["attribution"],
        "curve_peak_mib": mib["curve"],
        "attribution_peak_memory_ratio": round(got["attribution"]["bytes"] / plain, 3),
        "curve_peak_memory_ratio": round(got["curve"]["bytes"] / plain, 3),
        "target_ratio": TARGET_RATIO,
    }
