"""The vocabularies settings are written in, without torch: attribution methods, ablations, score
normalisations, circuit fractions and size weightings. `dfa.config` and the command line read
them from here (so `dfa --help` parses without loading torch); the modules that implement them
import them from here too, so each is defined once.

The exported circuit's size is here too (`CIRCUIT_FRACTION`).
"""

from __future__ import annotations

from typing import Literal, get_args

Method = Literal["eap", "eap-ig-inputs", "eap-ig-activations", "exact"]
ATTRIBUTIONS: tuple[Method, ...] = get_args(Method)
IG_METHODS: tuple[Method, ...] = ("eap-ig-inputs", "eap-ig-activations")

Ablation = Literal["patching", "mean", "zero"]
ABLATIONS: tuple[Ablation, ...] = get_args(Ablation)

Normalise = Literal["abs-max", "max", "zscore", "abs-zscore", "rank"]
NORMALISATIONS: tuple[Normalise, ...] = get_args(Normalise)

# The MIB circuit sizes, as fractions of the ranked nodes.
FRACTIONS: tuple[float, ...] = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
Rank = Literal["abs", "signed"]
SizeWeights = Literal["cpr", "log", "both"]
# The share of the target's ranked nodes an exported predicted circuit marks `in_graph`: on the
# toy pair, the smallest MIB size at which the map's circuits keep about half the behaviour or
# more on most tasks (`results/main_toy.json`).
CIRCUIT_FRACTION = 0.2
# The learned map's kind: a free `[n_src, n_tgt]` matrix for one pair (dense), or per-node features
# with parameters that fit any pair (features, `dfa.core.feature_map`), and what those features read.
MapKind = Literal["dense", "features"]
MapFeatures = Literal["depth", "roles", "stats"]
