"""What each real pretrained model can do per task: usable pairs, clean accuracy, mean metric, gold CPR against random, costs.

`measure_model` measures one model, `capable` is the capability rule, `capable_tasks` the tasks a
model passes, `markdown_table` the table; `dfa capabilities` runs it, and `results/real_models.json`
holds the committed numbers.
"""

from __future__ import annotations

import json
import resource
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from dfa.core.io import write_json

# A task a model "can do": its clean prompts mostly right, and its own gold circuit (eap-ig-inputs
# on train, scored on test) better than random rankings on the same prompts by the paired interval.
MIN_ACCURACY = 0.8
RULE = (
    f"capable = clean accuracy >= {MIN_ACCURACY} on the test prompts AND the paired 95% bootstrap "
    "interval of CPR(gold) - CPR(random) lies above 0 (same test prompts)"
)


def capable(accuracy: float, gold_vs_random_ci: Sequence[float] | None) -> tuple[bool, list[str]]:
    """The rule's verdict and, when it fails, why."""
    why = []
    if not accuracy >= MIN_ACCURACY:
        why.append(f"accuracy {accuracy:.2f} < {MIN_ACCURACY}")
    if gold_vs_random_ci is None:
        why.append("gold circuit not evaluated")
    elif not gold_vs_random_ci[0] > 0:
        lo, hi = gold_vs_random_ci
        why.append(f"gold - random CPR interval [{lo:.3f}, {hi:.3f}] not above 0")
    return not why, why


def measure_task(
    model: Any,
    task: str,
    n_attr: int,
    n_eval: int,
    ig_steps: int = 5,
    n_random: int = 5,
    seed: int = 0,
    draws: int = 4000,
    cache: tuple[Path, str] | None = None,
) -> dict[str, Any]:
    """One model on one task: usable pairs under its tokenizer, clean accuracy and mean metric on
    the test split, its gold circuit's CPR against `n_random` random rankings, and the seconds.
    `cache` (a score cache folder, the model's name): the gold scores are read from the file
    `dfa.store.cached_scores` keeps for these settings when there, else written to it, so a run that
    trains on this model or evaluates its gold reads them instead of scoring again."""
    from dfa.core.circuits import evaluate_scores, score_nodes
    from dfa.core.tasks import get_task, survey
    from dfa.zoo.card import score_task

    sv = survey(get_task(task), model.tokenizer, draws=draws, seed=seed)
    row: dict[str, Any] = {"task": task, "usable": dict(sv.usable), "dropped": sv.report.drops(none="-")}
    n_a, n_e = min(n_attr, sv.usable.get("train", 0)), min(n_eval, sv.usable.get("test", 0))
    if n_e == 0:  # the tokenizer leaves no usable pair (e.g. years split into digits)
        row.update(metric=None, n_test=0, n_train=n_a, accuracy=None, mean_clean=None, mean_corrupt=None,
                   gold=None, random=None, gold_minus_random=None, capable=False,
                   why_not=[f"no usable test pairs under its tokenizer ({row['dropped']})"])  # fmt: skip
        return row
    start = time.perf_counter()
    clean = score_task(model, task, n_e, "test", seed)
    row.update(
        metric=clean.metric, n_test=clean.n, accuracy=clean.accuracy, mean_clean=clean.clean,
        mean_corrupt=clean.corrupt, clean_seconds=round(time.perf_counter() - start, 1),
    )  # fmt: skip
    if n_a < 2 or n_e < 2:
        row.update(n_train=n_a, gold=None, random=None, gold_minus_random=None)
    else:
        start = time.perf_counter()
        scores_at = None
        if cache is not None:
            from dfa.store import ScoreSpec, score_path

            spec = ScoreSpec("eap-ig-inputs", "train", n_a, seed, "patching", ig_steps)
            scores_at = score_path(cache[0], cache[1], task, spec)
        if scores_at is not None and scores_at.is_file():
            from dfa.core.scores import NodeScores

            scores = NodeScores.load(scores_at)
            row["scores_cached"] = str(scores_at)
        else:
            scores = score_nodes(model, task, "eap-ig-inputs", "train", n_a, seed, ig_steps=ig_steps)
            if scores_at is not None:
                scores.save(scores_at)
        row["attribution_seconds"] = round(time.perf_counter() - start, 1)
        start = time.perf_counter()
        ev = evaluate_scores(model, task, {"gold": scores}, "test", n_e, seed, n_random=n_random)
        row["evaluation_seconds"] = round(time.perf_counter() - start, 1)
        gold, rand = ev.curves["gold"], ev.curves["random"]
        row.update(
            n_train=n_a,
            gold={"cpr": gold.cpr, "ci": list(gold.cpr_ci), "cpr_log": gold.cpr_log},
            random={"cpr": rand.cpr, "ci": list(rand.cpr_ci), "draws": rand.n_draws},
            gold_minus_random=ev.paired("gold", "random"),
        )
    ok, why = capable(row["accuracy"], (row["gold_minus_random"] or {}).get("ci"))
    row.update(capable=ok, why_not=why)
    return row


def measure_model(
    name: str,
    tasks: Sequence[str],
    n_attr: int,
    n_eval: int,
    ig_steps: int = 5,
    n_random: int = 5,
    log: Callable[[str], None] = print,
    done: Callable[[dict[str, Any]], None] | None = None,
    cache: Path | str | None = None,
) -> dict[str, Any]:
    """`measure_task` for each task of one real model (loaded once, CPU, float32), with the load
    time, the card's conversion time and the process's peak memory; gold scores shared with the
    score cache `cache` when given."""
    from dfa.core.models import load_model
    from dfa.core.real import REAL_MODELS, read_real_card

    start = time.perf_counter()
    model = load_model(name, device="cpu", dtype="float32")
    out: dict[str, Any] = {
        "model": name,
        "card": read_real_card(name) if name in REAL_MODELS else None,
        "n_layers": model.cfg.n_layers,
        "n_heads": model.cfg.n_heads,
        "vocab": len(model.tokenizer),
        "bos": model.tokenizer.bos_token,  # what every prompt starts with (`dfa.core.bos`)
        "load_seconds": round(time.perf_counter() - start, 1),
        "tasks": {},
    }
    for task in tasks:
        at = None if cache is None else (Path(cache), name)
        row = measure_task(model, task, n_attr, n_eval, ig_steps, n_random, cache=at)
        out["tasks"][task] = row
        out["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        log(f"{name} {task}: {_line(row)}")
        if done is not None:
            done(out)
    return out


def _line(row: dict[str, Any]) -> str:
    if row["accuracy"] is None:
        return "NOT: " + "; ".join(row["why_not"])
    gold = row["gold"]
    cpr = "n/a" if gold is None else f"gold {gold['cpr']:.3f} random {row['random']['cpr']:.3f}"
    secs = f"attr {row.get('attribution_seconds', 0):.0f}s eval {row.get('evaluation_seconds', 0):.0f}s"
    verdict = "capable" if row["capable"] else "NOT: " + "; ".join(row["why_not"])
    return f"acc {row['accuracy']:.2f} mean {row['mean_clean']:.2f} {cpr} ({secs}) {verdict}"


def merge_results(path: Path, model: dict[str, Any], settings: dict[str, Any]) -> dict[str, Any]:
    """Put one model's measurements into the results JSON at `path` (other models kept), atomically;
    a lock beside the file lets two models' runs share one results file."""
    from filelock import FileLock

    with FileLock(str(path) + ".lock"):
        return _merge(path, model, settings)


def _merge(path: Path, model: dict[str, Any], settings: dict[str, Any]) -> dict[str, Any]:
    data = json.loads(path.read_text()) if path.is_file() else {}
    data.update(rule=RULE, min_accuracy=MIN_ACCURACY, settings=settings)
    data.setdefault("note", "")
    data["note"] = (
        "Real models from registry GGUF packages, dequantized to float32 by transformers: an "
        "approximation of the released weights. CPU, float32, one thread."
    )
    models = data.setdefault("models", {})
    before = models.get(model["model"])
    if before is not None:  # a run of some tasks adds to (or replaces) those tasks, keeping the others
        peak = max(before.get("peak_rss_mib", 0), model.get("peak_rss_mib", 0))
        model = {**model, "tasks": {**before["tasks"], **model["tasks"]}, "peak_rss_mib": peak}
    models[model["model"]] = model
    write_json(path, data)
    return data


CAPABILITIES = Path("results/real_models.json")  # `dfa capabilities`' default output


def cannot_do(models: Sequence[str], tasks: Sequence[str], path: Path = CAPABILITIES) -> dict[str, str]:
    """Task -> why, for each task a measured model (in `path`, `dfa capabilities`' JSON) failed the
    rule on; tasks and models it does not hold pass (nothing is known against them)."""
    try:
        models_seen = json.loads(Path(path).read_text())["models"]
    except (OSError, ValueError, KeyError):
        return {}
    out: dict[str, str] = {}
    for model in dict.fromkeys(models):
        for task in tasks:
            row = models_seen.get(model, {}).get("tasks", {}).get(task)
            if row is not None and not row.get("capable", True):
                why = "; ".join(row.get("why_not") or ["the capability rule failed"])
                out.setdefault(task, f"{model} cannot do it ({why}; {path})")
    return out


def capable_tasks(results: dict[str, Any], model: str) -> list[str]:
    """The tasks `model` passed the rule on, from a results JSON (what a real pair trains on)."""
    return [t for t, row in results["models"][model]["tasks"].items() if row["capable"]]


def markdown_table(results: dict[str, Any]) -> str:
    """The capability table of a results JSON, one row per model and task."""
    lines = [
        ("| model | task | usable train/val/test | accuracy | mean metric | gold CPR [95%] | random CPR "
        "| gold - random [paired 95%] | attr s | eval s | can do |"),
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, m in results["models"].items():
        for task, r in m["tasks"].items():
            u = r["usable"]
            usable = f"{u.get('train', 0)}/{u.get('val', 0)}/{u.get('test', 0)}"
            if r["accuracy"] is None:
                lines.append(f"| {name} | {task} | {usable} | n/a | n/a | n/a | n/a | n/a | - | - | no |")
                continue
            if r["gold"] is None:
                gold = rand = diff = "n/a"
            else:
                g, d = r["gold"], r["gold_minus_random"]
                gold = f"{g['cpr']:.3f} [{g['ci'][0]:.3f}, {g['ci'][1]:.3f}]"
                rand = f"{r['random']['cpr']:.3f}"
                diff = f"{d['diff']:+.3f} [{d['ci'][0]:+.3f}, {d['ci'][1]:+.3f}]"
            metric = "prob diff" if r["metric"] == "prob_diff" else "logit diff"
            lines.append(
                f"| {name} | {task} | {usable} | {r['accuracy']:.2f} (n={r['n_test']}) | "
                f"{r['mean_clean']:.2f} ({metric}) | {gold} | {rand} | {diff} | {r.get('attribution_seconds', '-')} | "
                f"{r.get('evaluation_seconds', '-')} | {'yes' if r['capable'] else 'no'} |"
            )
    return "\n".join(lines) + "\n"


def both_can_do(results: dict[str, Any]) -> list[str]:
    """The tasks every model in a results JSON passed the rule on, in the order first measured."""
    models = list(results["models"].values())
    tasks = dict.fromkeys(t for m in models for t in m["tasks"])
    return [t for t in tasks if all(m["tasks"].get(t, {}).get("capable") for m in models)]


def summary_table(results: dict[str, Any]) -> str:
    """One row per task: its kind of mechanism, each model's accuracy and gold - random CPR
    (paired), and whether every model can do it; then the count."""
    from dfa.core.tasks import BUILTIN, EXTENDED, kind_of

    models = results["models"]
    seen = dict.fromkeys(t for m in models.values() for t in m["tasks"])
    tasks = [t for t in BUILTIN if t in seen] + [t for t in seen if t not in BUILTIN]
    both = set(both_can_do(results))
    head = " | ".join(f"{name}: accuracy / gold - random" for name in models)
    lines = [f"| task | kind | {head} | both can do |", "|---|---|" + "---|" * len(models) + "---|"]
    for task in tasks:
        cells = []
        for m in models.values():
            r = m["tasks"].get(task)
            if r is None:
                cells.append("-")
            elif r["accuracy"] is None:
                cells.append("no usable pair")
            else:
                d = r.get("gold_minus_random")
                diff = "n/a" if d is None else f"{d['diff']:+.3f} [{d['ci'][0]:+.3f}, {d['ci'][1]:+.3f}]"
                cells.append(f"{r['accuracy']:.2f} / {diff}")
        verdict = "yes" if task in both else "no"
        lines.append(f"| {task} | {kind_of(task) or '-'} | " + " | ".join(cells) + f" | {verdict} |")
    n_new = sum(t in EXTENDED for t in both)
    lines.append("")
    lines.append(f"{len(both)} of {len(tasks)} tasks usable by both models ({n_new} of them from the extended suite).")
    return "\n".join(lines) + "\n"


def kinds_table(results: dict[str, Any]) -> str:
    """One row per kind of mechanism: the tasks every model can do, and the others (each with the
    lowest accuracy of any model on it, or why not)."""
    from dfa.core.tasks import KINDS

    models = list(results["models"].values())
    both = set(both_can_do(results))
    lines = ["| kind | both models can do | not both (lowest accuracy) |", "|---|---|---|"]
    for kind, tasks in KINDS.items():
        measured = [t for t in tasks if all(t in m["tasks"] for m in models)]
        can = [t for t in measured if t in both]
        other = []
        for t in measured:
            if t in both:
                continue
            accs = [m["tasks"][t]["accuracy"] for m in models]
            other.append(f"{t} (no usable pair)" if None in accs else f"{t} ({min(accs):.2f})")
        lines.append(f"| {kind} | {', '.join(can) or '-'} | {', '.join(other) or '-'} |")
    n = len(models)
    total = len({t for m in models for t in m["tasks"]})
    lines += ["", f"{len(both)} of {total} tasks usable by both of the {n} models."]
    return "\n".join(lines) + "\n"


FIRST_TOKEN_TASKS = ("ioi", "sva", "gender", "capitals", "arithmetic_add", "mcqa")


def first_token_rows(
    name: str, tasks: Sequence[str] = FIRST_TOKEN_TASKS, n: int = 50, log: Callable[[str], None] = print
) -> dict[str, Any]:
    """What a real model does per task under each first token: its tokenizer's own BOS, the token
    dfa pins (`dfa.core.bos`), and none. Clean accuracy and mean clean/corrupt metric on `n` val
    prompts (never test: this chooses a setting), the model loaded once."""
    from dfa.core.bos import pinned_bos
    from dfa.core.hub import load_tokenizer
    from dfa.core.models import load_model
    from dfa.core.real import fetched_folder
    from dfa.zoo.card import score_task

    model = load_model(name, device="cpu", dtype="float32")
    own = load_tokenizer(fetched_folder(name)).bos_token
    pinned = pinned_bos(name)
    variants = {"tokenizer's BOS": own, **({"pinned": pinned} if pinned else {}), "none": None}
    rows = []
    for task in tasks:
        for label, token in variants.items():
            model.tokenizer.bos_token = token
            start = time.perf_counter()
            s = score_task(model, task, n, "val", 0)
            rows.append({"task": task, "first_token": label, "token": token, "n": s.n,
                         "accuracy": s.accuracy, "clean": s.clean, "corrupt": s.corrupt})  # fmt: skip
            log(f"{name} {task}, first token {token!r} ({label}): accuracy {s.accuracy:.2f}, clean "
                f"{s.clean:.2f}, corrupt {s.corrupt:.2f}, n {s.n} ({time.perf_counter() - start:.0f}s)")  # fmt: skip
    return {"model": name, "split": "val", "n": n, "data_seed": 0, "rows": rows}


def first_token_table(result: dict[str, Any]) -> str:
    """`first_token_rows`' result as Markdown: per task, each first token's accuracy and mean clean
    and corrupt metric."""
    rows = result["rows"]
    variants = list(dict.fromkeys((r["first_token"], r["token"]) for r in rows))
    head = " | ".join(label for label, _ in variants)  # the tokens hold pipes: named below the table
    lines = [f"| task | {head} |", "|---|" + "---|" * len(variants)]
    by = {(r["task"], r["first_token"]): r for r in rows}
    for task in dict.fromkeys(r["task"] for r in rows):
        cells = [by.get((task, label)) for label, _ in variants]
        lines.append(f"| {task} | " + " | ".join(
            "-" if c is None else f"{c['accuracy']:.2f} / {c['clean']:.2f} / {c['corrupt']:.2f}" for c in cells
        ) + " |")  # fmt: skip
    return "\n".join(lines) + (
        f"\n\ncells: clean accuracy / mean clean metric / mean corrupt metric, {result['n']} {result['split']} "
        f"prompts per task (fewer where the split holds fewer), {result['model']}; first tokens: "
        + ", ".join(f"{label} `{token}`" for label, token in variants if token)
        + "."
    )
