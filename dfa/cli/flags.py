"""Command-line flags generated from the config dataclasses of `dfa.config`: one flag per field,
its type, choices and help from the field; defaults stay in the dataclass (a flag not given is None)."""

from __future__ import annotations

import argparse
import re
import types
import typing
from dataclasses import MISSING, fields
from typing import Any, Literal, get_args, get_origin


def _base(tp: Any) -> tuple[Any, bool]:
    """(the non-None type of an annotation, whether it is a list)."""
    if get_origin(tp) in (typing.Union, types.UnionType):
        tp = next(a for a in get_args(tp) if a is not type(None))
    if get_origin(tp) is list:
        return get_args(tp)[0], True
    return tp, False


def _default(f: Any) -> Any:
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    return None


def add_config_flags(
    p: argparse.ArgumentParser, cls: type, skip: tuple[str, ...] = (), renamed: dict[str, str] | None = None
) -> None:
    """A flag per field of `cls` (except `skip`), named `--field-name` (or `renamed[field]`)."""
    hints = typing.get_type_hints(cls)
    for f in fields(cls):
        if f.name in skip:
            continue
        flag = (renamed or {}).get(f.name) or "--" + f.name.replace("_", "-")
        tp, many = _base(hints[f.name])
        default = _default(f)
        shown = " ".join(map(str, default)) if isinstance(default, list) else default
        help_text = f.metadata.get("help", "")
        if tp is bool:
            if default:
                p.add_argument(
                    "--no-" + flag[2:],
                    dest=f.name,
                    action="store_false",
                    default=None,
                    help=f"skip: {help_text}",
                )
            else:
                p.add_argument(flag, dest=f.name, action="store_true", default=None, help=help_text)
            continue
        kwargs: dict[str, Any] = {"dest": f.name, "default": None}
        if get_origin(tp) is Literal:
            kwargs["choices"] = list(get_args(tp))
        else:
            kwargs["type"] = tp
        if many:  # `--tasks a b` and `--tasks a --tasks b` alike
            kwargs["nargs"] = "+"
            kwargs["action"] = "extend"
        if f.metadata.get("required"):
            kwargs["required"] = True
        else:
            help_text += f" (default: {shown})" if shown not in (None, "") else ""
        action = p.add_argument(flag, help=help_text, **kwargs)
        if f.metadata.get("output"):
            action.dfa_output = (f.metadata["output"], ())  # type: ignore[attr-defined]


def config_values(args: argparse.Namespace, cls: type) -> dict[str, Any]:
    """The fields of `cls` given on the command line (None: not given)."""
    return {f.name: getattr(args, f.name, None) for f in fields(cls)}


def positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1 (argparse's error then names the flag)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def output_flag(
    p: argparse.ArgumentParser, *names: str, kind: str, suffixes: tuple[str, ...] = (), **kwargs: Any
) -> argparse.Action:
    """An option naming where the command writes (`kind`: file, folder, or a stem that takes
    `suffixes`): `dfa` checks it right after parsing, before any model loads (`check_output_flags`)."""
    action = p.add_argument(*names, **kwargs)
    action.dfa_output = (kind, tuple(suffixes))  # type: ignore[attr-defined]
    return action


def command_parser(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.ArgumentParser:
    """The (sub)parser that parsed `args`: `dfa zoo build`'s, not `dfa`'s."""
    while True:
        sub = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
        if sub is None or getattr(args, sub.dest, None) not in sub.choices:
            return parser
        parser = sub.choices[getattr(args, sub.dest)]


def check_output_flags(args: argparse.Namespace, p: argparse.ArgumentParser) -> None:
    """Each output option of `p` that has a value, checked for its kind and that it can be written
    (`dfa.core.outputs.check_output`): a wrong path fails here, in one line, before the work."""
    from dfa.core.outputs import check_output

    for action in p._actions:
        spec = getattr(action, "dfa_output", None)
        value = getattr(args, action.dest, None)
        if spec and value not in (None, "", True, False):
            name = max(action.option_strings, key=len) if action.option_strings else action.dest
            check_output(value, spec[0], name, spec[1])


def _flags(p: argparse.ArgumentParser) -> dict[str, str]:
    """Setting name (an option's dest) -> its flag, for the options that set it (not `--no-X`)."""
    out = {}
    for action in p._actions:
        longs = [o for o in action.option_strings if o.startswith("--") and not o.startswith("--no-")]
        if longs and action.dest not in ("help",):
            out[action.dest] = max(longs, key=len)
    return out


def flag_words(message: str, p: argparse.ArgumentParser) -> str:
    """A library message, which names settings (`resume`, the `max_rows` setting, n_src), in the
    words of command `p`'s flags (`--resume`, `--max-rows`, `--n-src`); names `p` has no flag for
    stay as they are."""
    flags = _flags(p)

    def known(name: str) -> str | None:
        return flags.get(name)

    def sub(pattern: str, make) -> None:
        nonlocal message
        message = re.sub(pattern, lambda m: make(m) if known(m.group("name")) else m.group(0), message)

    sub(r"\b(?P<verb>[Ss])et `(?P<name>\w+)`", lambda m: f"{'P' if m['verb'] == 'S' else 'p'}ass `{known(m['name'])}`")
    sub(r"\b[Tt]he `(?P<name>\w+)` setting(?: \(--[\w-]+\))?", lambda m: f"`{known(m['name'])}`")
    sub(r"`(?P<name>\w+)` set\b", lambda m: f"`{known(m['name'])}`")
    sub(r"`(?P<name>\w+)`", lambda m: f"`{known(m['name'])}`")
    sub(r"(?<![\w`/.-])(?P<name>[a-z][a-z0-9]*(?:_[a-z0-9]+)+)(?![\w`/.])", lambda m: f"{known(m['name'])}")
    return message
