"""Settings' values checked against their annotations (`Literal` choices, lists, optional values),
with errors that name the setting: the machinery of `dfa.config`'s dataclasses, torch-free."""

from __future__ import annotations

import types
import typing
from dataclasses import fields
from typing import Any, Literal, get_args, get_origin

from dfa.core.errors import DfaError


class ConfigError(DfaError, ValueError):
    """A config file or flag that cannot be used."""


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(map(str, get_args(tp)))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in get_args(tp))
    if origin is list:
        return f"a list of {_type_name(get_args(tp)[0])}"
    return {
        type(None): "null",
        int: "an integer",
        float: "a number",
        str: "a string",
        bool: "true/false",
    }.get(tp, str(tp))


def coerce(value: Any, tp: Any) -> Any:
    """`value` as type `tp` (ints accepted where floats go), or ValueError."""
    origin = get_origin(tp)
    if origin is Literal:
        if value in get_args(tp):
            return value
        raise ValueError
    if origin in (typing.Union, types.UnionType):
        for arg in get_args(tp):
            try:
                return coerce(value, arg)
            except ValueError:
                continue
        raise ValueError
    if origin is list:
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            value = [value]  # a single YAML value where a list goes
        if not isinstance(value, list | tuple):
            raise ValueError
        return [coerce(v, get_args(tp)[0]) for v in value]
    if tp is type(None):
        if value is None:
            return None
        raise ValueError
    if tp is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if tp in (int, str, bool) and type(value) is tp:
        return value
    raise ValueError


def check_types(config: Any) -> None:
    """Coerce every field of a config dataclass to its annotation, or raise `ConfigError` naming it."""
    hints = typing.get_type_hints(type(config))
    for f in fields(config):
        value = getattr(config, f.name)
        try:
            setattr(config, f.name, coerce(value, hints[f.name]))
        except ValueError:
            raise ConfigError(
                f"Setting {f.name!r} must be {_type_name(hints[f.name])}, got {value!r} "
                f"({type(value).__name__})."
            ) from None


def unknown_keys(path: object, unknown: set[str], known: set[str]) -> ConfigError:
    """The error for a config file's unknown keys: each with a did-you-mean, the known keys listed,
    all in the file's spelling (`file_words`: the command line leaves it as it is, not --flags)."""
    import difflib

    guesses = [
        f"{k} (did you mean {m[0]}?)" if (m := difflib.get_close_matches(k, known, 1)) else k for k in sorted(unknown)
    ]
    err = ConfigError(
        f"{path}: unknown setting(s) {', '.join(guesses)}; the keys a config file takes: {', '.join(sorted(known))}."
    )
    err.file_words = True  # type: ignore[attr-defined]
    return err
