"""The features map (`map_kind: features`): parameters independent of the pair, the dense map it
amounts to, its start against the depth map, files, several pairs in one training run, and its
use on pairs it never saw (evaluate/transfer's `Run`)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from scipy.stats import spearmanr

from dfa.config import ConfigError, make_config, split_pair
from dfa.core.alignment import depth_matrix
from dfa.core.feature_map import N_ROLES, N_STATS, FeatureMap, NodeFeatures, bind_models, load_map
from dfa.core.graph import NodeGraph
from dfa.core.mapping import AlignmentMap, MapError, normalise_scores

# (layers, heads): the toy ladders' s, m, l, and a 12-layer -> 36-layer pair at real node counts.
SHAPES = [((3, 8), (4, 10)), ((3, 8), (5, 12)), ((4, 10), (5, 12)), ((12, 12), (36, 20))]


def bound(
    src: tuple[int, int], tgt: tuple[int, int], roles: bool = False, stats: bool = False, **kw
) -> FeatureMap:
    S, T = NodeGraph(*src), NodeGraph(*tgt)
    g = torch.Generator().manual_seed(0)
    profiles = (
        torch.rand(len(S.heads), N_ROLES, generator=g),
        torch.rand(len(T.heads), N_ROLES, generator=g),
    )
    node_stats = (
        torch.randn(len(S.mapped), N_STATS, generator=g),
        torch.randn(len(T.mapped), N_STATS, generator=g),
    )
    m = FeatureMap("stats" if stats else "roles" if roles else "depth", **kw)
    bind_models(m, S, T, profiles, node_stats)
    return m


def perturb(m: FeatureMap, seed: int = 1) -> FeatureMap:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=g))
    return m


@pytest.mark.parametrize("stats", [False, True])
def test_parameter_count_does_not_depend_on_the_pair(stats):
    counts, shapes = set(), set()
    for src, tgt in [*SHAPES, ((1, 1), (2, 3)), ((36, 20), (3, 8))]:
        m = bound(src, tgt, roles=True, stats=stats)
        counts.add(sum(p.numel() for p in m.parameters()))
        shapes.add(tuple((k, tuple(v.shape)) for k, v in m.state_dict().items()))
        assert m.W.shape == (m.n_src, m.n_tgt) == (len(NodeGraph(*src)) - 1, len(NodeGraph(*tgt)) - 1)
    assert len(counts) == 1 and len(shapes) == 1
    # a few scalars, a 6 x 6 role form and a 10 -> 16 -> 1 offset; with stats a 4 x 4 stats form
    # and 4 more inputs to the offset's 16 hidden units
    assert counts.pop() == 235 + stats * (N_STATS * N_STATS + N_STATS * 16)
    # and one set of parameters serves two pairs: rebinding changes no parameter
    m = perturb(bound((3, 8), (4, 10), stats=stats))
    before = {k: v.clone() for k, v in m.state_dict().items()}
    bind_models(
        m, NodeGraph(4, 10), NodeGraph(5, 12), None, (torch.randn(44, N_STATS), torch.randn(65, N_STATS))
    )
    assert m.n_tgt == 65 and all(torch.equal(before[k], v) for k, v in m.state_dict().items())


@pytest.mark.parametrize(("roles", "stats"), [(False, False), (True, False), (True, True)])
def test_the_features_map_is_the_dense_map_of_its_kernel(roles, stats):
    m = perturb(bound((3, 8), (5, 12), roles=roles, stats=stats, temperature=0.7, normalise="abs-max"))
    dense = m.dense()
    assert isinstance(dense, AlignmentMap) and dense.tgt_names == NodeGraph(5, 12).mapped_names
    s = torch.randn(4, m.n_src)
    assert torch.allclose(m(s), dense(s), atol=1e-6) and torch.allclose(
        m.logits(s), dense.logits(s), atol=1e-5
    )
    # the kernel: a target node reads source nodes of its own kind only, weights summing to 1
    K = m.kernel().detach()
    src_head = m.pair[0].is_head[:, None]
    tgt_head = m.pair[1].is_head[None, :]
    assert torch.all(K[src_head != tgt_head] == 0) and torch.allclose(K.sum(0), torch.ones(m.n_tgt))
    # by hand for one target MLP: softmax over the source MLPs of the shifted RBF in depth
    j = m.tgt_names.index("m2")
    d_src = torch.tensor([(layer + 0.5) / 3 for layer in range(3)])
    width = m.log_width.exp()[0] / 3
    w = torch.softmax(-((d_src - 0.5 - m.shift[0] / 3) ** 2) / (2 * width**2), 0)
    mlps = [m.src_names.index(f"m{layer}") for layer in range(3)]
    if stats:  # + the stats form between the source MLPs' and the target MLP's statistics
        src_s, tgt_s = m.pair[0].stats, m.pair[1].stats
        sim = src_s[mlps] @ m.stats_bilinear @ tgt_s[j]
        w = torch.softmax(-((d_src - 0.5 - m.shift[0] / 3) ** 2) / (2 * width**2) + sim, 0)
    assert torch.allclose(m.W[mlps, j], m.gain[0] * w, atol=1e-6)
    assert torch.allclose(m.b, m.offset(m.pair[1].table[:, : 10 + N_STATS * stats]).squeeze(-1))


def test_statistics_move_the_map_only_when_the_features_read_them():
    S, T = NodeGraph(3, 8), NodeGraph(4, 10)
    g = torch.Generator().manual_seed(3)
    a = (torch.randn(len(S.mapped), N_STATS, generator=g), torch.randn(len(T.mapped), N_STATS, generator=g))
    b = (torch.randn(len(S.mapped), N_STATS, generator=g), torch.randn(len(T.mapped), N_STATS, generator=g))
    for features, moves in (("roles", False), ("stats", True)):
        m = perturb(FeatureMap(features))
        if features == "stats":
            with torch.no_grad():
                m.stats_bilinear.fill_(0.5)
        bind_models(m, S, T, None, a)
        K, off = m.kernel().detach(), m.b.detach()
        bind_models(m, S, T, None, b)
        assert torch.allclose(m.kernel(), K) is not moves and torch.allclose(m.b, off) is not moves
    # each head of one layer gets its own offset from its statistics
    m = perturb(FeatureMap("stats"))
    bind_models(m, S, T, None, a)
    assert len(set(m.b[:10].tolist())) == 10


def test_wrong_or_missing_statistics_are_refused():
    with pytest.raises(
        MapError, match=r"Node statistics of shape \[24, 4\] for a model with 27 heads and MLPs"
    ):
        NodeFeatures.of(NodeGraph(3, 8), None, torch.randn(24, N_STATS))
    with pytest.raises(MapError, match="recompute the node statistics"):
        NodeFeatures.of(NodeGraph(3, 8), None, torch.randn(27, N_STATS + 1))
    with pytest.raises(MapError, match="non-finite"):
        NodeFeatures.of(NodeGraph(3, 8), None, torch.full((27, N_STATS), float("nan")))
    with pytest.raises(MapError, match="reads node statistics"):
        bind_models(FeatureMap("stats"), NodeGraph(3, 8), NodeGraph(4, 10))
    with pytest.raises(MapError, match="choose one of depth, roles, stats"):
        FeatureMap("norms")  # type: ignore[arg-type]


def test_roles_move_the_heads_only_when_the_features_read_them():
    with_roles, without = bound((3, 8), (4, 10), roles=True), bound((3, 8), (4, 10), roles=False)
    for m in (with_roles, without):
        with torch.no_grad():
            m.role_bilinear.fill_(2.0)
    K0 = bound((3, 8), (4, 10), roles=True).kernel()
    heads = with_roles.pair[1].is_head
    assert not torch.allclose(with_roles.kernel()[:, heads], K0[:, heads])
    assert torch.allclose(with_roles.kernel()[:, ~heads], K0[:, ~heads])  # MLPs have no roles
    assert torch.allclose(without.kernel(), K0)  # features: depth reads no profile


@pytest.mark.parametrize(("src", "tgt"), SHAPES)
def test_the_start_ranks_target_nodes_as_the_dense_maps_depth_start(src, tgt):
    """The dense map starts at `init_gain * D`, b = 0; the features map at a Gaussian-smoothed D."""
    m = bound(src, tgt, init_gain=6.0, normalise="zscore")
    D = 6.0 * depth_matrix(NodeGraph(*src), NodeGraph(*tgt)).float()
    g = torch.Generator().manual_seed(0)
    rho = []
    for _ in range(20):
        s = torch.randn(m.n_src, generator=g)
        z_dense = normalise_scores(s, "zscore") @ D
        rho.append(spearmanr(z_dense.numpy(), m.logits(s).detach().numpy())[0])
    assert sum(rho) / len(rho) > 0.95 and min(rho) > 0.75
    assert torch.all(m.b == 0)  # the offset starts at zero, as the dense map's b


def test_an_unseen_pair_of_other_sizes_gets_a_valid_mask():
    m = perturb(bound((3, 8), (4, 10), roles=True))
    bind_models(m, NodeGraph(5, 12), NodeGraph(12, 12), (torch.rand(60, N_ROLES), torch.rand(144, N_ROLES)))
    mask = m.full_mask(torch.randn(65))
    assert mask.shape == (len(NodeGraph(12, 12)),) and mask[0] == 1
    assert torch.isfinite(mask).all() and ((mask >= 0) & (mask <= 1)).all() and mask[1:].std() > 0
    with pytest.raises(MapError, match="bound to 65 source nodes"):
        m(torch.randn(27))
    with pytest.raises(MapError, match=r"bind it to that model's features"):
        m.check_graphs(NodeGraph(5, 12), NodeGraph(4, 10), "toy-gpt2-l", "toy-neox-m")
    with pytest.raises(MapError, match=r"Role profiles of shape \[3, 6\] for a model with 24 heads"):
        NodeFeatures.of(NodeGraph(3, 8), torch.rand(3, N_ROLES))
    with pytest.raises(MapError, match="bound to no model pair"):
        FeatureMap().logits(torch.randn(5))


def test_save_load_round_trip_is_bit_identical_and_bad_files_are_named(tmp_path):
    from safetensors.torch import load_file, save_file

    m = perturb(bound((3, 8), (4, 10), roles=True, temperature=0.5))
    m.save(tmp_path, {"pairs": [["a", "b"]]})
    back, meta = load_map(tmp_path)
    assert isinstance(back, FeatureMap) and meta["map_kind"] == "features" and meta["pairs"] == [["a", "b"]]
    assert meta["parameters"] == sum(p.numel() for p in m.parameters())
    assert (back.features, back.temperature, back.normalise) == ("roles", 0.5, "zscore")
    for k, v in m.state_dict().items():
        assert torch.equal(back.state_dict()[k], v)
    bind_models(back, NodeGraph(5, 12), NodeGraph(3, 8), (torch.rand(60, 6), torch.rand(24, 6)))
    bind_models(
        m,
        NodeGraph(5, 12),
        NodeGraph(3, 8),
        (back.pair[0].roles[back.pair[0].is_head], back.pair[1].roles[back.pair[1].is_head]),
    )
    s = torch.randn(65)
    assert torch.equal(back.logits(s), m.logits(s))
    assert set(load_file(str(tmp_path / "map.safetensors"))) == set(m.state_dict())  # safetensors, no pickle
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave no temporary file
    # a dense map's files still load as a dense map
    dense_dir = tmp_path / "dense"
    m.dense().save(dense_dir)
    assert isinstance(load_map(dense_dir)[0], AlignmentMap)
    # bad files
    state = load_file(str(tmp_path / "map.safetensors"))
    save_file({**state, "role_bilinear": torch.zeros(3, 3)}, str(tmp_path / "map.safetensors"))
    with pytest.raises(MapError, match="does not hold a features map's parameters"):
        load_map(tmp_path)
    save_file({**state, "gain": torch.tensor([float("nan"), 1.0])}, str(tmp_path / "map.safetensors"))
    with pytest.raises(MapError, match="non-finite"):
        load_map(tmp_path)
    info = tmp_path / "map.json"
    info.write_text(json.dumps({**meta, "map_kind": "sparse"}))
    with pytest.raises(MapError, match="unknown map kind 'sparse'"):
        load_map(tmp_path)
    info.write_text(json.dumps({k: v for k, v in meta.items() if k != "features"}))
    with pytest.raises(MapError, match="lacks 'features'"):
        load_map(tmp_path)


def test_a_stats_map_round_trips_and_a_roles_file_is_not_a_stats_map(tmp_path):
    m = perturb(bound((3, 8), (4, 10), stats=True))
    m.save(tmp_path / "st")
    back, meta = load_map(tmp_path / "st")
    assert isinstance(back, FeatureMap) and back.features == "stats" and "statistics" in meta["kernel"]
    assert all(torch.equal(back.state_dict()[k], v) for k, v in m.state_dict().items())
    stats = (m.pair[0].stats, m.pair[1].stats)
    bind_models(back, NodeGraph(3, 8), NodeGraph(4, 10), None, stats)
    bind_models(m, NodeGraph(3, 8), NodeGraph(4, 10), None, stats)  # roles dropped on both sides
    s = torch.randn(27)
    assert torch.equal(back.logits(s), m.logits(s))
    # a roles map's parameters are not a stats map's
    bound((3, 8), (4, 10), roles=True).save(tmp_path / "ro")
    info = json.loads((tmp_path / "ro" / "map.json").read_text())
    (tmp_path / "ro" / "map.json").write_text(json.dumps({**info, "features": "stats"}))
    with pytest.raises(MapError, match="does not hold a features map's parameters"):
        load_map(tmp_path / "ro")


def test_pairs_settings_and_their_errors(tmp_path):
    assert split_pair("gpt2:random:gpt2-large:random") == ("gpt2:random", "gpt2-large:random")
    c = make_config(None, map_kind="features", pairs=["toy-gpt2-s:toy-gpt2-m", "toy-neox-s:toy-neox-m"])
    assert c.pair_list == [("toy-gpt2-s", "toy-gpt2-m"), ("toy-neox-s", "toy-neox-m")]
    assert (c.src, c.tgt) == ("toy-gpt2-s", "toy-gpt2-m")
    assert c.run_dir().parent.name == "toy-gpt2-s__toy-gpt2-m+toy-neox-s__toy-neox-m"
    assert (
        make_config(None).pair_list == [("toy-gpt2-s", "toy-gpt2-l")]
        and make_config(None).map_kind == "dense"
    )
    yaml = tmp_path / "pairs.yaml"
    yaml.write_text(
        "map_kind: features\nmap_features: depth\npairs: [toy-gpt2-s:toy-gpt2-m, toy-neox-s:toy-neox-m]\n"
    )
    assert len(make_config(yaml).pair_list) == 2 and make_config(yaml).map_features == "depth"
    with pytest.raises(ConfigError, match=r"dense map .* cannot train on 2 pairs.*--map-kind features"):
        make_config(None, pairs=["toy-gpt2-s:toy-gpt2-m", "toy-neox-s:toy-neox-m"])
    with pytest.raises(ConfigError, match="written SRC:TGT"):
        make_config(None, map_kind="features", pairs=["toy-gpt2-s"])
    with pytest.raises(ConfigError, match="no cut at a ':' leaves a known model"):
        make_config(None, map_kind="features", pairs=["toy-gpt2-s:nonesuch-9"])
    with pytest.raises(ConfigError, match="lists a pair twice"):
        make_config(None, map_kind="features", pairs=["toy-gpt2-s:toy-gpt2-m"] * 2)
    with pytest.raises(ConfigError, match="'map_kind' must be one of dense, features"):
        make_config(None, map_kind="sparse")
    with pytest.raises(ConfigError, match="offset_anchor non-negative"):
        make_config(None, offset_anchor=-1.0)


# --- training on several pairs, applied to an unseen one ------------------------------------------
TWO_PAIRS = {
    "map_kind": "features",
    "pairs": ["toy-gpt2-s:toy-gpt2-m", "toy-neox-s:toy-neox-m"],
    "tasks": ["sva", "gender"],
    "n_src": 12,
    "n_train": 20,
    "n_val": 10,
    "batch_size": 10,
    "max_epochs": 2,
    "ig_steps": 2,
    "log_every_n_steps": 1,
    "device": "cpu",
}


@pytest.fixture(scope="module")
def two_pair_run(tmp_path_factory):
    from dfa.store import ModelPool
    from dfa.training import train

    tmp = tmp_path_factory.mktemp("pairs")
    c = make_config(None, **TWO_PAIRS, out=str(tmp / "ck"), cache=str(tmp / "cache"))
    seen: list[int] = []

    import lightning.pytorch as pl

    class Pairs(pl.Callback):
        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            seen.append(batch.pair)  # the step ran on its pair's target and graph
            assert module.graph is module.pair_states[batch.pair]["graph"]
            assert module.map.n_tgt == len(module.graph) - 1

    pool = ModelPool("cpu")
    run = train(c, progress=False, callbacks=[Pairs()], pool=pool)
    return run, seen, pool


def test_training_on_two_pairs_draws_batches_across_them_and_records_them(two_pair_run):
    run, seen, _ = two_pair_run
    info = json.loads((run / "map.json").read_text())
    assert info["map_kind"] == "features" and info["features"] == "stats"  # the default
    assert info["pairs"] == [["toy-gpt2-s", "toy-gpt2-m"], ["toy-neox-s", "toy-neox-m"]]
    assert info["hyperparameters"]["pairs"] == TWO_PAIRS["pairs"]
    # 2 pairs x 2 tasks x 2 batches per epoch, the pairs shuffled together
    assert len(seen) == 16 and set(seen[:8]) == {0, 1} and seen[:8] != sorted(seen[:8])
    labels = {
        "toy-gpt2-s:toy-gpt2-m/sva",
        "toy-gpt2-s:toy-gpt2-m/gender",
        "toy-neox-s:toy-neox-m/sva",
        "toy-neox-s:toy-neox-m/gender",
    }
    assert [h["epoch"] for h in info["val_history"]] == [0, 1, 2]
    assert all(set(h["val_cpr"]) == labels for h in info["val_history"])
    assert info["kept"]["epoch"] in (0, 1, 2)
    back, _ = load_map(run)
    assert isinstance(back, FeatureMap)


def test_a_two_pair_map_applies_to_an_unseen_pair_and_a_dense_map_refuses(two_pair_run, tmp_path):
    from dfa.experiments.transfer import Run, method_rankings

    run, _, pool = two_pair_run
    r = Run(run, "toy-gpt2-s", "toy-neox-l")  # a cross-family pair it never saw, of other sizes
    assert not r.seen_pair and Run(run).seen_pair
    scores = method_rankings(r, pool, "sva", ["dfa", "depth"], draws=2)
    tgt = NodeGraph.from_model(pool.get("toy-neox-l"))
    # Kept at (or near) its start, the map scores the heads of a target layer alike: `dfa` is then
    # the mean over random tie orders (draws), as `depth`; either way whole-graph scores, input at 1.
    drawn = scores["dfa"] if isinstance(scores["dfa"], list) else [scores["dfa"]]
    for d in drawn:
        assert d.shape == (len(tgt),) and d[0] == 1 and torch.isfinite(d).all()
    assert r.map.n_tgt == len(tgt) - 1 and r.map.n_src == 27
    # the same map's dense equivalent refuses another pair, naming both
    dense_dir = tmp_path / "dense"
    info = json.loads((run / "map.json").read_text())
    hp = {**info["hyperparameters"], "map_kind": "dense", "pairs": []}
    r.map.dense().save(dense_dir, {"hyperparameters": {**hp, "src": "toy-gpt2-s", "tgt": "toy-neox-l"}})
    with pytest.raises(
        MapError,
        match=r"trained on toy-gpt2-s -> toy-neox-l.*target 'toy-gpt2-m' \(trained on 'toy-neox-l'\).*features map",
    ):
        Run(dense_dir, "toy-gpt2-s", "toy-gpt2-m")


def test_transfer_writes_a_circuit_for_an_unseen_pair(two_pair_run, tmp_path):
    from dfa.experiments.transfer import Run, transfer

    run, _, pool = two_pair_run
    predicted, paths, ev = transfer(
        Run(run, "toy-neox-m", "toy-gpt2-l"), pool, "gender", tmp_path / "c", evaluate=False
    )
    assert ev is None and all(Path(p).is_file() for p in paths)
    assert predicted.meta["map_kind"] == "features" and predicted.meta["pair_seen"] is False
    assert len(predicted.names) == len(NodeGraph(5, 12)) and math.isclose(float(predicted.scores[0]), 1.0)


def test_a_one_pair_features_map_trains_every_parameter_and_restores_its_start(two_pair_run):
    from dfa.store import ModelPool
    from dfa.training import MapTrainer, TransferData

    run, _, pool = two_pair_run
    cache = str(run.parents[2] / "cache")  # the scores and roles the fixture cached
    kw = {k: v for k, v in TWO_PAIRS.items() if k != "pairs"}
    c = make_config(None, **kw, src="toy-gpt2-s", tgt="toy-gpt2-m", cache=cache, out=str(run.parents[2]))
    data = TransferData(c, pool if isinstance(pool, ModelPool) else ModelPool("cpu"))
    data.setup("fit")
    p = data.pairs[0]
    assert p.profiles is not None and p.profiles[0].abs().sum() > 0  # the heads' roles are read
    assert p.stats is not None and [len(s) for s in p.stats] == [27, 44]  # and the node statistics
    module = MapTrainer(c.to_dict(), p.src_graph.mapped_names, NodeGraph.from_model(data.target).mapped_names)
    module.attach(
        data.target, p.src_graph, p.source_scores, data.metrics, p.source_draws, p.profiles, stats=p.stats
    )
    assert torch.equal(module.map.pair[1].stats, p.stats[1])
    assert module.labels == ["sva", "gender"]  # one pair: labels are the tasks
    terms = module.loss_terms(data.train_items[0])
    assert float(terms["anchor"].detach()) == 0.0  # the start is W0
    assert float(terms["offset"].detach()) == 0.0  # and g = 0
    terms["loss"].backward()
    for name, param in module.map.named_parameters():  # g's output layer starts at 0: its hidden
        if not name.startswith("offset.0."):  # layer gets a gradient from the second step on
            assert param.grad is not None and param.grad.abs().sum() > 0, name
    opt = torch.optim.Adam(module.map.parameters(), lr=0.05)
    opt.step()
    opt.zero_grad()
    module.loss_terms(data.train_items[0])["loss"].backward()
    for name, param in module.map.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name
    module.restore_start()
    start = {k: v.clone() for k, v in module.map.state_dict().items()}
    perturb(module.map)
    moved = module.loss_terms(data.train_items[0])
    assert float(moved["anchor"].detach()) > 0
    # the penalty on g: offset_anchor * mean_j g(psi_j)^2, added to the loss
    assert float(moved["offset"].detach()) == pytest.approx(float(module.map.b.detach().pow(2).mean()))
    without = MapTrainer({**c.to_dict(), "offset_anchor": 0.0}, module.map.src_names, module.map.tgt_names)
    without.map.load_state_dict(module.map.state_dict())
    without.attach(
        data.target, p.src_graph, p.source_scores, data.metrics, p.source_draws, p.profiles, stats=p.stats
    )
    rest = without.loss_terms(data.train_items[0])
    assert "offset" not in rest
    assert float(moved["loss"].detach()) == pytest.approx(
        float(rest["loss"].detach()) + c.offset_anchor * float(moved["offset"].detach()), rel=1e-5
    )
    module.restore_start()
    assert all(torch.equal(v, start[k]) for k, v in module.map.state_dict().items())
    # At its start the map scores a layer's heads alike; validation's circuits take them in a
    # seeded random order (as evaluation's draws do), never in node order, and keep the mask's order
    # between nodes that differ.
    from dfa.core.mapping import mask_probabilities
    from dfa.methods import has_ties

    probs = module.graph.with_input(mask_probabilities(module.map.logits(module.source[0])).cpu())
    assert has_ties(module.graph, probs)
    ranked = module.target_scores(0)
    assert not has_ties(module.graph, ranked) and torch.equal(ranked, module.target_scores(0))
    p, r = probs[1:].double(), ranked[1:].double()
    assert bool(((p[:, None] > p[None, :]) <= (r[:, None] > r[None, :])).all())
    ties = [(i, j) for i in range(len(p)) for j in range(i + 1, len(p)) if p[i] == p[j]]
    assert any(r[i] > r[j] for i, j in ties) and any(r[i] < r[j] for i, j in ties)  # not node order


def test_pair_agnostic_cells_pair_the_features_map_with_its_dense_equivalent(two_pair_run, tmp_path):
    from dfa.core.errors import DfaError
    from dfa.experiments.pair_agnostic import markdown, pair_agnostic, write_report
    from dfa.experiments.transfer import Run

    run, _, pool = two_pair_run
    r = Run(run, "toy-gpt2-s", "toy-neox-l")
    dense_dir = tmp_path / "dense"
    hp = json.loads((run / "map.json").read_text())["hyperparameters"]
    hp = {**hp, "map_kind": "dense", "pairs": [], "src": "toy-gpt2-s", "tgt": "toy-neox-l"}
    from dfa.experiments.transfer import method_rankings

    method_rankings(r, pool, "sva", ["dfa"])  # binds the map to the pair (roles read)
    r.map.dense().save(dense_dir, {"hyperparameters": hp})
    # A features map "trained without gender" (the same map, its config saying gender was held out):
    # evaluated on gender alone, on every pair, beside the in-distribution cells.
    held = tmp_path / "held"
    shutil.copytree(run, held, ignore=shutil.ignore_patterns("*.ckpt", "tensorboard"))
    info = json.loads((held / "map.json").read_text())
    info["hyperparameters"]["holdout"] = ["gender"]
    (held / "map.json").write_text(json.dumps(info))
    report = pair_agnostic(
        run, [f"toy-gpt2-s:toy-neox-l={dense_dir}"], ["sva"], pool, n=10, boot=20, draws=1, held_out=[held]
    )
    cell, held_cell = report["cells"]
    assert cell["pair_seen"] is False and cell["task_seen"] is True and cell["n_prompts"] == 10
    assert (held_cell["task"], held_cell["task_seen"], held_cell["features_map"]) == (
        "gender",
        False,
        str(held),
    )
    # every compared method is scored on the same prompts and paired with the features map
    want = {
        "features",
        "dense",
        "depth",
        "gold",
        "gold-layer",
        "direct",
        "depth-direct",
        "role",
        "random",
        "permuted",
        "scrambled",
    }
    assert set(cell["cpr"]) == want and set(cell["paired"]) == {
        f"features - {m}" for m in want - {"features"}
    }
    assert set(cell["references_vs_depth"]) == {"gold-layer", "depth-direct"}
    vs = cell["references_vs_depth"]["depth-direct"]
    assert vs["diff"] == pytest.approx(cell["cpr"]["depth-direct"] - cell["cpr"]["depth"])
    same = cell["paired"]["features - dense"]  # the dense map of the features map's own kernel
    assert same["diff"] == 0 and same["ci"] == [0, 0] and cell["share_of_dense"] == 1
    assert cell["paired"]["features - depth"]["diff"] == pytest.approx(
        cell["cpr"]["features"] - cell["cpr"]["depth"]
    )
    text = markdown(report)
    assert "toy-gpt2-s -> toy-neox-l (unseen) | sva |" in text
    assert "toy-gpt2-s -> toy-neox-l (unseen) | gender (held out) |" in text
    assert "- unseen pairs, trained tasks (1 cells): above depth on" in text
    assert "- unseen pairs, held-out tasks (1 cells)" in text
    paths = write_report(report, tmp_path / "out" / "pa")
    assert [p.suffix for p in paths] == [".json", ".md"] and json.loads(paths[0].read_text())["cells"]
    with pytest.raises(DfaError, match="SRC:TGT=RUN"):
        pair_agnostic(run, ["toy-gpt2-s:toy-neox-l"], ["sva"], pool)
    with pytest.raises(DfaError, match="holds a dense map"):
        pair_agnostic(dense_dir, [], ["sva"], pool)


def test_pair_agnostic_summary_counts_wins_controls_and_shares_by_group():
    from dfa.experiments.pair_agnostic import summary

    def cell(seen, task_seen, lo, hi, share, kept, controls_lo=0.1, layer=0.5, direct=0.95):
        paired = {"features - depth": {"diff": (lo + hi) / 2, "ci": [lo, hi]}}
        paired |= {
            f"features - {m}": {"diff": 0.2, "ci": [controls_lo, 0.3]}
            for m in ("random", "permuted", "scrambled")
        }
        return {
            "pair_seen": seen, "task_seen": task_seen, "paired": paired, "share_of_dense": share,
            "cpr": {"dense": 1.0, "gold-layer": layer, "depth-direct": direct}, "dense_kept_epoch": kept,
        }  # fmt: skip

    report = {
        "cells": [
            cell(False, True, 0.01, 0.02, 0.95, 3, layer=0.92),  # above depth, 90%+ of a trained dense map
            cell(False, True, -0.01, 0.01, 0.50, 0, direct=0.5),  # level; its dense map kept its start
            cell(False, True, -0.03, -0.02, 0.80, 2, controls_lo=-0.1),  # below, not above every control
            cell(True, True, 0.01, 0.02, 1.00, 1),
        ]
    }
    unseen, seen = summary(report)
    assert unseen == (
        "- unseen pairs, trained tasks (3 cells): above depth on 1, level on 1, below on 1; above every "
        "control on 2; 75% of the dense map's CPR on average, 90% or more on 1 (gold-layer: 1 of 3; "
        "depth-direct: 2 of 3); "
        "where the dense map moved from its start (2 cells): 88%, 90% or more on 1."
    )
    assert seen.startswith("- seen pairs (1 cells): above depth on 1,") and "moved from its start" not in seen
    for c, ci in zip(report["cells"][:3], ([0.1, 0.2], [-0.1, 0.1], [-0.3, -0.2]), strict=True):
        c["references_vs_depth"] = {"depth-direct": {"diff": sum(ci) / 2, "ci": ci}}
    assert "depth-direct: 2 of 3, above / below depth on 1 / 1); " in summary(report)[0]
    # Methods left out (--methods) leave their clauses out rather than count vacuously.
    for c in report["cells"]:
        c["paired"] = {k: v for k, v in c["paired"].items() if k == "features - depth"}
    assert "control" not in summary(report)[0]
    for c in report["cells"]:
        c["paired"] = {}
    assert summary(report)[1].startswith("- seen pairs (1 cells): 100% of the dense map's CPR")
