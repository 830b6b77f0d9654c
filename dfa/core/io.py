"""Atomic file writes: a file is written beside its destination and renamed into place, so a
crash or Ctrl-C never leaves a half-written output."""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _umask() -> int:
    """The process's umask (read without changing it where /proc says it)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call `write(tmp)` on a temporary path in `path`'s folder, then rename it to `path`. The
    file gets the mode a plain `open(path, "w")` would give it (0o666 less the umask), not the
    temporary file's 0o600."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_json(path: str | Path, data: Any) -> Path:
    """JSON with NaN and infinities written as null (strict JSON readers reject them)."""
    text = json.dumps(finite(data), indent=1) + "\n"
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def finite(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: finite(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [finite(v) for v in x]
    return x


def save_named_tensor(path: str | Path, key: str, tensor: Any, model: str, names: tuple, meta: dict) -> Path:
    """One tensor per model and its column names, as safetensors (atomically): the header holds
    `model`, `key` (the names, JSON) and `meta` (JSON, non-finite numbers as None). Role scores
    and node statistics are kept this way (`read_named_tensor` reads them back)."""
    from safetensors.torch import save_file

    header = {"model": model, key: json.dumps(list(names)), "meta": json.dumps(finite(meta))}
    return atomic_write(path, lambda tmp: save_file({key: tensor.contiguous()}, str(tmp), metadata=header))


def read_named_tensor(
    path: str | Path, key: str, error: type[Exception], what: str
) -> tuple[str, Any, tuple, dict]:
    """`(model, tensor, names, meta)` of a `save_named_tensor` file; anything else at `path` (a
    truncated or foreign file, a missing key) raises `error`: "PATH is not a dfa WHAT file"."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
            tensor = f.get_tensor(key)
        return header["model"], tensor, tuple(json.loads(header[key])), json.loads(header.get("meta", "{}"))
    except (SafetensorError, OSError, RuntimeError, KeyError, ValueError) as err:
        raise error(f"{path} is not a dfa {what} file ({type(err).__name__}: {err}).") from None


def sha256_file(path: str | Path) -> str:
    """A file's sha256 (hex), read in blocks: a model file of hundreds of MB never sits in memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
