"""Build a toy ladder: one tokenizer, the task text, each model trained, saved and scored."""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from queue import Empty

import torch

from dfa.core.errors import DfaError
from dfa.core.io import finite
from dfa.zoo.card import (
    CARD,
    MAX_CORRUPT_SHARE,
    MIN_ACCURACY,
    ROLE_THRESHOLD,
    TEST_PAIRS,
    role_census,
    score_tasks,
)
from dfa.zoo.spec import DEFAULT_SEED, FAMILY_ARCH, ToySpec, ladder_specs, zoo_root
from dfa.zoo.text import TaskText, extra_texts
from dfa.zoo.tokenizer import build_tokenizer
from dfa.zoo.train import TrainConfig, default_config, train_toy

SAVED_DTYPE = torch.float16  # halves the committed size; cards score the saved weights


def check_family(family: str) -> str:
    if family not in FAMILY_ARCH:
        raise DfaError(f"Unknown toy ladder {family!r}; the toy ladders are {', '.join(FAMILY_ARCH)}.")
    return family


def _replace_dir(tmp: Path, final: Path) -> None:
    """Move a finished folder into place; an interrupted build never leaves a half-written model
    under the final name."""
    old = final.with_name(f".{final.name}.old")
    if old.exists():
        shutil.rmtree(old)
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    if old.exists():
        shutil.rmtree(old)


def _versions() -> dict[str, str]:
    import lightning
    import transformers

    import dfa

    return {
        "dfa": dfa.__version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "lightning": lightning.__version__,
    }


def save_and_score(model, tokenizer, folder: Path, split: str, seed: int, pairs: int = TEST_PAIRS):
    """Save `model` (in SAVED_DTYPE) and its tokenizer to `folder`, load it back the way every dfa
    command does, and score every task on `pairs` pairs of `split`; returns those scores and the
    model's role census (`card.role_census`)."""
    from dfa.core.models import load_model

    model.to(SAVED_DTYPE).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    loaded = load_model(str(folder), device="cpu")
    return score_tasks(loaded, pairs, split, seed), role_census(loaded)


def build_model(
    spec: ToySpec,
    tokenizer,
    text: TaskText,
    seed: int,
    out: Path,
    config: TrainConfig | None = None,
    progress_queue=None,
) -> dict:
    """Train `spec`, save it (fp16 safetensors, config, tokenizer) in a temporary folder, reload
    it by the normal path and score it, then move it to `out/spec.name` with its card; returns
    the card."""
    from dfa.core.models import count_parameters

    config = config or default_config(spec)
    start = time.perf_counter()
    log: dict = {}
    model = train_toy(spec, tokenizer, text, seed, config, progress_queue, log)
    seconds = time.perf_counter() - start
    card = {
        "name": spec.name,
        "family": spec.family,
        "architecture": type(model).__name__,
        "n_layers": spec.n_layers,
        "n_heads": spec.n_heads,
        "d_model": spec.d_model,
        "d_head": spec.d_model // spec.n_heads,
        "n_nodes": spec.n_nodes,
        "n_params": count_parameters(model),
        "vocab_size": len(tokenizer),
        "seed": seed,
        "steps": log["steps"],  # trained: the val checks stop early at the bar (at most training.steps)
        "train_seconds": round(seconds, 1),
        "training": {
            **asdict(config),
            "text": {"pairs": text.pairs, "corrupt_prompts": text.corrupt, "span_prefix": text.span_prefix},
            "text_rows": text.counts(),
        },
        "val_checks": log.get("checks", []),
        "saved_dtype": str(SAVED_DTYPE).removeprefix("torch."),
        "bos": "prepended to every prompt in training and in use",
        "versions": _versions(),
    }
    folder = out / spec.name
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        # Score what was saved, loaded the way every dfa command loads it, before the folder
        # takes its final name: a model is never published without its full card.
        scores, roles = save_and_score(model, tokenizer, tmp, "test", seed)
        card["test"] = {
            "split": "test",
            "pairs_per_task": TEST_PAIRS,
            "bar": {"min_accuracy": MIN_ACCURACY, "max_corrupt_share": MAX_CORRUPT_SHARE},
            "tasks": {name: s.to_json() for name, s in scores.items()},
            "passes": all(s.passes for s in scores.values()),
        }
        card["roles"] = {"threshold": ROLE_THRESHOLD, **roles}
        # Strict JSON: a corrupt share with no positive clean metric to divide by is null.
        card = finite(card)
        (tmp / CARD).write_text(json.dumps(card, indent=2) + "\n")
        _replace_dir(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return card


def build_ladder(
    family: str,
    seed: int = DEFAULT_SEED,
    out: Path | None = None,
    steps: int | None = None,
    progress_queue=None,
) -> list[dict]:
    """Build every model of a toy ladder; `steps` overrides the specs' (for quick trials)."""
    check_family(family)
    out = Path(out) if out else zoo_root()
    tokenizer = build_tokenizer(extra_texts())
    text = TaskText(tokenizer, seed, span_prefix=ladder_specs(family)[0].recipe.span_prefix)
    cards = []
    for spec in ladder_specs(family):
        config = default_config(spec, steps)
        cards.append(build_model(spec, tokenizer, text, seed, out, config, progress_queue))
    return cards


def build_ladders(
    families: list[str], seed: int = DEFAULT_SEED, out: Path | None = None, steps: int | None = None
) -> list[dict]:
    """Build several ladders, one process each (training uses one thread per model), with one
    progress bar per ladder."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    from tqdm import tqdm

    families = [check_family(f) for f in families]
    if len(families) == 1:
        return build_ladder(families[0], seed, out, steps)
    ctx = mp.get_context("spawn")
    with ctx.Manager() as manager, ProcessPoolExecutor(len(families), mp_context=ctx) as pool:
        queue = manager.Queue()
        futures = [pool.submit(build_ladder, f, seed, out, steps, queue) for f in families]
        bars = {}
        for i, family in enumerate(families):
            total = sum(steps or s.steps for s in ladder_specs(family))
            bars[family] = tqdm(total=total, desc=family, unit="step", position=i, dynamic_ncols=True)
        while not all(f.done() for f in futures):
            try:
                (family, name), n = queue.get(timeout=0.5)
            except Empty:
                continue
            bars[family].update(n)
            bars[family].set_postfix_str(name)
        for bar in bars.values():
            bar.update(bar.total - bar.n)
            bar.close()
        return [card for f in futures for card in f.result()]
