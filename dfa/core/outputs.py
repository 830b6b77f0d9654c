"""Where a command will write, checked before the work: each output path's kind (a file, a folder,
a stem that takes suffixes) and that it can be written, with an error naming the path and the fix.
Torch-free: the command line checks its flags with it right after parsing."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Literal

from dfa.core.errors import DfaError

Kind = Literal["file", "folder", "stem"]
KINDS: tuple[Kind, ...] = ("file", "folder", "stem")


class OutputPathError(DfaError):
    """An output path a command could not write: named, with the fix."""


def _existing_ancestor(path: Path, what: str) -> Path:
    """The nearest existing folder at or above `path`'s parent; an error where a file stands in the
    way (a path cannot go through a file)."""
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise OutputPathError(
                    f"{what} {path}: {parent} is a file, not a folder, so nothing can be written under "
                    f"it; give a path whose folders are folders (or move {parent} away)."
                )
            return parent
    return Path(path.anchor or ".")


def _writable(folder: Path) -> bool:
    """True when a file can be created in `folder` (tried, then removed: permission bits alone do
    not say it for root, ACLs or a read-only mount)."""
    if not os.access(folder, os.W_OK | os.X_OK):
        return False
    try:
        fd, probe = tempfile.mkstemp(prefix=".dfa-write-check-", dir=folder)
    except OSError:
        return False
    os.close(fd)
    os.unlink(probe)
    return True


def check_output(path: str | Path, kind: Kind, what: str, suffixes: tuple[str, ...] = ()) -> Path:
    """`path` checked as an output of `kind`: a file it will write (not a folder; its folder
    writable; `suffixes[0]` the kind of file, for the example a folder's error gives), a folder it
    will create or write into (not a file; writable), or a stem to which `suffixes` are added.
    `what` names the setting in the error (`--json`, `the run folder`).
    Nothing is created."""
    path = Path(path).expanduser()
    if kind == "stem":
        for suffix in suffixes or ("",):
            check_output(path.with_suffix(suffix) if suffix else path, "file", what)
        return path
    if kind == "file":
        if path.is_dir():
            example = path / ("report" + (suffixes[0] if suffixes else ".json"))
            raise OutputPathError(
                f"{what} {path}: is a folder, and this writes a file; give a file path such as {example}."
            )
        folder = _existing_ancestor(path, what)
        if path.exists() and not os.access(path, os.W_OK):
            raise OutputPathError(f"{what} {path}: the file exists and cannot be written; give another path.")
    else:
        if path.exists() and not path.is_dir():
            raise OutputPathError(
                f"{what} {path}: is a file, and this writes a folder; give a folder path (or move the "
                "file away)."
            )
        folder = path if path.is_dir() else _existing_ancestor(path, what)
    if not _writable(folder):
        raise OutputPathError(
            f"{what} {path}: cannot write in {folder} (permission denied or a read-only file system); "
            "give a path in a folder you can write to."
        )
    return path


def check_config_outputs(config: object, run_dir: Path | None = None) -> None:
    """Every output setting of a config dataclass (fields whose metadata says `output`: a flag
    or a YAML value alike), and the run folder it writes, checked before any model loads."""
    from dataclasses import fields

    for f in fields(config):  # type: ignore[arg-type]
        kind = f.metadata.get("output")
        value = getattr(config, f.name)
        if kind and value:
            check_output(value, kind, f"the `{f.name}` setting")
    if run_dir is not None:
        check_output(run_dir, "folder", "the run folder")


def keep_existing(stem: str | Path, suffixes: tuple[str, ...], overwrite: bool, flag: str = "--out") -> None:
    """An earlier result at `stem` (+ each suffix) is kept: an error saying where it is and how to
    replace it or write elsewhere, unless `overwrite`."""
    stem = Path(stem)
    found = [p for p in (stem.with_suffix(s) for s in suffixes) if p.exists()]
    if found and not overwrite:
        raise OutputPathError(
            f"{found[0]} holds an earlier result, kept: pass --overwrite to replace it, or {flag} to "
            "write elsewhere."
        )


def shown_path(path: str | Path) -> Path:
    """A path as the user would type it: from the working directory when it lies below it (so a
    command's output does not print one machine's checkout), else as it is."""
    path, here = Path(path), Path.cwd()
    return path.relative_to(here) if path.is_absolute() and path.is_relative_to(here) else path
