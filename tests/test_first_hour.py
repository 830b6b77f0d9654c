"""What a newcomer hit in the first hour (issue 43's smaller items), each at its cause: a config
file's unknown key answered in the file's spelling with a did-you-mean; a pair CSV whose column is
spelled like EAP-IG's not taken for EAP-IG's format."""

from __future__ import annotations

import pytest

from dfa.cli import main
from dfa.core.tasks import TaskError, get_task

IOI = "When Mary and John went to the store, John gave a drink to"
IOI_C = "When Mary and John went to the store, Mary gave a drink to"


def test_an_unknown_yaml_key_is_answered_in_yaml_spelling_with_a_guess(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("src: toy-gpt2-s\nmax_epoch: 3\nlearnin_rate: 0.1\n")
    assert main(["train", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "unknown setting(s) learnin_rate, max_epoch (did you mean max_epochs?)" in err
    keys = err.split("the keys a config file takes: ")[1]
    assert "max_epochs" in keys and "--" not in keys  # the file's spelling, not the flags'


def test_a_pair_csv_spelling_corrupted_is_a_pair_csv(tmp_path):
    path = tmp_path / "pairs.csv"
    path.write_text(f'clean,corrupted,answer,wrong\n"{IOI}","{IOI_C}", Mary, John\n')
    with pytest.raises(TaskError, match=r"missing column 'corrupt' \(.*rename column 'corrupted' to 'corrupt'\)"):
        get_task(str(path))
    path.write_text(f'clean,corrupt,answer,wrong\n"{IOI}","{IOI_C}", Mary, John\n')
    assert get_task(str(path)).source.format == "csv"
    path.write_text(f'clean,corrupted,correct_idx,incorrect_idx\n"{IOI}","{IOI_C}",1,2\n')  # token ids
    with pytest.raises(TaskError, match="is an EAP-IG CSV"):
        get_task(str(path))


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "--config", "CFG"],  # an unknown key
        ["evaluate", "--map", "/nowhere/run"],
        ["transfer", "--map", "/nowhere/run", "--task", "ioi"],
    ],
)
def test_a_settings_mistake_is_said_before_lightning_loads(tmp_path, argv):
    """Validation errors came after 7-15 s of start-up (Lightning, torch imported first)."""
    import subprocess
    import sys

    cfg = tmp_path / "c.yaml"
    cfg.write_text("max_epoch: 3\n")
    code = (
        "import sys; from dfa.cli import main; rc = main(sys.argv[1:]); "
        "assert 'lightning' not in sys.modules and 'torch' not in sys.modules, 'loaded'; sys.exit(rc)"
    )
    args = [str(cfg) if a == "CFG" else a for a in argv]
    r = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=False)
    assert r.returncode == 2 and "error:" in r.stderr and "loaded" not in r.stderr, r.stderr
