"""The CLI in an install without a command's libraries: one line naming the extra, exit 2, no traceback."""

from __future__ import annotations

import sys

from instrument_id.cli import main


def test_a_missing_library_is_one_line_naming_the_extra(monkeypatch, capsys, tmp_path):
    for name in [m for m in sys.modules if m == "train.synth" or m.startswith("pretty_midi")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "pretty_midi", None)  # import pretty_midi now raises ImportError
    assert main(["synth", "--out", str(tmp_path / "corpus"), "--minutes", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "instrument-id synth: needs pretty_midi that this install lacks; pip install 'instrument-id[train]'"
    assert not (tmp_path / "corpus").exists()
