"""Local llama.cpp GGUF files, read through transformers' GGUF support and dequantized to the run's dtype.

transformers rebuilds the HF config and tokenizer from the file's metadata and dequantizes every
tensor (any llama.cpp quantization it knows) before casting it to the requested dtype, so the model
that comes out is an ordinary HF causal LM; quantization is not kept.

`load_gguf_model` reads a file; its errors are `GgufError`.
"""

from __future__ import annotations

from pathlib import Path

import torch

from dfa.core.hub import ModelLoadError

GGUF_SUFFIX = ".gguf"


class GgufError(ModelLoadError):
    """A `.gguf` file that cannot be read, or that transformers cannot turn into a model."""


def _require_gguf() -> None:
    try:
        import gguf  # noqa: F401
    except ImportError:
        raise GgufError(
            "Reading a .gguf file needs the gguf package (transformers reads GGUF files through it): "
            "pip install gguf"
        ) from None


def gguf_architecture(path: Path) -> str:
    """The file's `general.architecture` (llama, qwen2, gemma3, ...); a clear error when the file
    is not a GGUF file at all."""
    _require_gguf()
    from gguf import GGUFReader

    try:
        reader = GGUFReader(str(path))
        field = reader.fields["general.architecture"]
        return bytes(field.parts[field.data[0]]).decode("utf-8")
    except (ValueError, KeyError, IndexError, OSError, UnicodeDecodeError) as err:
        raise GgufError(
            f"{path} is not a readable GGUF file ({type(err).__name__}: {err}). Give a file written by "
            "llama.cpp's convert_hf_to_gguf.py or the gguf package's GGUFWriter."
        ) from None


def supported_architectures() -> list[str]:
    """The GGUF architectures the installed transformers can turn into a model."""
    from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES

    # The mapping also holds the metadata groups every file has; they are no architectures.
    return sorted(set(GGUF_SUPPORTED_ARCHITECTURES) - {"general", "tokenizer"})


def load_gguf_model(path: Path, dtype: torch.dtype):
    """The HF causal LM in a GGUF file, dequantized to `dtype`, with eager attention (the bridge's
    pattern hooks need it)."""
    from transformers import AutoModelForCausalLM

    arch = gguf_architecture(path)
    try:
        model = AutoModelForCausalLM.from_pretrained(
            str(path.parent), gguf_file=path.name, dtype=dtype, attn_implementation="eager"
        )
    except (ValueError, OSError, KeyError, NotImplementedError, RuntimeError, TypeError) as err:
        raise GgufError(
            f"transformers cannot read the GGUF file {path} (architecture {arch!r}): "
            f"{type(err).__name__}: {str(err).rstrip('.')}. This transformers reads GGUF files of the architectures "
            f"{', '.join(supported_architectures())}; otherwise convert the model to a Hugging Face "
            "folder (config.json + safetensors + tokenizer) and pass the folder's path."
        ) from None
    if not getattr(model.config, "architectures", None):
        model.config.architectures = [type(model).__name__]
    return model


def load_gguf_tokenizer(path: Path):
    """The tokenizer stored in a GGUF file's metadata."""
    from transformers import AutoTokenizer

    arch = gguf_architecture(path)
    try:
        return AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    except (ValueError, OSError, KeyError, NotImplementedError, RuntimeError, TypeError) as err:
        raise GgufError(
            f"transformers cannot read the tokenizer in the GGUF file {path} (architecture {arch!r}): "
            f"{type(err).__name__}: {err}. Point the `tokenizer` setting (--tokenizer) at the model's "
            "tokenizer folder instead."
        ) from None
