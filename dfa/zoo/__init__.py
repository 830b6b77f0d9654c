"""The toy ladders: small GPT-2 and GPT-NeoX models the project trains on its own task text,
shipped as ordinary Hugging Face folders and loaded by name like real models."""

from dfa.zoo.spec import DEFAULT_SEED, FAMILY_ARCH, TOY_SPECS, ZOO_DIR, ToySpec, ladder_specs, zoo_root

__all__ = ["DEFAULT_SEED", "FAMILY_ARCH", "TOY_SPECS", "ZOO_DIR", "ToySpec", "ladder_specs", "zoo_root"]
