"""The CLI in an install without a command's libraries: one line naming the extra, exit 2, no traceback."""

from __future__ import annotations

import sys

import pytest

from instrument_id import cli


def test_a_missing_library_is_one_line_naming_the_extra(monkeypatch, capsys):
    # a training command whose module cannot be imported, as in the edge install (no scikit-learn, no pretty_midi)
    monkeypatch.setitem(cli.COMMANDS, "fit-thing", ("train.fit_thing", "a training command"))
    monkeypatch.setitem(sys.modules, "train.fit_thing", None)  # importing it now raises ModuleNotFoundError
    assert cli.main(["fit-thing", "--out", "x"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("instrument-id fit-thing: needs train.fit_thing that this install lacks")
    assert err.endswith("pip install 'instrument-id[train]'") and "\n" not in err


def test_with_json_stdout_holds_only_the_json_object(capsys):
    # bench features prints progress-like text in its measuring code path; --json must keep stdout parseable
    import json

    assert cli.main(["bench", "features", "--json", "--clips", "4", "--librosa-clips", "2", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    figures = json.loads(out)  # the whole of stdout is one JSON document
    assert out.count("\n") == 1 and figures["features_ms_per_clip_batched"] > 0


def test_with_json_what_a_command_prints_goes_to_stderr(monkeypatch, capsys, tmp_path):
    module = tmp_path / "talky_command.py"
    module.write_text(
        "from instrument_id.output import print_json\n"
        "def add_parser(p):\n    p.add_argument('--json', action='store_true')\n"
        "def run(args):\n    print('training... 50%')\n    print_json({'macro_f1': 0.5}) if args.json else print('done')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(cli.COMMANDS, "talky", ("talky_command", "prints text and JSON"))
    assert cli.main(["talky", "--json"]) == 0
    captured = capsys.readouterr()
    assert captured.out == '{"macro_f1": 0.5}\n' and "training... 50%" in captured.err
    assert cli.main(["talky"]) == 0
    assert capsys.readouterr().out == "training... 50%\ndone\n"


def test_the_top_level_help_and_every_subcommands_help_format(capsys):
    """argparse %-formats help strings: a bare % in any of them breaks --help for the whole console script."""
    for argv in (["--help"], *([name, "--help"] for name in cli.COMMANDS)):
        with pytest.raises(SystemExit) as exited:
            cli.main(argv)
        assert exited.value.code == 0, argv
        printed = capsys.readouterr().out
        assert printed.startswith("usage: instrument-id"), argv
    assert "95-percent interval" in " ".join(cli.build_parser().format_help().split())
