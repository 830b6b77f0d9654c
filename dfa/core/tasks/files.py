"""Tasks read from files (JSONL/CSV pairs, EAP-IG CSVs, MIB-style datasets) and written back out.

A task file is named `[label=]path[#option]` wherever a task name is taken: JSONL/CSV pairs, an
EAP-IG CSV of token ids, an MIB-style parquet file or `save_to_disk` folder. `read_task_file` reads
one (every bad row an error naming file, row and reason); a finite task's rows end `build_dataset`'s
stream. `export_rows` and `write_jsonl` write tasks out (`dfa tasks --export`).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from dfa.core.io import sha256_file
from dfa.core.tasks.base import Candidate, Metric, Task, TaskError, TaskSource

FILE_SUFFIXES = (".jsonl", ".csv", ".parquet")
FILE_FAMILY = "file"  # the family of rows that name none
METRICS: tuple[Metric, ...] = ("logit_diff", "prob_diff")
PAIR_COLUMNS = ("clean", "corrupt", "answer", "wrong")
EAP_COLUMNS = ("clean", "corrupted", "correct_idx", "incorrect_idx")
MIB_COLUMNS = ("prompt", "choices", "answerKey")
_LABEL = re.compile(r"[A-Za-z0-9_.+-]+")

_cache: dict[tuple[str, str, str], Task] = {}


def parse_task_name(name: str) -> tuple[str, Path, str] | None:
    """`(label, path, option)` when `name` names a task file, else None.

    A task file is named `[label=]path[#option]`: a path to an existing file or folder, or one
    ending in .jsonl/.csv/.parquet, or anything after `label=`. `option` is the tokenizer of an
    EAP-IG CSV's token ids, or the counterfactual column of an MIB-style dataset."""
    label, rest = "", name
    head, eq, tail = name.partition("=")
    if eq and _LABEL.fullmatch(head):
        label, rest = head, tail
    path_text, _, option = rest.partition("#")
    path = Path(path_text).expanduser()
    if not (label or path.suffix.lower() in FILE_SUFFIXES or (path_text and path.exists())):
        return None
    return label or path.stem, path, option


def file_sha256(path: Path) -> str:
    """The file's sha256; for a folder (a saved dataset), of its files' names and contents."""
    if not path.is_dir():
        return sha256_file(path)
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(str(f.relative_to(path)).encode() + b"\x00")
        h.update(bytes.fromhex(sha256_file(f)))
    return h.hexdigest()


def read_task_file(name: str) -> Task:
    """The finite `Task` a task file holds (cached by path, content hash and option). Every
    error names the file, the row (1-based line of a JSONL/CSV file, row of a dataset) and why."""
    parsed = parse_task_name(name)
    if parsed is None:
        raise TaskError(f"{name!r} does not name a task file (.jsonl, .csv, .parquet or a dataset folder).")
    label, path, option = parsed
    if not path.exists():
        raise TaskError(f"Task file {path} does not exist (task {name!r}).")
    path = path.resolve()
    sha = file_sha256(path)
    key = (str(path), sha, option)
    if key not in _cache:
        fmt, rows = _read(path, option)
        if not rows:
            raise TaskError(f"Task file {path} holds no rows (an empty file).")
        _check_rows(path, rows)
        metric = _metric(path, rows)
        cands = tuple(c for c, _ in rows)
        families = {c.family: None for c in cands}
        source = TaskSource(str(path), sha, fmt, label)
        _cache[key] = Task(
            name, f"{len(cands)} pairs from {path.name} ({fmt})", metric, families, cands, source
        )
    task = _cache[key]
    if task.name == name:
        return task
    # The same content under another name (`label=path`, a relative path): its own name and label.
    source = replace(task.source, label=label) if task.source else None
    return Task(name, task.description, task.metric, task.families, task.rows, source)


def _read(path: Path, option: str) -> tuple[str, list[tuple[Candidate, str | None]]]:
    """The format's name and its rows as candidates (each with the metric the row names)."""
    suffix = path.suffix.lower()
    if path.is_dir() or suffix == ".parquet":
        return "mib", list(_mib_rows(path, option))
    text = _text(path)
    if suffix == ".jsonl":
        return "jsonl", list(_jsonl_rows(path, text))
    if suffix == ".csv":
        reader = csv.DictReader(io.StringIO(text, newline=""))
        header = reader.fieldnames or []
        if {"correct_idx", "incorrect_idx"} & set(header):  # token ids, not texts: EAP-IG's CSV
            return "eap-ig-csv", list(_eap_rows(path, reader, option))
        return "csv", list(_csv_rows(path, reader))
    raise TaskError(
        f"Task file {path}: unknown format {suffix!r}; use .jsonl, .csv, .parquet or a dataset folder."
    )


def _text(path: Path) -> str:
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise TaskError(f"Task file {path}, row {line}: not UTF-8 ({e.reason} at byte {e.start}).") from None
    if not text.strip():
        raise TaskError(f"Task file {path} is empty.")
    return text.removeprefix("\ufeff")


def _texts(path: Path, row: int, column: str, value: Any) -> tuple[str, ...]:
    """A column of continuations: one string, or a list of strings."""
    values = value if isinstance(value, list) else [value]
    if not values or not all(isinstance(v, str) and v for v in values):
        raise TaskError(
            f"Task file {path}, row {row}: column {column!r} must be a non-empty string or a list of "
            f"them, got {value!r}."
        )
    return tuple(values)


def _candidate(path: Path, row: int, fields: dict[str, Any]) -> tuple[Candidate, str | None]:
    missing = [c for c in PAIR_COLUMNS if fields.get(c) in (None, "")]
    if missing:
        raise TaskError(f"Task file {path}, row {row}: missing column {', '.join(map(repr, missing))}.")
    clean, corrupt = fields["clean"], fields["corrupt"]
    for col, text in (("clean", clean), ("corrupt", corrupt)):
        if not isinstance(text, str):
            raise TaskError(f"Task file {path}, row {row}: column {col!r} must be text, got {text!r}.")
    answers = _texts(path, row, "answer", fields["answer"])
    wrongs = _texts(path, row, "wrong", fields["wrong"])
    same = sorted(set(answers) & set(wrongs))
    if same:
        raise TaskError(f"Task file {path}, row {row}: answer equal to wrong ({same[0]!r}).")
    family = str(fields.get("family") or FILE_FAMILY)
    key = str(fields.get("key") or clean)
    metric = fields.get("metric") or None
    return Candidate(clean, corrupt, answers, wrongs, family, key, row), metric


def _jsonl_rows(path: Path, text: str) -> Iterator[tuple[Candidate, str | None]]:
    for line, raw in enumerate(text.splitlines(), 1):
        if not raw.strip():
            continue
        try:
            fields = json.loads(raw)
        except json.JSONDecodeError as e:
            raise TaskError(f"Task file {path}, row {line}: not JSON ({e.msg}).") from None
        if not isinstance(fields, dict):
            raise TaskError(f"Task file {path}, row {line}: a JSON object is expected, got {raw[:40]!r}.")
        yield _candidate(path, line, fields)


def _csv_cell(value: Any) -> Any:
    """A CSV cell; one holding a JSON list (`["a", "b"]`) is several answers."""
    if isinstance(value, str) and value.lstrip().startswith("["):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def _check_header(path: Path, header: list[str], needed: tuple[str, ...]) -> None:
    import difflib

    missing = [c for c in needed if c not in header]
    if missing:
        spare = [h for h in header if h not in needed]
        near = [(c, m[0]) for c in missing if (m := difflib.get_close_matches(c, spare, 1, 0.7))]
        hint = "".join(f"; rename column {h!r} to {c!r}" for c, h in near)
        raise TaskError(
            f"Task file {path}, row 1: missing column {', '.join(map(repr, missing))} "
            f"(the header has {', '.join(header) or 'nothing'}{hint})."
        )


def _csv_rows(path: Path, reader: csv.DictReader) -> Iterator[tuple[Candidate, str | None]]:
    _check_header(path, list(reader.fieldnames or []), PAIR_COLUMNS)
    for fields in reader:
        if None in fields:  # more cells than the header names
            raise TaskError(
                f"Task file {path}, row {reader.line_num}: more cells than the header's {len(reader.fieldnames or [])}."
            )
        yield _candidate(path, reader.line_num, {k: _csv_cell(v) for k, v in fields.items()})


def _eap_rows(
    path: Path, reader: csv.DictReader, tokenizer_name: str
) -> Iterator[tuple[Candidate, str | None]]:
    """EAP-IG's CSV: `clean`, `corrupted`, and `correct_idx`/`incorrect_idx` token ids of a named
    tokenizer, each decoded to its text and checked to encode back to the same one id."""
    _check_header(path, list(reader.fieldnames or []), EAP_COLUMNS)
    if not tokenizer_name:
        raise TaskError(
            f"Task file {path} is an EAP-IG CSV: its answers are token ids, so name their tokenizer "
            f"after '#', e.g. `{path.name}#gpt2`."
        )
    from dfa.core.hub import load_tokenizer

    tok = load_tokenizer(tokenizer_name)
    for fields in reader:
        row = reader.line_num
        texts = {}
        for col in ("correct_idx", "incorrect_idx"):
            value = (fields.get(col) or "").strip()
            try:
                tid = int(value)
            except ValueError:
                raise TaskError(f"Task file {path}, row {row}: {col} {value!r} is not a token id.") from None
            if not 0 <= tid < len(tok):
                raise TaskError(
                    f"Task file {path}, row {row}: {col} {tid} is outside tokenizer {tokenizer_name!r}'s "
                    f"vocabulary of {len(tok)}."
                )
            text = tok.decode([tid])
            back = tok(text, add_special_tokens=False)["input_ids"]
            if list(back) != [tid]:
                raise TaskError(
                    f"Task file {path}, row {row}: {col} {tid} decodes to {text!r}, which tokenizer "
                    f"{tokenizer_name!r} encodes as {list(back)}: were the ids made by another tokenizer?"
                )
            texts[col] = text
        pair = {
            **fields,
            "corrupt": fields["corrupted"],
            "answer": texts["correct_idx"],
            "wrong": texts["incorrect_idx"],
        }
        yield _candidate(path, row, pair)


def _mib_rows(path: Path, column: str) -> Iterator[tuple[Candidate, str | None]]:
    """An MIB-style dataset (a `save_to_disk` folder or a parquet file): `prompt`, `choices`,
    `answerKey` and a counterfactual column holding the same three. The answer is the clean
    choice at `answerKey`, the wrong one the counterfactual's choice at its `answerKey` (MIB's
    logit difference); choices are used as they are, with no space added."""
    import datasets

    try:
        if path.is_dir():
            data = datasets.load_from_disk(str(path))
            parts = [data[s] for s in data] if isinstance(data, datasets.DatasetDict) else [data]
        else:
            parts = [datasets.Dataset.from_parquet(str(path))]
    except Exception as e:  # noqa: BLE001 (a folder or file datasets cannot read, for any reason)
        raise TaskError(f"Task file {path}: not a dataset that `datasets` can read ({e}).") from None
    names = list(parts[0].column_names) if parts else []
    _check_header(path, names, MIB_COLUMNS)
    cfs = [c for c in names if c.endswith("_counterfactual")]
    if column and column not in names:
        raise TaskError(
            f"Task file {path}: no column {column!r}; its counterfactual columns: {', '.join(cfs) or 'none'}."
        )
    if not column:
        if len(cfs) != 1:
            raise TaskError(
                f"Task file {path}: name its counterfactual column after '#' "
                f"({', '.join(cfs) or 'it has none ending in _counterfactual'}), e.g. `{path.name}#{cfs[0] if cfs else 'my_counterfactual'}`."
            )
        column = cfs[0]
    row = 0
    for part in parts:
        for rec in part:
            row += 1
            cf = rec.get(column) or {}
            if not isinstance(cf, dict) or not cf.get("prompt"):
                raise TaskError(
                    f"Task file {path}, row {row}: column {column!r} holds no counterfactual prompt."
                )
            fields = {
                "clean": rec["prompt"],
                "corrupt": cf["prompt"],
                "answer": _choice(path, row, rec, "choices"),
                "wrong": _choice(path, row, cf, f"{column}.choices"),
                "family": rec.get("family"),
                "key": rec.get("key"),
            }
            yield _candidate(path, row, fields)


def _choice(path: Path, row: int, rec: dict[str, Any], where: str) -> str:
    """`choices[answerKey]`; MIB's choices are a list or `{"label": [...], "text": [...]}`
    (the label then is what the model answers, e.g. 'A')."""
    choices, key = rec.get("choices"), rec.get("answerKey")
    if isinstance(choices, dict):
        choices = choices.get("label")
    if not isinstance(choices, list) or not isinstance(key, int) or not 0 <= key < len(choices):
        raise TaskError(
            f"Task file {path}, row {row}: {where}/answerKey do not pick a choice ({choices!r}, {key!r})."
        )
    return str(choices[key])


def _check_rows(path: Path, rows: list[tuple[Candidate, str | None]]) -> None:
    seen: dict[tuple, int] = {}
    for cand, _ in rows:
        ident = (cand.clean, cand.corrupt, cand.answers, cand.wrongs)
        if ident in seen:
            raise TaskError(f"Task file {path}, row {cand.row}: duplicate of row {seen[ident]}.")
        seen[ident] = cand.row


def _metric(path: Path, rows: list[tuple[Candidate, str | None]]) -> Metric:
    """The file's one metric: `logit_diff` unless its rows' `metric` column says otherwise."""
    found = {m for _, m in rows if m}
    for m in found:
        if m not in METRICS:
            row = next(c.row for c, r in rows if r == m)
            raise TaskError(f"Task file {path}, row {row}: unknown metric {m!r}; use {' or '.join(METRICS)}.")
    if len(found) > 1:
        raise TaskError(
            f"Task file {path}: rows name different metrics ({', '.join(sorted(found))}); use one."
        )
    named = [m for _, m in rows if m]
    if named and len(named) != len(rows):
        row = next(c.row for c, m in rows if not m)
        raise TaskError(f"Task file {path}, row {row}: no metric, where other rows name {named[0]!r}.")
    return found.pop() if found else "logit_diff"  # type: ignore[return-value]


def export_rows(task: Task, examples: list[Any], tokenizer: Any) -> list[dict[str, Any]]:
    """A built dataset's pairs as task-file rows (answers decoded back to text)."""
    rows = []
    for ex in examples:
        answers = [tokenizer.decode([i]) for i in ex.answers]
        wrongs = [tokenizer.decode([i]) for i in ex.wrongs]
        rows.append(
            {
                "clean": ex.clean,
                "corrupt": ex.corrupt,
                "answer": answers[0] if len(answers) == 1 else answers,
                "wrong": wrongs[0] if len(wrongs) == 1 else wrongs,
                "family": ex.family,
                "key": ex.key,
                "metric": task.metric,
            }
        )
    return rows


def write_jsonl(path: str | Path, rows: list[dict[str, Any]]) -> Path:
    """Rows as JSONL, written atomically."""
    from dfa.core.io import atomic_write

    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
