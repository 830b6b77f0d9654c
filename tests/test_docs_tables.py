"""The results tables of README.md and docs/ are written from results/*.json by
scripts/docs_tables.py, never by hand: every generated block must equal what its JSON renders
now (a results file rerun without `python scripts/docs_tables.py`, or a table edited by hand,
fails here), and the README keeps its two commands and CI's markers."""

from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def docs_tables():
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        yield importlib.import_module("docs_tables")
    finally:
        sys.path.remove(str(ROOT / "scripts"))


def test_every_generated_table_matches_its_json(docs_tables):
    stale = []
    for path in docs_tables.documents():
        _, changed = docs_tables.render(path.read_text(), str(path.relative_to(ROOT)))
        stale += changed
    assert stale == [], "stale tables (run `python scripts/docs_tables.py`): " + ", ".join(stale)


def test_the_headline_tables_are_generated_in_the_readme_and_every_renderer_is_used(docs_tables):
    used = {
        name
        for path in docs_tables.documents()
        for name in re.findall(r"<!-- generated: ([\w-]+) -->\n", path.read_text())
    }
    readme = set(re.findall(r"<!-- generated: ([\w-]+) -->\n", (ROOT / "README.md").read_text()))
    assert {"main_toy", "loto_toy_summary", "real_models_kinds"} <= readme
    assert used == set(docs_tables.TABLES)


def test_a_stale_or_hand_edited_table_is_caught_and_rewritten(docs_tables):
    text = "before\n<!-- generated: loto_toy -->\n| a hand-made table |\n<!-- /generated -->\nafter\n"
    new, changed = docs_tables.render(text, "page.md")
    assert changed == ["page.md: loto_toy"]
    assert new.startswith("before\n<!-- generated: loto_toy -->\n| pair | held-out task |")
    assert new.endswith("<!-- /generated -->\nafter\n")
    assert docs_tables.render(new, "page.md") == (new, [])  # rendering again changes nothing


def test_an_unknown_table_name_is_an_error(docs_tables):
    with pytest.raises(SystemExit, match="unknown generated table 'nope'"):
        docs_tables.render("<!-- generated: nope -->\n<!-- /generated -->\n", "page.md")


def test_the_readme_fits_two_screens_and_keeps_both_commands_and_cis_markers():
    readme = (ROOT / "README.md").read_text()
    lines = readme.splitlines()
    assert len(lines) <= 300
    first = [line for line in lines if line.startswith("python3 -m venv") and "evaluate.py" in line]
    assert len(first) == 1 and "--reference results/main_toy.json" in first[0]
    block = readme.split("<!-- test-command -->", 1)[1].split("<!-- /test-command -->", 1)[0]
    assert 'pip install -e ".[test]" && pytest -q' in block


def test_every_docs_page_is_in_the_nav():
    nav = (ROOT / "mkdocs.yml").read_text()
    pages = {p.relative_to(ROOT / "docs").as_posix() for p in (ROOT / "docs").rglob("*.md")}
    missing = [p for p in sorted(pages) if f": {p}" not in nav]
    assert missing == []
