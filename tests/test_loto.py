"""`dfa loto`: one map per (pair, held-out task), evaluated zero-shot; resumed from its JSON."""

from __future__ import annotations

import json

from dfa.cli import main
from dfa.experiments import loto


def test_loto_command_trains_once_per_cell_and_resumes(tmp_path, monkeypatch, capsys):
    trained, evaluated = [], []

    def train(c, overwrite=False, progress=True, pool=None):
        trained.append((c.src, c.tgt, tuple(c.holdout)))
        run = c.run_dir()
        run.mkdir(parents=True, exist_ok=True)
        return run

    def evaluate_run(run, pool, tasks, methods, split, n, boot, **kw):
        evaluated.append((run.name, tuple(methods), n, boot, split))
        rows = [
            {
                "task": t,
                "method": m,
                "cpr": 0.5,
                "cpr_ci": [0.4, 0.6],
                "curve": [],
                "n_prompts": n,
                "n_distinct": 5,
            }
            for t in tasks
            for m in methods
        ]
        return {"results": rows}, {}

    monkeypatch.setattr(loto, "train", train)
    monkeypatch.setattr(loto, "evaluate_run", evaluate_run)
    monkeypatch.setattr(loto, "Run", lambda folder: folder)
    out = tmp_path / "loto.json"
    argv = ["loto", "--pairs", "toy-gpt2-s:toy-gpt2-m", "--tasks", "sva", "gender", "--n", "7"]
    argv += ["--methods", "dfa", "depth", "--out", str(tmp_path / "ck"), "--json", str(out)]
    assert main(argv) == 0
    assert trained == [("toy-gpt2-s", "toy-gpt2-m", ("sva",)), ("toy-gpt2-s", "toy-gpt2-m", ("gender",))]
    assert evaluated[0] == ("loto-sva", ("dfa", "depth"), 7, 200, "test")
    rows = json.loads(out.read_text())["results"]
    assert [(r["task"], r["method"]) for r in rows] == [
        ("sva", "dfa"),
        ("sva", "depth"),
        ("gender", "dfa"),
        ("gender", "depth"),
    ]
    assert (
        "| toy-gpt2-s -> toy-gpt2-m | sva | 7/5 | 0.500 [0.40, 0.60] | 0.500 [0.40, 0.60] |"
        in capsys.readouterr().out
    )
    trained.clear()
    assert main(argv) == 0 and trained == []  # every cell done: nothing recomputed
    assert main([*argv[:2], "toy-gpt2-s"]) == 2 and "SRC:TGT" in capsys.readouterr().err
    # The results file is of one split: tuning on val never mixes with the test table.
    assert main([*argv, "--split", "val"]) == 2
    assert "on the test split, not val" in capsys.readouterr().err
    evaluated.clear()
    val = tmp_path / "loto_val.json"
    assert main([*argv[:-1], str(val), "--split", "val"]) == 0
    assert {e[-1] for e in evaluated} == {"val"} and json.loads(val.read_text())["split"] == "val"
