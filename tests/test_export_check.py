"""`convert` checks every .tflite file on the edge runtime against its Keras model before listing it."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
from pathlib import Path

import pytest

pytest.importorskip("tensorflow")
pytest.importorskip("ai_edge_litert.interpreter")

from edge_model_fixture import shared_edge_fixture  # noqa: E402
from instrument_id.cli import main  # noqa: E402
from model_zoo import load_model, verify_model_dir  # noqa: E402
from model_zoo.featureset import load_featureset  # noqa: E402
from tflite.convert import ALL_VARIANTS, VARIANT_FILES  # noqa: E402
from tflite.export_check import EXPORT_TOLERANCES, check_export  # noqa: E402

SHIPPED = Path(__file__).resolve().parent.parent / "model_zoo" / "models"
CHECK_LINE = re.compile(r"^check (\S+): decisions agree on (\d)/4 inputs \((\d+) windows\), max \|Δp\| (\S+) on "
                        r"(silence|noise|sine 440 Hz|harmonic tones) \(tolerance (\S+)\)$")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return shared_edge_fixture(tmp_path_factory)


@pytest.fixture(scope="module")
def other_mlp(built, tmp_path_factory) -> Path:
    """Another MLP from the same feature file (fewer epochs: other weights), not converted."""
    out = tmp_path_factory.mktemp("other")
    assert main(["train", "--features", str(built.features), "--model", "mlp", "--out", str(out), "--epochs", "3",
                 "--quiet"]) == 0
    return out / "mlp"


def test_convert_prints_one_passing_check_line_per_file(built, capsys):
    assert main(["convert", "--model", str(built.model_dir), "--quant", "all", "--features", str(built.features)]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("check ")]
    assert [CHECK_LINE.match(line).group(1) for line in lines] == [VARIANT_FILES[q] for q in ALL_VARIANTS["seed26"]]
    for line, quant in zip(lines, ALL_VARIANTS["seed26"]):
        _, _, windows, max_diff, _, tolerance = CHECK_LINE.match(line).groups()
        assert int(windows) == 12 and float(tolerance) == EXPORT_TOLERANCES[quant]
        assert 0 <= float(max_diff) <= EXPORT_TOLERANCES[quant]


def test_a_file_checked_against_another_keras_model_is_refused(built, other_mlp):
    check = check_export(built.model_dir / VARIANT_FILES["none"], "none", load_model(other_mlp))
    assert not check.passed and check.line().endswith(": REFUSED")
    assert check.worst.max_abs_diff > EXPORT_TOLERANCES["none"]
    assert f"on {check.worst.name}: max |Δp|" in check.reason()
    assert check_export(built.model_dir / VARIANT_FILES["none"], "none", load_model(built.model_dir)).passed


def test_int8_calibrated_on_foreign_values_is_not_written(built, other_mlp, tmp_path, capsys):
    folder = shutil.copytree(other_mlp, tmp_path / "mlp")
    features = load_featureset(built.features)
    foreign = tmp_path / "foreign.npz"  # the right audio settings, values a thousand times the model's
    dataclasses.replace(features, X=features.X * 1000.0).save(foreign)
    manifest = (folder / "manifest.json").read_text()
    capsys.readouterr()
    assert main(["convert", "--model", str(folder), "--quant", "int8", "--features", str(foreign)]) == 2
    captured = capsys.readouterr()
    assert CHECK_LINE.match(captured.out.splitlines()[0].removesuffix(": REFUSED"))
    assert captured.out.splitlines()[0].endswith(": REFUSED")
    error, = captured.err.strip().splitlines()
    assert f"{folder / 'model_int8.tflite'}: not written; it differs from its Keras model on " in error
    assert re.search(r"on (silence|noise|sine 440 Hz|harmonic tones): max \|Δp\|", error)
    assert not (folder / "model_int8.tflite").exists() and (folder / "manifest.json").read_text() == manifest
    verify_model_dir(folder)
    assert main(["convert", "--model", str(folder), "--quant", "int8", "--features", str(built.features)]) == 0
    assert "model_int8.tflite" in json.loads((folder / "manifest.json").read_text())["files"]


@pytest.mark.parametrize("name,quant", [("mlp", "none"), ("mlp", "float16"), ("mlp", "dynamic"), ("mlp", "int8"),
                                        ("mlp", "raw"), ("musicnn", "raw")])
def test_shipped_files_pass_their_check(name, quant):
    check = check_export(SHIPPED / name / VARIANT_FILES[quant], quant, load_model(SHIPPED / name))
    assert check.passed, check.line()
