"""Model loading: name parsing, local folders, architecture-only models, and every error path."""

from __future__ import annotations

import time

import pytest
import torch

from dfa.core import hub, models
from dfa.core.graph import NodeGraph
from dfa.core.ladders import LADDERS, PYTHIA_STEPS
from dfa.core.models import (
    ModelLoadError,
    ModelNotAvailableError,
    RevisionError,
    UnknownModelError,
    load_model,
    parse_spec,
)
from tests.conftest import require_tokenizer

# --- parsing -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, kind, hf_id, revision",
    [
        ("gpt2", "ladder", "openai-community/gpt2", None),
        ("gpt2-xl", "ladder", "openai-community/gpt2-xl", None),
        ("pythia-1.4b-deduped", "ladder", "EleutherAI/pythia-1.4b-deduped", None),
        ("pythia-160m@step3000", "ladder", "EleutherAI/pythia-160m", "step3000"),
        ("pythia-70m@step0", "ladder", "EleutherAI/pythia-70m", "step0"),
        ("pythia-70m@step512", "ladder", "EleutherAI/pythia-70m", "step512"),
        ("gpt2-large:random", "random", "openai-community/gpt2-large", None),
        ("EleutherAI/pythia-12b", "hub", "EleutherAI/pythia-12b", None),
        ("someone/model@v1.0", "hub", "someone/model", "v1.0"),
    ],
)
def test_parse_spec(text, kind, hf_id, revision):
    spec = parse_spec(text)
    assert (spec.kind, spec.hf_id, spec.revision) == (kind, hf_id, revision)


def test_parse_local_folder(tmp_path):
    spec = parse_spec(str(tmp_path))
    assert spec.kind == "local" and spec.path == tmp_path.resolve()


def test_pythia_steps_are_the_published_schedule():
    assert len(PYTHIA_STEPS) == 154
    assert PYTHIA_STEPS[:11] == (0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
    assert PYTHIA_STEPS[11:13] == (1000, 2000) and PYTHIA_STEPS[-1] == 143000


# --- errors --------------------------------------------------------------------------------


def test_unknown_name_lists_known_names_and_local_folders():
    with pytest.raises(UnknownModelError) as err:
        parse_spec("gpt3")
    msg = str(err.value)
    assert "'gpt3'" in msg
    for name in ("gpt2", "gpt2-xl", "pythia-14m", "pythia-2.8b-deduped"):
        assert name in msg
    assert "local Hugging Face folder" in msg


def test_unknown_name_suggests_close_match():
    with pytest.raises(UnknownModelError, match="Did you mean 'gpt2-large'"):
        parse_spec("gpt2-larg")


def test_unknown_random_architecture():
    with pytest.raises(UnknownModelError, match="Unknown model 'llama-7b'"):
        parse_spec("llama-7b:random")


def test_unknown_suffix():
    with pytest.raises(UnknownModelError, match="unknown suffix ':rnd'.*gpt2:random"):
        parse_spec("gpt2:rnd")


def test_missing_folder_is_named(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(UnknownModelError, match="No such model folder"):
        parse_spec(str(missing))


@pytest.mark.parametrize(
    "text, pattern",
    [
        ("pythia-160m@3000", r"malformed Pythia revision '3000'.*'step' followed by the training step"),
        ("pythia-160m@step3k", r"malformed Pythia revision 'step3k'"),
        ("pythia-160m@", r"empty revision"),
        ("pythia-160m@step3001", r"no checkpoint at step 3001.*nearest: step3000, step4000"),
        ("pythia-160m@step200000", r"no checkpoint at step 200000.*nearest: step143000\)"),
        ("pythia-160m@step3", r"no checkpoint at step 3.*nearest: step2, step4"),
        ("gpt2@step1000", r"gpt2 was released without training checkpoints"),
        ("pythia-160m@step3000:random", r"random-weight model has no training checkpoints"),
    ],
)
def test_bad_revisions(text, pattern):
    with pytest.raises(RevisionError, match=pattern):
        parse_spec(text)


def test_hub_name_offline_not_cached_fails_fast(monkeypatch, empty_hf_cache):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(ModelNotAvailableError) as err:
        load_model("dfa-tests/not-a-cached-model", device="cpu")
    assert time.perf_counter() - start < 5
    msg = str(err.value)
    assert "dfa-tests/not-a-cached-model is not available offline" in msg
    assert "HF_HUB_OFFLINE is set" in msg
    assert "pass its path" in msg
    # The download command it names is one the installed huggingface-hub ships.
    from importlib.metadata import distribution

    commands = {e.name for e in distribution("huggingface_hub").entry_points if e.group == "console_scripts"}
    named = msg.split("(`", 1)[1].split()[0]
    assert named == "hf" and named in commands and "huggingface-cli" not in msg


@pytest.fixture
def empty_hf_cache(tmp_path, monkeypatch):
    """An empty Hugging Face cache, so a machine that has a real model cached still fails."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))


def test_ladder_checkpoint_offline_names_the_revision(monkeypatch, empty_hf_cache):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotAvailableError, match=r"EleutherAI/pythia-160m \(revision step3000\)"):
        load_model("pythia-160m@step3000", device="cpu")


def test_hub_unreachable_fails_fast_without_offline_flag(monkeypatch, empty_hf_cache):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(hub, "hub_reachable", lambda timeout=3.0: False)
    with pytest.raises(ModelNotAvailableError, match="the hub cannot be reached"):
        load_model("dfa-tests/not-a-cached-model", device="cpu")


def test_random_model_without_any_tokenizer(monkeypatch, empty_hf_cache):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub, "shared_tokenizer_dir", lambda name: None)
    with pytest.raises(ModelNotAvailableError) as err:
        load_model("gpt2:random", device="cpu")
    msg = str(err.value)
    assert msg.startswith("The gpt2 tokenizer that gpt2 uses is not here")
    assert "DFA_TOKENIZERS" in msg and "openai-community/gpt2 is not available offline" in msg


@pytest.mark.parametrize(
    "name, kind, hf_id",
    [
        ("llama-3.2-1b", "ladder", "meta-llama/Llama-3.2-1B"),
        ("qwen2.5-0.5b:random", "random", "Qwen/Qwen2.5-0.5B"),
        ("gemma-3-270m:random", "random", "google/gemma-3-270m"),
        ("smollm2-135m", "ladder", "HuggingFaceTB/SmolLM2-135M"),
    ],
)
def test_modern_family_names_parse(name, kind, hf_id):
    spec = parse_spec(name)
    assert (spec.kind, spec.hf_id) == (kind, hf_id)
    with pytest.raises(RevisionError, match="released without training checkpoints"):
        parse_spec(name.removesuffix(":random") + "@step1000")


def test_a_tokenizer_larger_than_the_models_vocabulary_is_refused_before_building_it(
    monkeypatch, real_tokenizers
):
    """SmolLM2 embeds 49152 tokens; GPT-2's tokenizer has 50257. The check comes before the 135M
    random weights are drawn (the builder is never called)."""

    def never(*a, **k):
        raise AssertionError("the model was built")

    monkeypatch.setattr(models, "_random_hf_model", never)
    with pytest.raises(
        ModelLoadError,
        match=r"smollm2-135m:random: the tokenizer has 50257 tokens but the model embeds only 49152",
    ):
        load_model("smollm2-135m:random", device="cpu", tokenizer="gpt2")


def test_folder_without_config(tmp_path):
    with pytest.raises(ModelLoadError, match="has no config.json"):
        load_model(str(tmp_path), device="cpu")


def test_folder_without_tokenizer(tmp_path, tiny_folders):
    import shutil

    folder = tmp_path / "no-tok"
    folder.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(tiny_folders["gpt2"] / name, folder / name)
    with pytest.raises(ModelLoadError, match="No tokenizer files.*the `tokenizer` setting"):
        load_model(str(folder), device="cpu")
    # ... and the override fixes it.
    model = load_model(str(folder), device="cpu", tokenizer=str(tiny_folders["gpt2"]))
    assert model.cfg.n_layers == 2


def test_bad_dtype_and_device():
    with pytest.raises(models.DfaError, match="Unknown dtype 'float8'"):
        models.resolve_dtype("float8")
    with pytest.raises(models.DfaError, match="Unknown device 'gpu7'"):
        models.resolve_device("gpu7")


# --- local folders -------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ["gpt2", "neox"])
def test_local_folder_matches_hf_logits(arch, tiny_folders, tiny_models):
    from transformers import AutoModelForCausalLM

    bridge = tiny_models[arch]
    hf = AutoModelForCausalLM.from_pretrained(tiny_folders[arch], attn_implementation="eager").eval()
    tokens = bridge.to_tokens("When Mary and John went to the store")
    with torch.no_grad():
        expected = hf(tokens).logits
        got = bridge(tokens)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert bridge.dfa_info.n_params == sum(p.numel() for p in hf.parameters())


@pytest.mark.parametrize("arch", ["gpt2", "neox"])
def test_loaded_model_is_frozen_eval_and_prepends_bos(arch, tiny_models):
    bridge = tiny_models[arch]
    assert not bridge.training and not bridge.original_model.training
    assert not any(p.requires_grad for p in bridge.parameters())
    tokens = bridge.to_tokens(["Mary went", "John"])
    assert tokens[:, 0].tolist() == [0, 0]  # <|endoftext|> is id 0 in the test tokenizer
    assert tokens[0, 1:].tolist() == bridge.tokenizer("Mary went", add_special_tokens=False)["input_ids"]
    graph = NodeGraph.from_model(bridge)
    assert len(graph) == 1 + 2 * (3 + 1)


def test_local_folder_dtype(tiny_folders):
    model = load_model(str(tiny_folders["neox"]), device="cpu", dtype="bfloat16")
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert model(model.to_tokens("Mary went")).dtype == torch.bfloat16


# --- architecture only ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, tokenizer, heads, mlps, bos",
    [("gpt2", "gpt2", 144, 12, 50256), ("pythia-160m", "gpt-neox-20b", 144, 12, 0)],
)
def test_architecture_only(name, tokenizer, heads, mlps, bos, real_tokenizers):
    require_tokenizer(tokenizer)
    model = load_model(f"{name}:random", device="cpu")
    graph = NodeGraph.from_model(model)
    assert (len(graph.heads), len(graph.mlps), len(graph)) == (heads, mlps, heads + mlps + 1)
    published = LADDERS[name].published_params
    assert abs(model.dfa_info.n_params - published) / published < 0.01
    assert model.dfa_info.n_params == published  # exact, in fact: the carried config is the real one
    tokens = model.to_tokens("Hello world")
    assert tokens[0].tolist()[0] == bos and tokens.shape[1] == 3
    assert model(tokens).shape == (1, 3, model.cfg.d_vocab)


def test_architecture_only_is_seeded(real_tokenizers):
    require_tokenizer("gpt-neox-20b")
    a = load_model("pythia-14m:random", device="cpu", seed=1)
    b = load_model("pythia-14m:random", device="cpu", seed=1)
    c = load_model("pythia-14m:random", device="cpu", seed=2)
    wa, wb, wc = (m.original_model.get_input_embeddings().weight for m in (a, b, c))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)
    state = torch.random.get_rng_state()
    load_model("pythia-14m:random", device="cpu", seed=3)
    assert torch.equal(state, torch.random.get_rng_state())  # the caller's RNG is left alone


def test_cached_scores_follow_a_rebuilt_model(tmp_path, tiny_folders, monkeypatch):
    """A cache is keyed by the weights of local and toy models, not just their name: a model
    rebuilt under the same name (another seed, `DFA_ZOO` elsewhere) gets its own scores."""
    import shutil

    from dfa.core.models import weights_fingerprint
    from dfa.store import ScoreSpec
    from dfa.store import score_path as store_path

    def score_path(cache, model, task, method, split, n, seed, ablation, ig_steps):
        return store_path(cache, model, task, ScoreSpec(method, split, n, seed, ablation, ig_steps))

    folder = tmp_path / "m"
    shutil.copytree(tiny_folders["gpt2"], folder)
    key = ("sva", "exact", "val", 8, 0, "patching", 5)
    before = score_path(tmp_path / "cache", str(folder), *key)
    assert score_path(tmp_path / "cache", str(folder), *key) == before
    weights = next(folder.glob("*.safetensors"))
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1  # one bit of one weight
    weights.write_bytes(bytes(data))
    assert score_path(tmp_path / "cache", str(folder), *key) != before
    # Names whose weights the name fixes keep a plain folder; toy names follow $DFA_ZOO.
    assert weights_fingerprint("gpt2") is None and weights_fingerprint("gpt2:random") is None
    assert score_path(tmp_path, "gpt2:random", *key).parent.name == "gpt2_random"
    shipped = weights_fingerprint("toy-gpt2-s")
    zoo = tmp_path / "zoo"
    shutil.copytree(tiny_folders["gpt2"], zoo / "toy-gpt2-s")
    monkeypatch.setenv("DFA_ZOO", str(zoo))
    assert weights_fingerprint("toy-gpt2-s") not in (None, shipped)
