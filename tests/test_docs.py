"""Docs are tests: every fenced block in README.md and docs/ says what it is, on the line before it,
and what can run here runs as shown.

    <!-- doc-test: run -->                a command block (bash), a Python snippet, or a session
                                          (`$ command` lines, each followed by what it prints)
    <!-- doc-test: run tokenizers -->     the same, with the real tokenizers (skips without them)
    <!-- doc-test: run numbers vary -->   a session whose numbers may differ (times, sizes)
    <!-- doc-test: slow -->               runs only under `pytest --runslow`
    <!-- doc-test: skip REASON -->        a command not run here, and why
    <!-- doc-test: text WHAT -->          not a command: a diagram, a table, an excerpt of output

In a session's shown output, a line `...` stands for any lines (none included), and `...` inside a
line for any text; the rest is compared line by line (trailing spaces aside). A command written
inline in the prose (`dfa ...`, `python scripts/X.py ...`) is parsed by dfa's own parser: its
flags and choices exist."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import ROOT

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
MARK = re.compile(r"^<!--\s*doc-test:\s*(?P<kind>run|slow|skip|text)\b(?P<rest>.*?)\s*-->\s*$")
FENCE = re.compile(r"^```(?P<lang>[\w-]*)\s*$")
NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?")


@dataclass
class Block:
    path: Path
    line: int  # of the opening fence, 1-based
    lang: str
    body: list[str]
    kind: str | None  # run, slow, skip, text; None: unmarked
    rest: str

    @property
    def name(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"

    @property
    def session(self) -> bool:
        return any(line.startswith("$ ") for line in self.body)


def doc_blocks(path: Path) -> list[Block]:
    lines = path.read_text().split("\n")
    found, i = [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        j = i + 1
        while j < len(lines) and not lines[j].startswith("```"):
            j += 1
        mark, k = None, i - 1  # the mark: among the comment lines right above the fence
        while k >= 0 and (not lines[k].strip() or lines[k].lstrip().startswith("<!--")) and not mark:
            mark = MARK.match(lines[k].strip())
            k -= 1
        kind, rest = (mark["kind"], mark["rest"].strip()) if mark else (None, "")
        found.append(Block(path, i + 1, m["lang"], lines[i + 1 : j], kind, rest))
        i = j + 1
    return found


BLOCKS = [b for p in DOCS for b in doc_blocks(p)]


def test_every_block_says_what_it_is():
    """Unmarked blocks, a skip or a text without its reason, and a command marked as mere text."""
    bad = [f"{b.name}: unmarked (see tests/test_docs.py)" for b in BLOCKS if b.kind is None]
    bad += [f"{b.name}: {b.kind} without a reason" for b in BLOCKS if b.kind in ("skip", "text") and not b.rest]
    bad += [f"{b.name}: a {b.lang} block is a command: run or skip it" for b in BLOCKS if b.kind == "text" and b.lang]
    assert not bad, "\n".join(bad)


def _env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # `dfa`, `python`
    return env


def _shell(command: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", "-c", command], cwd=cwd, env=_env(), capture_output=True, text=True, timeout=600, check=False
    )


def _matches(shown: list[str], got: list[str], numbers_vary: bool) -> bool:
    """`got` matches `shown`: a line `...` takes any lines, `...` in a line any text."""

    def norm(line: str) -> str:
        line = line.rstrip()
        return NUMBER.sub("#", line) if numbers_vary else line

    def line_ok(want: str, have: str) -> bool:
        if "..." not in want:
            return norm(want) == norm(have)
        parts = [re.escape(norm(p)) for p in want.rstrip().split("...")]
        return re.fullmatch(".*".join(parts), norm(have)) is not None

    def go(i: int, j: int) -> bool:
        if i == len(shown):
            return all(not g.strip() for g in got[j:])
        if shown[i].strip() == "...":
            return any(go(i + 1, k) for k in range(j, len(got) + 1))
        return j < len(got) and line_ok(shown[i], got[j]) and go(i + 1, j + 1)

    return go(0, 0)


def _commands(body: list[str]) -> str:
    """A bash block's text with continuation lines joined."""
    return "\n".join(body).replace("\\\n", " ")


def _run(block: Block) -> None:
    if block.lang == "python":
        r = subprocess.run(
            [sys.executable, "-c", "\n".join(block.body)], cwd=ROOT, env=_env(), capture_output=True,
            text=True, timeout=600, check=False,
        )  # fmt: skip
        assert r.returncode == 0, f"{block.name}: the snippet failed:\n{r.stderr[-3000:]}"
        return
    if not block.session:
        r = _shell("set -e\n" + _commands(block.body), ROOT)
        assert r.returncode == 0, f"{block.name}: exit {r.returncode}\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}"
        return
    steps: list[tuple[str, list[str]]] = []
    for line in block.body:
        if line.startswith("$ "):
            steps.append((line[2:], []))
        else:
            steps[-1][1].append(line)
    for command, shown in steps:
        r = _shell(command, ROOT)
        got = (r.stdout + r.stderr).rstrip("\n").split("\n")
        assert _matches(shown, got, "numbers vary" in block.rest), (
            f"{block.name}: `{command}` printed (exit {r.returncode}):\n" + "\n".join(got) + "\n\nthe docs show:\n"
            + "\n".join(shown)
        )


RUN = [b for b in BLOCKS if b.kind in ("run", "slow")]


@pytest.mark.parametrize("block", RUN, ids=[b.name for b in RUN])
def test_the_block_runs_as_shown(block, request):
    if block.kind == "slow" and not request.config.getoption("--runslow"):
        pytest.skip(f"{block.name}: slow: run with pytest --runslow")
    if "tokenizers" in block.rest:
        request.getfixturevalue("real_tokenizers")
    _run(block)


def test_the_matcher():
    assert _matches(["a", "...", "z"], ["a", "b", "c", "z"], False)
    assert _matches(["a", "...", "z"], ["a", "z"], False)
    assert not _matches(["a", "z"], ["a", "b", "z"], False)
    assert _matches(["took 1.5s in ...folder"], ["took 2.25s in /x/folder"], True)
    assert not _matches(["took 1.5s"], ["took 2.25s"], False)


def test_the_readme_states_what_holds_now():
    """No dated reading, commit hash or remark on the machine's load in README.md: those belong to
    the docs page whose table they read (the generated tables aside, which their JSON writes)."""
    text = re.sub(r"<!-- generated: \w+ -->.*?<!-- /generated -->", "", (ROOT / "README.md").read_text(), flags=re.S)
    found = [
        m.group(0)
        for pattern in (
            r"\b20\d\d-\d\d-\d\d\b",
            r"\bcommit [0-9a-f]{7,40}\b",
            r"\b[0-9a-f]{7} \(",
            r"other jobs|shared the cores|these machines|this machine|beside (two|three) other",
            r"Reading \(",
        )
        for m in re.finditer(pattern, text)
    ]
    assert not found, f"README.md: {found}"


def _script_commands() -> dict[str, list[str]]:
    """scripts/NAME.py -> the `dfa` words it stands for (`main(["zoo", "trial", *sys.argv[1:]])`)."""
    out = {}
    for path in (ROOT / "scripts").glob("*.py"):
        m = re.search(r"main\(\[((?:\s*\"[\w-]+\",)+)\s*\*sys\.argv\[1:\]\]\)", path.read_text())
        if m:
            out[path.name] = re.findall(r'"([\w-]+)"', m.group(1))
    return out


def inline_commands() -> list[tuple[str, str, list[str]]]:
    """Every `dfa ...` and `python scripts/X.py ...` written inline in README.md and docs/ (outside
    the fenced blocks, which run above): (page, the command as written, the `dfa` argv)."""
    import shlex

    scripts, found = _script_commands(), []
    for path in DOCS:
        text = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.S | re.M)
        for m in re.finditer(r"`((?:dfa|python scripts/\w+\.py) [^`]+)`", text):
            written = m.group(1)
            if re.match(r"dfa [\w-]+: error:", written):  # a message dfa prints, not a command
                continue
            words = shlex.split(written.replace("[", "").replace("]", ""))
            if words[0] == "python" and Path(words[1]).name not in scripts:
                continue  # a script with its own parser (scripts/real_bos.py), not a `dfa` wrapper
            argv = words[1:] if words[0] == "dfa" else [*scripts[Path(words[1]).name], *words[2:]]
            found.append((str(path.relative_to(ROOT)), written, argv))
    return found


def test_every_inline_command_parses():
    """A command written in the prose names flags and choices `dfa` has: a renamed or removed flag
    fails here (a mention without its required flags, `dfa transfer`, is fine)."""
    import contextlib
    import io

    from dfa.cli import build_parser

    bad = []
    for page, written, argv in inline_commands():
        err = io.StringIO()
        try:
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                build_parser().parse_args(argv)
        except SystemExit as stop:
            said = err.getvalue().strip().splitlines()[-1] if err.getvalue().strip() else ""
            if stop.code and "the following arguments are required" not in said:
                bad.append(f"{page}: `{written}`: {said}")
    assert len(inline_commands()) > 50 and not bad, "\n".join(bad)
