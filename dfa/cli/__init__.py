"""The `dfa` command line, the only place arguments are parsed: every subcommand is listed by
`dfa --help`; `scripts/*.py` are thin wrappers. The logic lives in the library, which each command
imports inside its function, when it runs (for start-up time: parsing loads no torch, Lightning,
transformers or matplotlib; `dfa bench --help-times` checks it)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from dfa.core.errors import DfaError


def build_parser() -> argparse.ArgumentParser:
    from dfa.cli import check_cost, circuits, learned, maps, models, plots

    parser = argparse.ArgumentParser(
        prog="dfa", description="Transfer circuits between language models of different sizes."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    models.add_parsers(sub)
    circuits.add_parsers(sub)
    maps.add_parsers(sub)
    check_cost.add_parsers(sub)
    plots.add_parsers(sub)
    learned.add_parsers(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = argv  # what was asked, for messages that give the command to run next
    args.parser = parser  # the whole command tree, which `dfa bench --help-times` walks
    try:
        from dfa.cli.flags import check_output_flags, command_parser

        check_output_flags(args, command_parser(parser, args))  # before any work
        return int(args.func(args))
    except DfaError as err:
        from dfa.cli.flags import flag_words

        # a message about a file's keys keeps the file's spelling; the rest speak in flags
        text = str(err) if getattr(err, "file_words", False) else flag_words(str(err), _subparser(args.command))
        print(f"dfa {args.command}: error: {text}", file=sys.stderr)
        return 2


def _subparser(command: str) -> argparse.ArgumentParser:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[command]


if __name__ == "__main__":
    sys.exit(main())
