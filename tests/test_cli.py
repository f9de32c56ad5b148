"""The CLI: a missing library is one line naming the extra; --json keeps stdout parseable; every help formats;
the command line shows only the product's own output unless --verbose."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from instrument_id import cli, native_logs


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


def _run_cli(args: list[str]) -> subprocess.CompletedProcess:
    """The real command in a fresh process, with no TensorFlow log setting of the caller's."""
    env = {k: v for k, v in os.environ.items() if k not in (native_logs.TF_LOG_LEVEL_VARIABLE, native_logs.VERBOSE_VARIABLE)}
    return subprocess.run([sys.executable, "-m", "instrument_id.cli", *args], capture_output=True, env=env, timeout=600)


def test_tensorflow_and_litert_log_lines_show_only_with_verbose(tmp_path: Path) -> None:
    pytest.importorskip("tensorflow")
    pytest.importorskip("ai_edge_litert.interpreter")
    from synthetic_features import make_featureset

    features = tmp_path / "features.npz"
    make_featureset(300, separation=5.0).save(features)
    model = tmp_path / "models" / "mlp"
    assert cli.main(["train", "--features", str(features), "--model", "mlp", "--out", str(model.parent), "--epochs", "2",
                     "--quiet"]) == 0
    evaluate = ["evaluate", "--model", str(model), "--features", str(features), "--out", str(tmp_path / "report"),
                "--timing-runs", "1"]
    convert = ["convert", "--model", str(model), "--quant", "int8", "--features", str(features)]  # LiteRT runs its check
    for args in (evaluate, convert):
        quiet = _run_cli(args)
        assert quiet.returncode == 0 and quiet.stderr == b"", quiet.stderr.decode()
        assert quiet.stdout.decode().splitlines()[0].startswith(("mlp: macro-F1", "check model_int8.tflite"))
        loud = _run_cli(["--verbose", *args])
        assert loud.returncode == 0 and loud.stdout.count(b"\n") == quiet.stdout.count(b"\n")
        assert native_logs.native_log_lines(loud.stderr), loud.stderr.decode()
    assert b"INFO: Created TensorFlow Lite XNNPACK delegate" in loud.stderr and b"fully_quantize: " in loud.stderr
