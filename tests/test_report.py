"""Tables and figures from results (`dfa.report`): the text table and wins of an evaluation report,
and curve plots written as PNG."""

from __future__ import annotations

import pytest

from dfa.core.errors import DfaError
from dfa.core.evaluate import evaluate_circuits, random_scores
from dfa.core.graph import NodeGraph
from dfa.report.figures import curve_figure, plot_curves, plot_grid
from dfa.report.tables import loto_table, paired_table, prompt_notes, recovery, table, wins
from tests.micro import micro_batch

PNG = b"\x89PNG\r\n\x1a\n"
REPORT = {
    "results": [
        {
            "task": "sva",
            "setting": "in-distribution",
            "method": "dfa",
            "cpr": 0.8,
            "cpr_ci": [0.7, 0.9],
            "n_prompts": 100,
            "n_distinct": 17,
        },
        {
            "task": "sva",
            "setting": "in-distribution",
            "method": "depth",
            "cpr": 0.5,
            "cpr_ci": [0.4, 0.6],
            "n_prompts": 100,
            "n_distinct": 17,
        },
        {"task": "gender", "setting": "zero-shot", "method": "dfa", "cpr": 0.3, "cpr_ci": [None, None]},
        {"task": "gender", "setting": "zero-shot", "method": "random", "cpr": 0.35, "cpr_ci": [0.2, 0.5]},
    ]
}


def test_table_has_a_column_per_method_and_marks_what_was_not_measured():
    lines = table(REPORT).splitlines()
    assert lines[0].split() == ["task", "setting", "prompts", "dfa", "depth", "random"]
    assert (
        lines[1]
        == "  sva            in-distribution     100/17   0.800 [ 0.70, 0.90]   0.500 [ 0.40, 0.60]"
        + " " * 21
        + "-"
    )
    # results written before the counts: the prompts are shown as unknown, not made up
    assert lines[2].split()[:3] == ["gender", "zero-shot", "?/?"]
    assert "0.300 [  nan,  nan]" in lines[2]  # no interval (no bootstrap): shown as nan
    assert len({len(line) for line in lines}) == 1  # the columns line up


def test_wins_count_only_tasks_where_both_were_measured():
    # Rows without a paired interval: a higher CPR counts (a zero-width interval at the difference).
    assert wins(REPORT, ["depth", "random", "permuted"]) == {
        "depth": {"wins": 1, "losses": 0, "of": 1},
        "random": {"wins": 0, "losses": 1, "of": 1},
        "permuted": {"wins": 0, "losses": 0, "of": 0},
    }


def test_wins_count_only_paired_intervals_clear_of_zero():
    import copy

    report = copy.deepcopy(REPORT)
    dfa = next(r for r in report["results"] if r["method"] == "dfa")
    # Above depth by CPR, but the paired interval holds 0: a tie. Below random, clearly: a loss.
    dfa["paired"] = {
        "depth": {"diff": 0.01, "ci": [-0.02, 0.04]},
        "random": {"diff": -0.1, "ci": [-0.2, -0.01]},
    }
    assert wins(report, ["depth", "random"]) == {
        "depth": {"wins": 0, "losses": 0, "of": 1},
        "random": {"wins": 0, "losses": 1, "of": 1},
    }
    dfa["paired"]["depth"]["ci"] = [0.001, 0.04]
    assert wins(report, ["depth"])["depth"]["wins"] == 1
    text = paired_table(report)
    assert "dfa - depth" in text.splitlines()[0] and "+0.010 [+0.00,+0.04]+" in text
    assert "-0.100 [-0.20,-0.01]-" in text


def test_loto_table_shows_a_missing_interval_as_nan_like_table():
    # A LOTO results file written without a bootstrap holds `"cpr_ci": [null, null]`.
    pair = {"src": "toy-gpt2-s", "tgt": "toy-gpt2-m", "task": "sva"}
    rows = [
        {**pair, "method": "dfa", "cpr": 0.5, "cpr_ci": [None, None]},
        {**pair, "method": "depth", "cpr": 0.4, "cpr_ci": [0.3, 0.5]},
        {**pair, "method": "random", "cpr": 0.2, "cpr_ci": None},
    ]
    lines = loto_table(rows).splitlines()
    assert (
        lines[2]
        == "| toy-gpt2-s -> toy-gpt2-m | sva | ?/? | 0.500 [nan, nan] | 0.400 [0.30, 0.50] | 0.200 [nan, nan] |"
    )
    assert lines[-1].endswith("depth 1 above / 0 below of 1, random 1 above / 0 below of 1")
    rows[0].update(n_prompts=100, n_distinct=17)
    assert "| toy-gpt2-s -> toy-gpt2-m | sva | 100/17 | 0.500" in loto_table(rows)


def test_prompt_notes_say_when_pairs_share_few_prompts():
    rows = [
        {"task": "capitals", "n_prompts": 100, "n_distinct": 17},
        {"task": "gender", "n_prompts": 100, "n_distinct": 62},
        {"task": "ioi", "n_prompts": 100, "n_distinct": 100},
        {"task": "sva", "n_prompts": 100},  # an old results file: no count, no note
    ]
    notes = prompt_notes(rows)
    want = (
        "note: capitals: its 100 test pairs hold only 17 distinct clean prompts, too few for a tight "
        "interval (under 30); its intervals resample the 17 (read them as 17 observations, not 100)"
    )
    assert notes == [want]  # gender's 62 of 100 show in the table's column, without a note
    assert prompt_notes([{"task": "ioi", "n_prompts": 10, "n_distinct": 10}]) == []  # few asked, all distinct


@pytest.fixture
def evaluation(tiny_model):
    g = NodeGraph.from_model(tiny_model)
    return evaluate_circuits(
        tiny_model,
        g,
        [micro_batch(n=4, pos=5, vocab=18)],
        "logit_diff",
        {"r": random_scores(len(g), 0)},
        n_boot=10,
    )


def test_plot_is_a_png(tmp_path, evaluation):
    path = plot_curves(evaluation, tmp_path / "curves.png", "tiny")
    assert path.read_bytes()[:8] == PNG


def test_grid_has_a_panel_per_evaluation_and_refuses_none(tmp_path, evaluation):
    path = plot_grid({"a": evaluation, "b": evaluation, "c": evaluation}, tmp_path / "grid.png", "tiny")
    assert path.read_bytes()[:8] == PNG
    with pytest.raises(DfaError, match="Nothing to plot"):
        plot_grid({}, tmp_path / "empty.png")
    assert not (tmp_path / "empty.png").exists()


def test_curve_figure_has_a_log_and_a_linear_view_and_marks_zero_shot_tasks(evaluation):
    import matplotlib.pyplot as plt

    settings = {"sva": "in-distribution", "capitals": "zero-shot"}
    fig = curve_figure({"sva": evaluation, "capitals": evaluation}, "s -> t", settings)
    try:
        summary, *axes = fig.axes
        assert [ax.get_xscale() for ax in axes] == ["log", "linear", "log", "linear"]
        titles = [ax.get_title().splitlines()[0] for ax in axes]
        assert titles == ["s -> t / sva (in-distribution)"] * 2 + ["s -> t / capitals (zero-shot)"] * 2
        red = [ax.title.get_color() == "tab:red" for ax in axes]
        assert red == [False, False, True, True]
        # one legend per row, on the linear view, with each ranking's CPR and interval
        assert [ax.get_legend() is not None for ax in axes] == [False, True, False, True]
        texts = [t.get_text() for t in axes[1].get_legend().get_texts()]
        c = evaluation.curves["r"]
        assert texts == [f"r  {c.cpr:.3f} [{c.cpr_ci[0]:.2f}, {c.cpr_ci[1]:.2f}]"]
        # the summary first: a bar per task and method at its CPR, zero-shot tasks' names in red
        assert [round(p.get_height(), 6) for p in summary.patches] == [round(c.cpr, 6)] * 2
        ticks = summary.get_xticklabels()
        assert [t.get_text() for t in ticks] == ["sva", "capitals\n(zero-shot)"]
        assert [t.get_color() for t in ticks][1] == "tab:red"
    finally:
        plt.close(fig)


def test_a_single_evaluation_has_no_summary_panel(evaluation):
    import matplotlib.pyplot as plt

    fig = curve_figure({"sva": evaluation})
    try:
        assert [ax.get_xscale() for ax in fig.axes] == ["log", "linear"]
    finally:
        plt.close(fig)


def test_the_log_axis_starts_at_the_smallest_circuit_that_holds_a_node(evaluation):
    """8 ranked nodes: fractions under 1/8 select none, so the log view starts at 0.2 (k = 1),
    drawing no point below it; the linear view keeps every size."""
    import matplotlib.pyplot as plt

    from dfa.report.figures import smallest_size

    c = evaluation.curves["r"]
    assert c.n_ranked == 8 and smallest_size(evaluation) == 0.2
    fig = curve_figure({"sva": evaluation})
    try:
        log_ax, lin_ax = fig.axes
        assert min(log_ax.lines[0].get_xdata()) == 0.2 and log_ax.get_xlim()[0] == pytest.approx(0.16)
        assert list(lin_ax.lines[0].get_xdata()) == c.fractions
    finally:
        plt.close(fig)


def test_every_method_has_a_look_of_its_own():
    from dfa.methods import METHODS
    from dfa.report.figures import STYLES

    assert set(STYLES) == set(METHODS)
    for part in range(2):  # no two methods share a colour, nor a marker
        assert len({v[part] for v in STYLES.values()}) == len(STYLES)
    controls = [m for m, v in METHODS.items() if v.kind == "control"]
    assert all(STYLES[m][2] != "-" for m in controls)  # the controls are never solid lines


def test_recovery_is_summed_cpr_over_golds():
    rows = [
        {"src": "a", "tgt": "b", "task": t, "method": m, "cpr": v}
        for t, vals in {"x": (0.8, 0.4, 0.6), "y": (0.6, 0.3, 0.1)}.items()
        for m, v in zip(("gold", "dfa", "depth"), vals, strict=True)
    ]
    assert recovery(rows, "a", "b") == pytest.approx({"dfa": 0.7 / 1.4, "depth": 0.7 / 1.4})
    assert recovery(rows[:-1], "a", "b") == pytest.approx({"dfa": 0.5})  # depth misses y: left out


def test_against_reference_reports_the_largest_difference_and_the_rows_off():
    from dfa.report.tables import against_reference

    ref = {"results": [{"task": t, "method": m, "cpr": 0.5} for t in ("ioi", "sva") for m in ("dfa", "depth")]}
    same = {"results": [dict(r) for r in ref["results"]]}
    assert against_reference(same, ref) == (
        "against the reference: 4 rows (task, method) in common, largest |CPR difference| 0.0000 "
        "(ioi depth); 0 differ by more than 0.0005"
    )
    moved = {"results": [dict(r) for r in ref["results"]] + [{"task": "gender", "method": "dfa", "cpr": 0.1}]}
    moved["results"][1]["cpr"] = 0.5004  # under what 3 decimals show
    moved["results"][2]["cpr"] = 0.4
    assert against_reference(moved, ref) == (
        "against the reference: 4 rows (task, method) in common, largest |CPR difference| 0.1000 "
        "(sva dfa); 1 differ by more than 0.0005: sva dfa -0.1000; 1 rows in one of the two only"
    )


def test_evaluate_refuses_a_bad_reference_before_evaluating(tmp_path, capsys):
    from dfa.cli import main

    bad = tmp_path / "ref.json"
    bad.write_text('{"rows": []}')
    assert main(["evaluate", "--map", str(tmp_path), "--reference", str(bad)]) == 2
    assert f"{bad} is not a results JSON of `dfa evaluate --json` (no `results` list)." in capsys.readouterr().err


def test_a_long_task_name_widens_the_task_column_instead_of_running_into_the_next():
    name = "examples/tasks/ioi_rephrased.jsonl"
    row = {"task": name, "setting": "zero-shot", "method": "dfa", "cpr": 0.5, "cpr_ci": [0.4, 0.6]}
    row |= {"n_prompts": 30, "n_distinct": 30, "paired": {"depth": {"diff": 0.1, "ci": [0.05, 0.15]}}}
    head, line = table({"results": [row]}).splitlines()
    assert head.index("setting") == line.index("zero-shot") == 2 + len(name) + 1
    head, line = paired_table({"results": [row]}).splitlines()
    assert line.startswith(f"  {name} ") and len(head) == len(line)  # the cell ends under its header
