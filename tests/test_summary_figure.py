"""The figure (issue 43, item 8): a summary of CPR per task and method in one file, each task's
curves as small multiples in a second; one look per method, no two alike; a method whose result
is identical to another's on a task drawn once there, saying for whom; both at paper width."""

from __future__ import annotations

import json

import pytest
from matplotlib.colors import to_rgb

from dfa.cli import main
from dfa.methods import METHODS
from dfa.report.figures import STYLES
from dfa.report.summary import HATCHES, WIDTH, by_task, curves_figure, curves_path, drawn, summary_figure
from tests.conftest import ROOT

PNG = b"\x89PNG\r\n\x1a\n"
REPORT = json.loads((ROOT / "results" / "main_toy.json").read_text())


def test_every_method_has_its_own_look():
    """No two methods share a colour, and no two a (colour, hatch) in the bars: dfa and dfa-val,
    which sit side by side, are not two blues."""
    assert set(METHODS) <= set(STYLES)
    colours = [to_rgb(STYLES[m][0]) for m in METHODS]
    assert len(set(colours)) == len(colours)
    dfa, val = to_rgb(STYLES["dfa"][0]), to_rgb(STYLES["dfa-val"][0])
    assert sum((a - b) ** 2 for a, b in zip(dfa, val, strict=True)) ** 0.5 > 0.5, "dfa and dfa-val look alike"
    assert len({(STYLES[m][0], HATCHES.get(m, "")) for m in METHODS}) == len(METHODS)


def test_a_method_identical_to_another_on_a_task_is_drawn_once():
    tasks = by_task(REPORT)
    assert drawn(tasks["ioi"])["dfa"] == ["dfa", "dfa-val"]  # trained on ioi: the same map
    assert "dfa-val" not in drawn(tasks["ioi"])
    assert drawn(tasks["capitals"])["dfa-val"] == ["dfa-val"]  # held out: the val check's own


def test_the_summary_has_one_bar_per_drawn_method_and_paper_width():
    import matplotlib.pyplot as plt

    fig = summary_figure(REPORT)
    try:
        (ax,) = fig.axes
        bars = [p for p in ax.patches if p.get_height() > 0]
        assert len(bars) == sum(len(drawn(rows)) for rows in by_task(REPORT).values()) == 7 * 6 + 7
        assert fig.get_size_inches()[0] == WIDTH
        assert sum(t.get_text() == "= dfa-val" for t in ax.texts) == 7
        assert [t.get_text() for t in ax.get_xticklabels()][-1] == "capitals*"
        assert min(t.get_fontsize() for t in ax.get_xticklabels()) >= 7
    finally:
        plt.close(fig)


def test_the_curves_are_small_multiples_with_one_legend():
    import matplotlib.pyplot as plt

    fig = curves_figure(REPORT)
    try:
        shown = [ax for ax in fig.axes if ax.get_visible()]
        assert len(shown) == 8 and {ax.get_xscale() for ax in shown} == {"log"}
        assert len(fig.legends) == 1 and not any(ax.get_legend() for ax in shown)
        assert fig.get_size_inches()[0] == WIDTH and fig.get_size_inches()[1] < 6
    finally:
        plt.close(fig)


def test_dfa_plot_redraws_both_files_from_a_results_json(tmp_path, capsys):
    out = tmp_path / "toy.png"
    assert main(["plot", "--report", str(ROOT / "results" / "main_toy.json"), "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == PNG and curves_path(out).read_bytes()[:8] == PNG
    assert curves_path(out).name == "toy_curves.png"
    assert f"wrote {out}, {curves_path(out)}" in capsys.readouterr().out


def test_the_committed_figures_are_drawn_from_their_json():
    """README shows results/main_toy.png: it and its curves file are committed beside the JSON."""
    for name in ("main_toy", "real_pair"):
        assert (ROOT / "results" / f"{name}.png").is_file() and (ROOT / "results" / f"{name}_curves.png").is_file()
    with pytest.raises(Exception, match="Nothing to plot"):
        by_task({"results": []})
