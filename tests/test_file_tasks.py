"""Tasks read from files: each format, every bad input's message, export round trips, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dfa.cli import main
from dfa.core.hub import load_tokenizer
from dfa.core.tasks import TaskError, get_task, make_dataset, survey, task_label, task_sources
from dfa.core.tasks.base import DROP_ANSWER, DROP_LENGTH, DROP_UNKNOWN
from tests.conftest import ROOT, require_tokenizer

EXAMPLE = ROOT / "examples" / "tasks" / "ioi_rephrased.jsonl"
IOI = "Then, Mary and John went to the store. John gave a book to"
IOI_C = "Then, Mary and John went to the store. Paul gave a book to"


def row(clean: str = IOI, corrupt: str = IOI_C, answer=" Mary", wrong=" John", **extra) -> dict:
    return {"clean": clean, "corrupt": corrupt, "answer": answer, "wrong": wrong, **extra}


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def toy_tok():
    return load_tokenizer("toy-gpt2-s")


@pytest.fixture(scope="module")
def gpt2_tok():
    return load_tokenizer(str(require_tokenizer("gpt2")))


# --- reading each format -------------------------------------------------------------------------
def test_jsonl_rows_become_a_finite_task(tmp_path, gpt2_tok):
    path = write_jsonl(
        tmp_path / "mine.jsonl",
        [
            row(),
            row(answer=[" Mary", " Anna"], wrong=" John", family="two", key="k1"),
            row(clean=IOI.replace("book", "drink"), corrupt=IOI_C.replace("book", "drink"), key="k1"),
        ],
    )
    task = get_task(str(path))
    assert task.finite and task.metric == "logit_diff" and set(task.families) == {"file", "two"}
    assert [c.row for c in task.rows] == [1, 2, 3]
    assert task.rows[1].answers == (" Mary", " Anna") and task.rows[1].key == "k1"
    assert task.rows[0].key == IOI  # the key defaults to the clean prompt, as the generators'
    sha = task.source.sha256
    assert task_sources([str(path), "ioi"]) == {
        str(path): {"path": str(path), "sha256": sha, "format": "jsonl"}
    }
    assert task_label(str(path)) == f"mine-{sha[:12]}" and task_label("ioi") == "ioi"
    assert task_label(f"antonyms={path}") == f"antonyms-{sha[:12]}"
    # rows sharing a key share a split; every row lands in exactly one split
    sv = survey(task, gpt2_tok)
    assert sum(sv.usable.values()) == 3 and sv.report.drawn == 3
    splits = {s: len(make_dataset(str(path), gpt2_tok, 3, s, allow_fewer=True)) for s in sv.usable}
    assert splits == dict(sv.usable)
    # an edited file is another task (the cache is keyed by content), with another label
    write_jsonl(path, [row()])
    assert len(get_task(str(path)).rows) == 1 and task_label(str(path)) != f"mine-{sha[:12]}"


def test_csv_pairs_with_a_list_cell_and_a_bom(tmp_path):
    path = tmp_path / "pairs.csv"
    path.write_text(
        "\ufeffclean,corrupt,answer,wrong,family\n"
        f'"{IOI}","{IOI_C}", Mary, John,a\n'
        f'"{IOI}","{IOI_C}","["" Mary"", "" Anna""]", John,b\n',
        encoding="utf-8",
    )
    task = get_task(str(path))
    assert task.source.format == "csv"
    assert [(c.row, c.answers, c.wrongs, c.family) for c in task.rows] == [
        (2, (" Mary",), (" John",), "a"),
        (3, (" Mary", " Anna"), (" John",), "b"),
    ]


def test_eap_ig_csv_ids_are_decoded_and_checked_against_their_tokenizer(tmp_path, gpt2_tok):
    mary, john = (gpt2_tok(t, add_special_tokens=False)["input_ids"][0] for t in (" Mary", " John"))
    path = tmp_path / "ioi_eap.csv"
    path.write_text(f'clean,corrupted,correct_idx,incorrect_idx\n"{IOI}","{IOI_C}",{mary},{john}\n')
    gpt2 = str(require_tokenizer("gpt2"))
    task = get_task(f"{path}#{gpt2}")
    assert task.source.format == "eap-ig-csv"
    (c,) = task.rows
    assert (c.clean, c.corrupt, c.answers, c.wrongs, c.row) == (IOI, IOI_C, (" Mary",), (" John",), 2)
    ex = make_dataset(f"{path}#{gpt2}", gpt2_tok, 1, "train", allow_fewer=True, seed=_seed_for(IOI, "train"))
    assert ex[0].answers == (mary,) and ex[0].wrongs == (john,)
    with pytest.raises(
        TaskError,
        match=r"ioi_eap.csv is an EAP-IG CSV: .*name their tokenizer after '#', e.g. `ioi_eap.csv#gpt2`",
    ):
        get_task(str(path))
    path.write_text(f'clean,corrupted,correct_idx,incorrect_idx\n"{IOI}","{IOI_C}",{mary},99999\n')
    with pytest.raises(
        TaskError, match=r"ioi_eap.csv, row 2: incorrect_idx 99999 is outside tokenizer .*vocabulary of 50257"
    ):
        get_task(f"{path}#{gpt2}")
    # an id whose text the tokenizer encodes otherwise: the ids were made by another tokenizer
    odd = next(
        i
        for i in range(256, 50257)
        if gpt2_tok(gpt2_tok.decode([i]), add_special_tokens=False)["input_ids"] != [i]
    )
    path.write_text(f'clean,corrupted,correct_idx,incorrect_idx\n"{IOI}","{IOI_C}",{odd},{john}\n')
    with pytest.raises(
        TaskError, match=rf"row 2: correct_idx {odd} decodes to .*were the ids made by another tokenizer"
    ):
        get_task(f"{path}#{gpt2}")


def _seed_for(key: str, split: str) -> int:
    """A data seed under which `key` falls in `split` (a one-row file is then usable there)."""
    from dfa.core.tasks import split_of

    return next(s for s in range(100) if split_of(key, s) == split)


def _mib_records() -> list[dict]:
    return [
        {
            "prompt": IOI,
            "choices": ["Mary", "John"],
            "answerKey": 0,
            "abc_counterfactual": {"prompt": IOI_C, "choices": ["Mary", "Paul"], "answerKey": 1},
        },
        {
            "prompt": "Question: Which is a planet?\nA. Neptune\nB. zinc\nAnswer:",
            "choices": ["Neptune", "zinc"],
            "answerKey": 0,
            "abc_counterfactual": {
                "prompt": "Question: Which is a planet?\nA. zinc\nB. Neptune\nAnswer:",
                "choices": ["zinc", "Neptune"],
                "answerKey": 0,
            },
        },
    ]


def test_mib_parquet_and_dataset_folder(tmp_path):
    import datasets

    data = datasets.Dataset.from_list(_mib_records())
    data.to_parquet(str(tmp_path / "mib.parquet"))
    datasets.DatasetDict({"train": data.select([0]), "test": data.select([1])}).save_to_disk(
        str(tmp_path / "mib_dir")
    )
    for name in (str(tmp_path / "mib.parquet"), f"mib={tmp_path / 'mib_dir'}"):
        task = get_task(name)
        assert task.source.format == "mib"
        assert [(c.row, c.answers, c.wrongs) for c in task.rows] == [
            (1, ("Mary",), ("Paul",)),
            (2, ("Neptune",), ("zinc",)),
        ]
        assert task.rows[0].corrupt == IOI_C
    assert task_label(f"mib={tmp_path / 'mib_dir'}").startswith("mib-")
    # two counterfactual columns: name one after '#'
    recs = [{**r, "random_counterfactual": r["abc_counterfactual"]} for r in _mib_records()]
    datasets.Dataset.from_list(recs).to_parquet(str(tmp_path / "two.parquet"))
    with pytest.raises(
        TaskError,
        match=r"name its counterfactual column after '#' \(abc_counterfactual, random_counterfactual\)",
    ):
        get_task(str(tmp_path / "two.parquet"))
    assert get_task(f"{tmp_path / 'two.parquet'}#random_counterfactual").rows[0].wrongs == ("Paul",)
    datasets.Dataset.from_list([{"prompt": IOI, "choices": ["Mary"]}]).to_parquet(
        str(tmp_path / "bad.parquet")
    )
    with pytest.raises(TaskError, match=r"bad.parquet, row 1: missing column 'answerKey'"):
        get_task(str(tmp_path / "bad.parquet"))


# --- bad input: the file, the row and the reason ------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.jsonl", b"", r"empty.jsonl is empty"),
        ("blank.jsonl", b"\n  \n", r"blank.jsonl is empty"),
        (
            "latin.jsonl",
            json.dumps(row()).encode() + b'\n{"clean": "caf\xe9"}\n',
            r"latin.jsonl, row 2: not UTF-8",
        ),
        (
            "miss.jsonl",
            (
                json.dumps(row()) + "\n" + json.dumps({"clean": IOI, "answer": " Mary", "wrong": " John"})
            ).encode(),
            r"miss.jsonl, row 2: missing column 'corrupt'",
        ),
        (
            "miss.csv",
            f'clean,answer,wrong\n"{IOI}", Mary, John\n'.encode(),
            r"miss.csv, row 1: missing column 'corrupt' \(the header has clean, answer, wrong\)",
        ),
        (
            "same.jsonl",
            (json.dumps(row()) + "\n" + json.dumps(row(wrong=[" John", " Mary"]))).encode(),
            r"same.jsonl, row 2: answer equal to wrong \(' Mary'\)",
        ),
        (
            "dup.jsonl",
            "\n".join(json.dumps(r) for r in (row(), row(answer=" Anna"), row())).encode(),
            r"dup.jsonl, row 3: duplicate of row 1",
        ),
        ("notjson.jsonl", b'{"clean": \n', r"notjson.jsonl, row 1: not JSON"),
        (
            "cells.csv",
            f'clean,corrupt,answer,wrong\n"{IOI}","{IOI_C}", Mary, John\n"{IOI}","{IOI_C}", Anna, John,x\n'.encode(),
            r"cells.csv, row 3: more cells than the header's 4",
        ),
        ("metric.jsonl", json.dumps(row(metric="kl")).encode(), r"metric.jsonl, row 1: unknown metric 'kl'"),
        ("fmt.txt", b"x", r"fmt.txt: unknown format '.txt'; use .jsonl, .csv, .parquet or a dataset folder"),
    ],
)
def test_bad_files_name_the_file_row_and_reason(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(TaskError, match=message):
        get_task(str(path))


def test_a_missing_file_and_an_empty_dataset(tmp_path):
    with pytest.raises(TaskError, match=r"Task file .*nowhere.jsonl does not exist"):
        get_task(str(tmp_path / "nowhere.jsonl"))
    with pytest.raises(
        TaskError,
        match=r"Unknown task 'iio' \(did you mean 'ioi'\?\); the tasks are ioi, .* or a task file: a path to a \.jsonl",
    ):
        get_task("iio")
    import datasets

    datasets.Dataset.from_list([]).to_parquet(str(tmp_path / "none.parquet"))
    with pytest.raises(TaskError, match=r"none.parquet"):
        get_task(str(tmp_path / "none.parquet"))


def test_rows_a_tokenizer_cannot_use_are_dropped_with_their_row(tmp_path, toy_tok):
    """Answers of two tokens, clean/corrupt of different token lengths and words the (word-level)
    tokenizer does not know are dropped per tokenizer, named by row; too few usable pairs for a
    split is an error saying what each split holds."""
    path = write_jsonl(
        tmp_path / "drops.jsonl",
        [
            row(),
            row(answer=" Mary Anna"),
            row(corrupt="Then, Mary and John went to the store. Paul and Tom gave a book to"),
            row(clean=IOI.replace("book", "zeppelin"), corrupt=IOI_C.replace("book", "zeppelin")),
        ],
    )
    sv = survey(get_task(str(path)), toy_tok)
    assert sv.report.kept == 1 and dict(sv.report.dropped) == {
        DROP_ANSWER: 1,
        DROP_LENGTH: 1,
        DROP_UNKNOWN: 1,
    }
    assert {why: c.row for why, c in sv.report.first_dropped.items()} == {
        DROP_ANSWER: 2,
        DROP_LENGTH: 3,
        DROP_UNKNOWN: 4,
    }
    split = next(s for s, n in sv.usable.items() if n)
    with pytest.raises(TaskError) as err:
        make_dataset(str(path), toy_tok, 2, split)
    msg = str(err.value)
    assert (
        "drops.jsonl with tokenizer" in msg
        and f"2 {split} pairs were asked for, but it holds 1 usable pairs" in msg
    )
    assert (
        f"(train {sv.usable['train']}, val {sv.usable['val']}, test {sv.usable['test']}; data seed 0)" in msg
    )
    assert (
        "1 answer not a single token (row 2: " in msg
        and "1 clean/corrupt token lengths differ (row 3: " in msg
    )
    assert "1 words the tokenizer does not know (row 4: " in msg
    # every row unusable: train refuses the file against the models' tokenizers before loading them
    write_jsonl(path, [row(answer=" Mary Anna")])
    from dfa.config import TrainConfig

    cfg = TrainConfig(src="toy-gpt2-s", tgt="toy-gpt2-m", tasks=["sva"], holdout=[str(path)])
    with pytest.raises(
        TaskError,
        match=r"drops.jsonl: no row is usable with the tokenizer of toy-gpt2-s: dropped 1 answer not a single token \(row 1: ",
    ):
        cfg.check()


def test_a_config_takes_a_task_file_as_a_training_task_or_a_holdout(tmp_path):
    from dfa.config import TrainConfig

    cfg = TrainConfig(src="toy-gpt2-s", tgt="toy-gpt2-m", tasks=["sva", str(EXAMPLE)], holdout=[str(EXAMPLE)])
    cfg.check()
    sha = get_task(str(EXAMPLE)).source.sha256
    assert cfg.run_name() == f"holdout-ioi_rephrased-{sha[:12]}-s0"
    only = TrainConfig(src="toy-gpt2-s", tgt="toy-gpt2-m", tasks=[f"mine={EXAMPLE}"], out=str(tmp_path))
    assert only.check().run_dir().name == f"only-mine-{sha[:12]}-s0"
    named = TrainConfig(
        src="toy-gpt2-s", tgt="toy-gpt2-m", tasks=["sva"], holdout=[str(EXAMPLE)], run=f"loto-{EXAMPLE}"
    )
    assert "/" not in named.run_name() and named.run_name().startswith("loto-_")


# --- export and read back --------------------------------------------------------------------------
@pytest.mark.parametrize("task", ["greater_than", "ioi"])
def test_export_reads_back_as_the_same_pairs(tmp_path, toy_tok, task, capsys):
    out = tmp_path / f"{task}.jsonl"
    argv = [
        "tasks",
        "--export",
        task,
        "--model",
        "toy-gpt2-s",
        "--split",
        "test",
        "--n",
        "30",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    assert f"wrote {out}: 30 test pairs of {task}" in capsys.readouterr().out
    built = make_dataset(task, toy_tok, 30, "test")
    back = make_dataset(str(out), toy_tok, 30, "test")
    assert back.metric == built.metric == get_task(task).metric
    fields = lambda e: (e.clean, e.corrupt, e.clean_ids, e.corrupt_ids, e.answers, e.wrongs, e.family)
    assert [fields(e) for e in back] == [fields(e) for e in built]
    assert not list(tmp_path.glob(".*.tmp"))  # written atomically: no temporary file left


def test_exported_task_scores_the_same_cprs_on_a_toy_model(tmp_path):
    """The round trip the issue asks for: a built-in task exported and read back gives identical
    CPRs of the same rankings on the same toy model."""
    import torch

    from dfa.core.circuits import evaluate_scores
    from dfa.core.graph import NodeGraph
    from dfa.core.models import load_model
    from dfa.core.scores import NodeScores

    model = load_model("toy-gpt2-s", device="cpu")
    out = tmp_path / "sva.jsonl"
    assert main(["tasks", "--export", "sva", "--model", "toy-gpt2-s", "--n", "24", "--out", str(out)]) == 0
    graph = NodeGraph.from_model(model)
    scores = {"a": NodeScores(graph.names, torch.linspace(1, 0, len(graph)), {})}
    evs = [evaluate_scores(model, t, scores, "test", 24, n_random=2, n_boot=50) for t in ("sva", str(out))]
    assert evs[0].n_prompts == evs[1].n_prompts == 24
    for label in ("a", "random"):
        assert evs[1].curves[label].cpr == evs[0].curves[label].cpr
        assert evs[1].curves[label].faithfulness == evs[0].curves[label].faithfulness


def test_export_refuses_a_path_without_jsonl(tmp_path, capsys):
    assert main(["tasks", "--export", "ioi", "--model", "toy-gpt2-s", "--out", str(tmp_path / "x.csv")]) == 2
    assert "--export ends in .jsonl" in capsys.readouterr().err
    assert not (tmp_path / "x.csv").exists()


# --- dfa tasks ---------------------------------------------------------------------------------------
def test_dfa_tasks_reports_a_files_usable_pairs_and_dropped_rows(tmp_path, capsys):
    path = write_jsonl(tmp_path / "check.jsonl", [row(), row(answer=" Mary Anna"), row(answer=" Anna Mary")])
    assert (
        main(["tasks", "--model", "toy-gpt2-s", "--task", str(path), "--task", "sva", "--draws", "50"]) == 0
    )
    out = capsys.readouterr().out
    assert f"  {path}  logit_diff        1" in out and "2 answer not a single token" in out
    assert f"check.jsonl [file]: {IOI!r}" in out
    assert "dropped 2 (answer not a single token), e.g. row 2: " in out and "' Mary Anna' vs ' John'" in out
    assert main(["tasks", "--task", str(tmp_path / "nope.jsonl")]) == 2
    assert "nope.jsonl does not exist" in capsys.readouterr().err


def test_example_task_file_is_all_usable_on_the_toy_ladders(toy_tok):
    sv = survey(get_task(str(EXAMPLE)), toy_tok)
    assert sv.report.kept == len(get_task(str(EXAMPLE)).rows) == 240 and not sv.report.dropped
    assert sv.usable["test"] >= 20


# --- end to end on the toy ladders -------------------------------------------------------------------
def test_a_map_trained_on_built_in_tasks_transfers_to_a_task_file(tmp_path, capsys):
    """Train (one epoch, tiny) with the example file held out, then `transfer` to it: the
    predicted circuit, its evaluation with paired intervals, and the file's sha256 recorded."""
    sha = get_task(str(EXAMPLE)).source.sha256
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(
        f"src: toy-gpt2-s\ntgt: toy-gpt2-m\ntasks: [sva]\nholdout: ['{EXAMPLE}']\nn_src: 12\n"
        f"n_train: 20\nn_val: 10\nbatch_size: 10\nig_steps: 2\ncache: {tmp_path / 'cache'}\n"
    )
    out = tmp_path / "ck"
    assert main(["train", "--config", str(cfg), "--max-epochs", "1", "--out", str(out)]) == 0
    run = out / "toy-gpt2-s__toy-gpt2-m" / f"holdout-ioi_rephrased-{sha[:12]}-s0"
    info = json.loads((run / "map.json").read_text())
    assert info["holdout"] == [str(EXAMPLE)]
    assert info["task_files"] == {str(EXAMPLE): {"path": str(EXAMPLE), "sha256": sha, "format": "jsonl"}}
    capsys.readouterr()
    argv = ["transfer", "--map", str(run), "--task", str(EXAMPLE), "--n", "20", "--boot", "50"]
    assert main([*argv, "--methods", "dfa", "depth", "random", "permuted"]) == 0
    text = capsys.readouterr().out
    assert f"toy-gpt2-s -> toy-gpt2-m predicted circuit for {EXAMPLE} (zero-shot):" in text
    # one training task: no inner fold can hold one out, so the run has no zero-shot map; the
    # circuit written is the val check's, on the file's own val prompts (the run's n_val)
    # the check reads the file's val prompts within its budget (a share of gold's target rows)
    assert "map used: val check: " in text and "  val check: on 4 val prompts" in text
    assert "(budgeted: " in text
    assert "zero-shot: no estimate" in text
    assert "evaluated on 20 test prompts" in text
    header = next(line for line in text.splitlines() if line.split()[:2] == ["task", "setting"])
    assert header.split()[3:] == ["dfa-val", "dfa", "depth", "random", "permuted"]
    assert "paired: CPR(dfa) - CPR(method) on the same prompts [95% CI]" in text
    assert "dfa vs (zero-shot; paired interval above / below 0): depth " in text
    here = Path.cwd()  # the path as the user would type it: from the working directory, below it
    assert f"task file {EXAMPLE.relative_to(here) if EXAMPLE.is_relative_to(here) else EXAMPLE} (sha256" in text
    from dfa.core.scores import NodeScores

    saved = NodeScores.load(run / "transfer" / f"ioi_rephrased-{sha[:12]}.json")
    assert saved.meta["task_files"][str(EXAMPLE)]["sha256"] == sha
    scores = list((tmp_path / "cache" / "scores").rglob(f"ioi_rephrased-{sha[:12]}__*.safetensors"))
    assert scores  # the source scores are cached under the file's label and sha256, not its path


def test_tables_widen_the_task_column_for_a_task_file():
    from dfa.report.tables import paired_table, table

    name = "examples/tasks/ioi_rephrased.jsonl"
    base = {"task": name, "setting": "zero-shot", "cpr_ci": [0.4, 0.6], "n_prompts": 30, "n_distinct": 30}
    paired = {"depth": {"diff": 0.2, "ci": [0.1, 0.3]}}
    report = {
        "results": [
            {**base, "method": "dfa", "cpr": 0.5, "paired": paired},
            {**base, "method": "depth", "cpr": 0.3},
        ]
    }
    assert table(report).splitlines()[1].startswith(f"  {name} zero-shot ")
    assert paired_table(report).splitlines()[1].startswith(f"  {name}    +0.200 [+0.10,+0.30]+")


def test_a_sweep_forgets_the_cached_rows_of_maps_trained_or_evaluated_on_an_edited_file():
    from dfa.experiments.sweep import _uses

    stale = {"mine.jsonl"}
    assert _uses({"map": "all"}, stale) and _uses({"map": "loto-sva"}, stale)  # trained with the file
    assert _uses({"map": "only-mine.jsonl"}, stale) and not _uses({"map": "only-sva"}, stale)
