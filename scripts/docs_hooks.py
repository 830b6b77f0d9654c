"""MkDocs hooks (mkdocs.yml `hooks:`): pages and files the site builds from the code rather than
from docs/. `cli.md`, the command-line reference, is written from dfa's own argparse parsers
(`dfa.cli.build_parser`), so it always says what `dfa COMMAND --help` says; the PNG figures under
results/ (written by the commands' `--plot`) are served as `figures/...`."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def cli_markdown() -> str:
    """The CLI reference: `dfa --help`, then every subcommand's help, in the parser's order."""
    os.environ["COLUMNS"] = "100"  # argparse wraps to the terminal; fix the width for the page
    sys.path.insert(0, str(ROOT))
    from dfa.cli import build_parser

    parser = build_parser()
    lines = [
        "# CLI reference",
        "",
        (
            "Generated from the parsers in `dfa/cli/` when the site is built (`scripts/docs_hooks.py`): "
            "each section is what `dfa COMMAND --help` prints. `scripts/*.py` are thin wrappers: "
            "`python scripts/train.py ...` is `dfa train ...`."
        ),
        "",
        "```text",
        parser.format_help().rstrip(),
        "```",
    ]
    return "\n".join(lines + _commands(parser, "dfa")) + "\n"


def _commands(parser: argparse.ArgumentParser, prog: str) -> list[str]:
    """A section per subcommand of `parser` (and per subcommand of those, e.g. `dfa zoo build`)."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    lines: list[str] = []
    for sub in subs:
        helps = {c.dest: c.help for c in sub._choices_actions}
        for name, command in sub.choices.items():
            lines += ["", f"{'#' * min(prog.count(' ') + 2, 4)} {prog} {name}", ""]
            if helps.get(name):
                lines += [helps[name], ""]
            lines += ["```text", command.format_help().rstrip(), "```"]
            lines += _commands(command, f"{prog} {name}")
    return lines


def on_files(files, config):
    from mkdocs.structure.files import File

    files.append(File.generated(config, "cli.md", content=cli_markdown()))
    for png in sorted((ROOT / "results").rglob("*.png")):
        uri = "figures/" + png.relative_to(ROOT / "results").as_posix()
        files.append(File.generated(config, uri, abs_src_path=str(png)))
    return files
