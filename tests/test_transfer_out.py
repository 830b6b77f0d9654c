"""No silent overwrite: `dfa transfer`'s default output names the models when they are not the run's
own, and an earlier result is kept unless `--overwrite` (refused before any model loads)."""

from __future__ import annotations

from dataclasses import asdict

import pytest

from dfa.cli import main
from dfa.config import TrainConfig
from dfa.core.graph import NodeGraph
from dfa.core.mapping import AlignmentMap
from dfa.experiments.runs import Run
from dfa.experiments.transfer import default_out
from dfa.zoo.spec import TOY_SPECS


def _names(model: str) -> list[str]:
    spec = TOY_SPECS[model]
    return NodeGraph(spec.n_layers, spec.n_heads).mapped_names


@pytest.fixture
def run(tmp_path):
    """A run folder of toy-gpt2-s -> toy-gpt2-l holding an untrained map (nothing here trains)."""
    folder = tmp_path / "toy-gpt2-s__toy-gpt2-l" / "holdout-capitals-s0"
    cfg = TrainConfig(src="toy-gpt2-s", tgt="toy-gpt2-l", tasks=["ioi", "sva"], holdout=["capitals"])
    AlignmentMap(_names("toy-gpt2-s"), _names("toy-gpt2-l")).save(
        folder, {"hyperparameters": asdict(cfg), "tasks": ["ioi", "sva"], "src": cfg.src, "tgt": cfg.tgt}
    )
    return folder


@pytest.fixture
def no_model_loads(monkeypatch):
    from dfa import store

    def never(*a, **k):
        raise AssertionError("a model loaded")

    monkeypatch.setattr(store, "load_model", never)


def test_the_default_output_names_models_other_than_the_runs_own(run):
    assert default_out(Run(run), "ioi") == run / "transfer" / "ioi"
    other_tgt = Run(run, tgt="toy-neox-l", allow_other_models=True)  # the same 65 nodes
    assert default_out(other_tgt, "ioi") == run / "transfer" / "ioi__toy-neox-l"
    both = Run(run, src="org/tiny-1.5b", tgt="toy-neox-l", allow_other_models=True)
    assert default_out(both, "ioi") == run / "transfer" / "ioi__org_tiny-1_5b__toy-neox-l"  # no dot: a stem


def test_an_earlier_result_is_kept_unless_overwrite(run, capsys, no_model_loads):
    (run / "transfer").mkdir()
    (run / "transfer" / "ioi.json").write_text("{}")
    assert main(["transfer", "--map", str(run), "--task", "ioi", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert f"{run / 'transfer' / 'ioi.json'} holds an earlier result, kept: pass --overwrite" in err
    assert (run / "transfer" / "ioi.json").read_text() == "{}"
    # --overwrite goes on to the work (here: the model load this test refuses)
    with pytest.raises(AssertionError, match="a model loaded"):
        main(["transfer", "--map", str(run), "--task", "ioi", "--device", "cpu", "--overwrite"])


def test_another_target_does_not_replace_the_runs_own_result(run, no_model_loads):
    (run / "transfer").mkdir()
    (run / "transfer" / "ioi.json").write_text("{}")
    argv = ["transfer", "--map", str(run), "--task", "ioi", "--tgt", "toy-neox-l", "--allow-other-models"]
    with pytest.raises(AssertionError, match="a model loaded"):  # not refused: its own file, not ioi.json
        main([*argv, "--device", "cpu"])
    assert (run / "transfer" / "ioi.json").read_text() == "{}"


def test_the_wrong_target_hint_offers_the_flag_only_where_the_shapes_fit(run):
    """toy-neox-l has the map's 65 target nodes: the flag is offered. toy-gpt2-m has 44: no flag
    makes the map fit, so none is offered, and the flag does not get past it either."""
    from dfa.core.mapping import MapError

    with pytest.raises(MapError, match="set `allow_other_models` to apply it anyway"):
        Run(run, tgt="toy-neox-l")
    for allow in (False, True):
        with pytest.raises(MapError, match="toy-gpt2-m has 44 heads and MLPs, the map's target 65, so no flag") as e:
            Run(run, tgt="toy-gpt2-m", allow_other_models=allow)
        assert "allow_other_models" not in str(e.value)
