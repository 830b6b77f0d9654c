"""One writer per run folder: `dfa train`, `transfer` and `evaluate` hold a lock on the run while they
work, so a second one is refused at once ("run in progress (pid N since T)") instead of writing over
the first. The lock is the operating system's (`filelock`): a writer killed with no chance to clean
up holds nothing, and the next run takes its place, saying so."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from dfa.core.errors import DfaError


class RunInProgress(DfaError):
    """Another process is writing this run."""


def lock_paths(run: str | Path) -> tuple[Path, Path]:
    """The lock file and its note (who holds it), beside the run folder, not in it: `--overwrite`
    removes the folder while its writer holds the lock."""
    run = Path(run).expanduser().resolve()
    return run.parent / f".{run.name}.lock", run.parent / f".{run.name}.lock.json"


def _holder(note: Path) -> dict:
    try:
        info = json.loads(note.read_text())
        return info if isinstance(info, dict) else {}
    except (OSError, ValueError):
        return {}


def _when(seconds: float | None) -> str:
    if seconds is None:
        return "an unknown time"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(seconds))


def _alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def run_lock(run: str | Path, command: str, required: bool = True) -> Iterator[None]:
    """Hold run folder `run` for `command` (what the note shows a second writer). A second process
    gets `RunInProgress` naming the holder's pid, start and command. `required=False` (a command
    that only reads the run): where the lock cannot be made (a read-only checkout, a run that is not
    there: its own error comes next), go on without."""
    from filelock import FileLock, Timeout

    lock_file, note = lock_paths(run)
    made = [d for d in (lock_file.parent, *lock_file.parent.parents) if not d.exists()]  # deepest first
    try:
        if required:
            lock_file.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(lock_file), timeout=0)
        lock.acquire()
    except Timeout:
        info = _holder(note)
        raise RunInProgress(
            f"{run}: run in progress (pid {info.get('pid', '?')} since {_when(info.get('since'))}: "
            f"{info.get('command', 'another dfa command')}). Wait for it to finish, or write another "
            "run (another --out or --run)."
        ) from None
    except OSError:
        if required:
            raise
        yield
        return
    try:
        stale = _holder(note)
        if stale.get("pid") not in (None, os.getpid()) and not _alive(stale.get("pid")):
            print(
                f"note: {run}: taking over the lock of pid {stale['pid']} (since {_when(stale.get('since'))}), "
                "which stopped without releasing it",
                file=sys.stderr,
            )
        tmp = note.with_name(note.name + f".{os.getpid()}")
        tmp.write_text(json.dumps({"pid": os.getpid(), "since": time.time(), "command": command}))
        os.replace(tmp, note)
        yield
    finally:
        note.unlink(missing_ok=True)
        lock.release()
        if not Path(run).expanduser().resolve().exists():  # stopped before the run was written:
            lock_file.unlink(missing_ok=True)  # leave nothing, not even the folders made for the lock
            for folder in made:
                try:
                    folder.rmdir()
                except OSError:
                    break
