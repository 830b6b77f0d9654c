"""Speed of attribution and circuit evaluation against the plain passes they are made of.

Two ratios (targets: at most 1.3 each):
- EAP-IG-inputs with k steps on a batch, against k plain forward+backward passes of the same
  batch (gradient to the input embeddings only, as the model is frozen);
- one faithfulness curve (every distinct circuit stacked along the batch, with the corrupt
  activations cached), against the plain forward passes it needs: clean, corrupt, and one per
  distinct circuit.
"""

from __future__ import annotations

import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

from dfa.core.attribution import attribute
from dfa.core.evaluate import FRACTIONS, distinct_circuits, evaluate_circuits, random_scores
from dfa.core.graph import INPUT_HOOK, NodeGraph
from dfa.core.interventions import model_device
from dfa.core.metrics import task_metric
from dfa.core.tasks import make_batches, make_dataset


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device, repeats: int) -> float:
    """Median wall time of `repeats` calls, after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def plain_forward_backward(model: Any, batch: dict[str, torch.Tensor], metric: str) -> None:
    """The cheapest pass that yields gradients on a frozen model: the metric's gradient to
    the input embeddings."""

    def leaf(act: torch.Tensor, hook: Any) -> torch.Tensor:
        return act.detach().requires_grad_(True)

    with torch.enable_grad():
        logits = model.run_with_hooks(batch["clean"], fwd_hooks=[(INPUT_HOOK, leaf)])
        task_metric(metric, logits, batch).sum().backward()


def bench_batch(
    model_name: str,
    task: str,
    batch_size: int,
    device: str | None,
    dtype: str = "float32",
    tokenizer: str | None = None,
):
    """The model, its graph, the task's test prompts and one batch of them on the model's device
    (`tokenizer` overrides the model's, as `load_model`'s: a `:random` model of a family whose
    tokenizer is not stored offline, e.g. `gemma-3-270m:random` with `gpt2`)."""
    from dfa.core.models import load_model

    model = load_model(model_name, device=device, dtype=dtype, tokenizer=tokenizer)
    graph = NodeGraph.from_model(model)
    data = make_dataset(task, model, batch_size, "test")
    (batch,) = make_batches(data.examples, model, batch_size)
    return model, graph, data, {k: v.to(model_device(model)) for k, v in batch.items()}


def run(
    model_name: str = "gpt2:random",
    task: str = "ioi",
    batch_size: int = 8,
    ig_steps: int = 5,
    repeats: int = 3,
    device: str | None = None,
) -> dict[str, Any]:
    model, graph, data, batch = bench_batch(model_name, task, batch_size, device)
    dev = model_device(model)
    metric = data.metric

    ig = timed(
        lambda: attribute(model, graph, [batch], metric, "eap-ig-inputs", ig_steps=ig_steps), dev, repeats
    )
    fb = timed(lambda: [plain_forward_backward(model, batch, metric) for _ in range(ig_steps)], dev, repeats)

    scores = random_scores(len(graph), 0)
    n_circuits = int(distinct_circuits([scores], graph)[0].shape[0])
    curve = timed(
        lambda: evaluate_circuits(model, graph, [batch], metric, {"r": scores}, n_boot=0), dev, repeats
    )

    def forwards() -> None:
        with torch.no_grad():
            model(batch["clean"])
            model(batch["corrupt"])
            model(batch["clean"].repeat(n_circuits, 1))

    fw = timed(forwards, dev, repeats)
    return {
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu_threads": torch.get_num_threads(),
            "device": str(dev) if dev.type != "cuda" else torch.cuda.get_device_name(dev),
            "torch": torch.__version__,
        },
        "model": model_name,
        "nodes": len(graph),
        "task": task,
        "batch": batch_size,
        "positions": int(batch["clean"].shape[1]),
        "eap_ig_inputs": {
            "steps": ig_steps,
            "seconds": round(ig, 4),
            "plain_forward_backward_x_steps_seconds": round(fb, 4),
            "ratio": round(ig / fb, 3),
        },
        "faithfulness_curve": {
            "fractions": len(FRACTIONS),
            "distinct_circuits": n_circuits,
            "seconds": round(curve, 4),
            "plain_forwards_seconds": round(fw, 4),
            "ratio": round(curve / fw, 3),
        },
        "target_ratio": 1.3,
    }


def run_training(
    target_name: str = "gpt2-medium:random",
    n_src: int = 156,
    task: str = "ioi",
    batch_size: int = 8,
    repeats: int = 3,
    device: str | None = None,
) -> dict[str, Any]:
    """One training step of the map (the default curve objective: one soft top-k mask per circuit
    size stacked along the batch, with cached corrupt activations; KL, backward to W, Adam step)
    against one plain forward+backward of the target on the same number of stacked rows (the
    batch repeated once per size; gradient to the input embeddings, the model being frozen)."""
    import torch.nn.functional as F

    from dfa.config import TrainConfig
    from dfa.core.interventions import donor_activations
    from dfa.core.metrics import final_logits
    from dfa.training import MapTrainer, TrainBatch

    model, graph, data, batch = bench_batch(target_name, task, batch_size, device)
    dev = model_device(model)
    donor = donor_activations(model, graph, batch, "patching")
    with torch.no_grad():
        clean = final_logits(model(batch["clean"]), batch["last"]).float().log_softmax(-1)
    prompts = {k: v for k, v in batch.items() if k != "corrupt"}
    item = TrainBatch(0, prompts, clean, donor)  # type: ignore[arg-type]
    # A source graph with `n_src` mapped nodes (gpt2: 12 layers x 12 heads + 12 MLPs = 156).
    layers = 12 if n_src == 156 else 1
    src_graph = NodeGraph(layers, n_src // layers - 1)
    config = TrainConfig(src="source", tgt=target_name, tasks=[task])
    module = MapTrainer(config.to_dict(), src_graph.mapped_names, graph.mapped_names).to(dev)
    module.attach(model, src_graph, {task: torch.rand(len(src_graph))}, {task: data.metric})
    opt = torch.optim.Adam(module.map.parameters(), lr=config.lr)

    def step() -> None:
        opt.zero_grad()
        module.loss_terms(item)["loss"].backward()
        opt.step()

    sizes = len(module.ks) if config.objective == "curve" else 1
    stacked, last, target = (
        batch["clean"].repeat(sizes, 1),
        batch["last"].repeat(sizes),
        clean.repeat(sizes, 1),
    )

    def plain() -> None:
        def leaf(act: torch.Tensor, hook: Any) -> torch.Tensor:
            return act.detach().requires_grad_(True)

        logits = model.run_with_hooks(stacked, fwd_hooks=[(INPUT_HOOK, leaf)])
        logp = final_logits(logits, last).float().log_softmax(-1)
        F.kl_div(logp, target, log_target=True, reduction="batchmean").backward()

    t_step = timed(step, dev, repeats)
    t_plain = timed(plain, dev, repeats)
    return {
        "model": target_name,
        "nodes": len(graph),
        "map": [len(src_graph) - 1, len(graph) - 1],
        "batch": batch_size,
        "objective": config.objective,
        "circuit_sizes": list(module.ks) if config.objective == "curve" else None,
        "stacked_rows": batch_size * sizes,
        "positions": int(batch["clean"].shape[1]),
        "device": str(dev) if dev.type != "cuda" else torch.cuda.get_device_name(dev),
        "cpu_threads": torch.get_num_threads(),
        "training_step_seconds": round(t_step, 4),
        "plain_forward_backward_seconds": round(t_plain, 4),
        "ratio": round(t_step / t_plain, 3),
        "target_ratio": 1.2,
    }
