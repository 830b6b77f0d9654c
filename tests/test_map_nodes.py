"""What a map learned across tasks: the nodes it raises into its top set over its start."""

from __future__ import annotations

import torch

from dfa.core.graph import NodeGraph
from dfa.experiments.map_nodes import learned_nodes, learned_table, node_counts, raised
from dfa.experiments.runs import Run
from dfa.core.scores import scores_graph
from dfa.methods import map_logits
from dfa.store import ModelPool
from dfa.training import train
from dfa.training.module import new_map
from tests.test_training import small_config


def test_raised_is_in_the_maps_top_and_not_the_starts():
    start = torch.tensor([[4.0, 3, 2, 1, 0], [0.0, 1, 2, 3, 4]])
    trained = torch.tensor([[0.0, 3, 2, 1, 4], [0.0, 1, 2, 3, 4]])  # task 0: node 4 replaces node 0
    flags = raised(trained, start, top=0.2)  # top 1 of 5
    assert flags.tolist() == [[False, False, False, False, True], [False] * 5]
    assert raised(trained, start, top=0.4).tolist()[0] == [False, False, False, False, True]
    rows = node_counts(torch.tensor([[True, False, True], [True, False, False]]), ["a", "b", "c"], ["t1", "t2"])
    assert rows == [{"node": "a", "tasks": ["t1", "t2"], "n": 2}, {"node": "c", "tasks": ["t1"], "n": 1}]
    table = learned_table({"top": 0.1, "tasks": ["t1", "t2"], "nodes": rows}).splitlines()
    assert table[4] == "| a | 2 of 2 | all |" and table[5] == "| c | 1 of 2 | t1 only |"


def test_a_map_at_its_start_raises_nothing_and_a_lifted_node_is_raised_on_every_task(tmp_path):
    run = Run(train(small_config(tmp_path, run="learned"), progress=False))
    pool = ModelPool("cpu")
    start = new_map(run.config, list(run.meta["src_nodes"]), list(run.meta["tgt_nodes"]))
    with torch.no_grad():
        run.map.W.copy_(start.W)
        run.map.b.zero_()
    assert learned_nodes(run, pool, top=0.2)["nodes"] == []
    # The node the start ranks lowest on every task, lifted above all others by its offset.
    z = 0
    for t in run.config.train_tasks:
        s = run.scores(pool, run.src, t)
        g = scores_graph(s)
        z = z + map_logits(start, g.mapped_scores(s.for_graph(g, t)))
    low = int(torch.argmin(z))
    with torch.no_grad():
        run.map.b[low] = 1e3
    got = learned_nodes(run, pool, top=0.2)
    names = NodeGraph.from_names(list(run.meta["tgt_nodes"])).mapped_names
    assert got["tasks"] == ["sva", "gender"]
    assert got["nodes"] == [{"node": names[low], "tasks": ["sva", "gender"], "n": 2}]


def test_map_nodes_command_prints_the_table_and_refuses_a_bad_share(tmp_path, capsys):
    from dfa.cli import main

    folder = train(small_config(tmp_path, run="cli"), progress=False)
    capsys.readouterr()
    out = tmp_path / "nodes.json"
    assert main(["map-nodes", "--map", str(folder), "--top", "0.2", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("Target nodes a map raises into its top 20% over its start, on 2 training tasks:")
    import json

    saved = json.loads(out.read_text())
    assert saved["tasks"] == ["sva", "gender"] and saved["top"] == 0.2
    for row in saved["nodes"]:
        assert f"| {row['node']} |" in printed or row["n"] == 1
    assert main(["map-nodes", "--map", str(folder), "--top", "0"]) == 2
    assert "--top is a share of the mapped target nodes" in capsys.readouterr().err
