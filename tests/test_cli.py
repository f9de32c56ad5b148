"""The CLI in an install without a command's libraries: one line naming the extra, exit 2, no traceback."""

from __future__ import annotations

import sys

from instrument_id import cli


def test_a_missing_library_is_one_line_naming_the_extra(monkeypatch, capsys):
    # a training command whose module cannot be imported, as in the edge install (no scikit-learn, no pretty_midi)
    monkeypatch.setitem(cli.COMMANDS, "fit-thing", ("train.fit_thing", "a training command"))
    monkeypatch.setitem(sys.modules, "train.fit_thing", None)  # importing it now raises ModuleNotFoundError
    assert cli.main(["fit-thing", "--out", "x"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("instrument-id fit-thing: needs train.fit_thing that this install lacks")
    assert err.endswith("pip install 'instrument-id[train]'") and "\n" not in err
