"""Fetch model and tokenizer files: the hub and its cache, offline tokenizer copies, the toy zoo."""

from __future__ import annotations

import os
import socket
import urllib.parse
from pathlib import Path

from dfa.core.errors import DfaError
from dfa.core.ladders import LADDERS
from dfa.zoo.spec import TOY_SPECS, ZOO_ENV, zoo_root

TOKENIZERS_ENV = "DFA_TOKENIZERS"

# What a hub snapshot needs for a causal LM and its tokenizer; pickled weights only when a
# repository has no safetensors (old Pythia revisions).
_HUB_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model", "tokenizer*"]
_TOKENIZER_PATTERNS = ["tokenizer*", "vocab*", "merges*", "special_tokens_map.json", "*.model"]
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "tokenizer.model")


class UnknownModelError(DfaError, ValueError):
    """The name is neither a ladder model, a hub id, nor an existing folder."""


class ModelNotAvailableError(DfaError, OSError):
    """The model exists on the hub but cannot be fetched here (offline, not cached)."""


class RevisionError(DfaError, ValueError):
    """A `@revision` suffix that is malformed or names no saved checkpoint."""


class ModelLoadError(DfaError, RuntimeError):
    """Files were found but do not make a model TransformerLens can wrap."""


def hub_offline() -> bool:
    """True when the user asked for offline mode (read at call time, not import time)."""
    return any(
        os.environ.get(var, "").strip().lower() in ("1", "true", "yes", "on")
        for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def hub_reachable(timeout: float = 3.0) -> bool:
    """A quick TCP probe of the hub endpoint, so that an unreachable hub fails in seconds
    rather than after huggingface_hub's retries. Behind a proxy we cannot tell, so we try."""
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True
    from huggingface_hub import constants

    url = urllib.parse.urlparse(os.environ.get("HF_ENDPOINT") or constants.ENDPOINT)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname or "", port), timeout=timeout):
            return True
    except OSError:
        return False


def _not_available(what: str, why: str) -> ModelNotAvailableError:
    return ModelNotAvailableError(
        f"{what} is not available offline: {why}. Download it on a machine with hub access "
        "(`hf download <id> --local-dir <folder>` or `save_pretrained`), copy the folder here and pass "
        "its path instead of the name (no local folder of that name exists here); or use the "
        "real architecture with random weights ('<ladder name>:random'); `dfa models` lists "
        "what is known."
    )


def fetch_snapshot(hf_id: str, revision: str | None, patterns: list[str] | None = None) -> Path:
    """A local folder holding a hub repository (from the cache, or downloaded when online)."""
    from huggingface_hub import HfApi, snapshot_download
    from huggingface_hub.errors import (
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    what = f"{hf_id}" + (f" (revision {revision})" if revision else "")
    patterns = patterns or _HUB_PATTERNS
    try:
        return Path(
            snapshot_download(hf_id, revision=revision, allow_patterns=patterns, local_files_only=True)
        )
    except (LocalEntryNotFoundError, OSError):  # not cached (or a partial cache entry)
        pass
    if hub_offline():
        raise _not_available(what, "it is not in the local Hugging Face cache and HF_HUB_OFFLINE is set")
    if not hub_reachable():
        raise _not_available(what, "it is not in the local Hugging Face cache and the hub cannot be reached")
    try:
        if patterns is _HUB_PATTERNS:
            files = HfApi().list_repo_files(hf_id, revision=revision)
            if not any(f.endswith(".safetensors") for f in files):
                patterns = [*patterns, "*.bin"]
        return Path(snapshot_download(hf_id, revision=revision, allow_patterns=patterns))
    except RepositoryNotFoundError:
        raise UnknownModelError(
            f"{hf_id!r} is not a model on the Hugging Face hub (or it is private: log in with "
            "`hf auth login`). `dfa models` lists the ladders."
        ) from None
    except RevisionNotFoundError:
        raise RevisionError(f"{hf_id!r} has no revision {revision!r} on the hub.") from None
    except (HfHubHTTPError, OSError) as err:
        raise _not_available(what, f"the download failed ({type(err).__name__}: {err})") from None


def shared_tokenizer_dir(name: str) -> Path | None:
    """The project's offline copy of a tokenizer: $DFA_TOKENIZERS/<name> where that variable is
    set (then the only place looked at, so that pointing it at an empty folder is a fresh clone),
    else a `shared/tokenizers/<name>` folder beside the checkout or the working directory."""
    if os.environ.get(TOKENIZERS_ENV):
        roots = [Path(os.environ[TOKENIZERS_ENV]).expanduser()]
    else:
        starts = (Path(__file__).resolve().parent, Path.cwd())
        roots = [p / "shared" / "tokenizers" for start in starts for p in start.parents]
    for root in roots:
        if (root / name / "tokenizer.json").is_file():
            return root / name
    return None


def toy_folder(name: str) -> Path:
    """The folder of a built toy model, or a clear error saying how to build it."""
    folder = zoo_root() / name
    if not (folder / "config.json").is_file():
        family = TOY_SPECS[name].family
        raise ModelNotAvailableError(
            f"The toy model {name!r} is not built in {folder.parent}. Build its ladder with "
            f"`dfa zoo build --family {family} --out {folder.parent}`, or unset ${ZOO_ENV} to use "
            "the ladders shipped with dfa."
        )
    return folder


def _declares_generic_class(folder: Path) -> bool:
    """True when the folder's tokenizer_config.json names the generic fast tokenizer (a tokenizer
    saved from a `tokenizer.json` object). AutoTokenizer would otherwise pick the class registered
    for the model type beside it for some types (Qwen2's, which reads only BPE vocab and merges)
    and read such a tokenizer wrongly."""
    import json

    try:
        declared = json.loads((folder / "tokenizer_config.json").read_text()).get("tokenizer_class")
    except (OSError, ValueError, AttributeError):
        return False
    return declared in _GENERIC_CLASSES and (folder / "tokenizer.json").is_file()


_GENERIC_CLASSES = ("TokenizersBackend", "PreTrainedTokenizerFast")


def load_tokenizer(source: str | Path):
    """A fast tokenizer from a folder, a ladder's tokenizer name, or a hub id."""
    from transformers import AutoTokenizer

    folder: Path | None = None
    if Path(source).expanduser().is_dir():
        folder = Path(source).expanduser()
    elif str(source) in TOY_SPECS:
        folder = toy_folder(str(source))
    elif str(source) in LADDERS:
        ladder = LADDERS[str(source)]
        folder = shared_tokenizer_dir(ladder.tokenizer)
        if folder is None:
            try:
                folder = fetch_snapshot(ladder.hf_id, None, _TOKENIZER_PATTERNS)
            except ModelNotAvailableError as err:
                raise ModelNotAvailableError(
                    f"The {ladder.tokenizer} tokenizer that {ladder.name} uses is not here: there is "
                    f"no {TOKENIZERS_ENV} folder holding {ladder.tokenizer}/tokenizer.json, no "
                    f"shared/tokenizers/{ladder.tokenizer} beside the checkout or the working "
                    f"directory, and the hub copy failed too ({err}). Point {TOKENIZERS_ENV} at a "
                    "folder of tokenizer folders, or point the `tokenizer` setting at a tokenizer folder. "
                    "Offline, the toy ladders' tokenizer ships with dfa: a random-weight model runs with "
                    "any tokenizer its vocabulary holds (`--tokenizer toy-gpt2-s`), and `dfa tasks "
                    "--model toy-gpt2-s` surveys the tasks."
                ) from None
    else:
        folder = shared_tokenizer_dir(str(source)) or fetch_snapshot(str(source), None, _TOKENIZER_PATTERNS)
    if not any((folder / f).is_file() for f in _TOKENIZER_FILES):
        raise ModelLoadError(
            f"No tokenizer files in {folder} (looked for {', '.join(_TOKENIZER_FILES)}). "
            "Save the tokenizer beside the model (tokenizer.save_pretrained(folder)) or point the "
            "`tokenizer` setting at a folder or a ladder name such as gpt2."
        )
    try:
        if _declares_generic_class(folder):
            from transformers import PreTrainedTokenizerFast

            return PreTrainedTokenizerFast.from_pretrained(str(folder))
        return AutoTokenizer.from_pretrained(str(folder))
    except (OSError, ValueError) as err:
        raise ModelLoadError(f"Could not read the tokenizer in {folder}: {err}") from None
