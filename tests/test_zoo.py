"""Model folders: round trip, stored audio settings, and refusal of every altered, truncated, missing or extra file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.preprocessing import FunctionTransformer

from instrument_id.feature_sets import SEED26
from instrument_id.errors import InstrumentIdError
from instrument_id.params import AudioParams
from model_zoo import add_file_to_manifest, load_model, save_model_dir, verify_model_dir
from synthetic_features import make_featureset
from train.models import train_model


def negate(x):
    """A function skops does not know: a model built on it must be refused, not loaded."""
    return -x


@pytest.fixture(scope="module")
def features():
    return make_featureset(500, separation=5.0)


@pytest.fixture(scope="module")
def trained(features):
    """kind -> a trained model: 'sklearn' a random forest, 'keras' a briefly trained MLP."""
    return {
        "sklearn": train_model(features, "rf", seed=0),
        "keras": train_model(features, "mlp", seed=0, epochs=2, batch_size=128),
    }


def _save(model, out: Path, params: AudioParams | None = None) -> Path:
    return save_model_dir(
        out, kind=model.kind, name=model.name, model=model.model, pipeline=model.pipeline,
        params=params or AudioParams(), feature_set=SEED26, metrics={"note": "test"}, training_data={"corpus_fingerprint": "abc"},
        architecture=model.architecture,
    )


def _flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("kind", ["sklearn", "keras"])
def test_round_trip_gives_the_same_predictions(tmp_path, features, trained, kind):
    model = trained[kind]
    folder = _save(model, tmp_path / "m")
    loaded = load_model(folder)
    X, _ = features.subset("test")
    probabilities, decisions = loaded.predict_features(X)
    np.testing.assert_allclose(probabilities, model.predict_proba_features(X), rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(decisions, model.pipeline.decide(probabilities))
    np.testing.assert_array_equal(loaded.pipeline.thresholds, model.pipeline.thresholds)
    assert (loaded.kind, loaded.name, loaded.metrics) == (kind, model.name, {"note": "test"})
    manifest = loaded.manifest
    assert loaded.version == manifest["files"][manifest["weights_file"]]["sha256"][:12]
    assert manifest["training_data"] == {"corpus_fingerprint": "abc"}
    assert manifest["architecture"] == json.loads(json.dumps(model.architecture))
    assert set(manifest["files"]) == {manifest["weights_file"], "pipeline.json", "metrics.json"}


def test_params_are_rebuilt_from_stored_values_not_defaults(tmp_path, trained):
    stored = AudioParams(window_seconds=3.0, hop_seconds=1.5)
    loaded = load_model(_save(trained["sklearn"], tmp_path / "m", params=stored))
    assert loaded.params == stored and loaded.params.window_seconds == 3.0 != AudioParams().window_seconds


@pytest.mark.parametrize("kind, filename", [("keras", "model.keras"), ("sklearn", "model.skops"), ("sklearn", "pipeline.json")])
def test_a_flipped_byte_is_refused_naming_the_file(tmp_path, trained, kind, filename):
    folder = _save(trained[kind], tmp_path / "m")
    _flip_byte(folder / filename)
    with pytest.raises(InstrumentIdError, match=rf"{filename}: altered: expected sha256 \w+, found \w+"):
        load_model(folder)


def test_truncated_missing_and_extra_files_are_refused(tmp_path, trained):
    folder = _save(trained["sklearn"], tmp_path / "m")
    weights = folder / "model.skops"
    original = weights.read_bytes()
    weights.write_bytes(original[:-100])
    expected = rf"model.skops: truncated or grown: expected {len(original)} bytes, found {len(original) - 100}"
    with pytest.raises(InstrumentIdError, match=expected):
        verify_model_dir(folder)
    weights.unlink()
    with pytest.raises(InstrumentIdError, match="model.skops: missing"):
        load_model(folder)
    weights.write_bytes(original)
    verify_model_dir(folder)
    (folder / "notes.txt").write_text("hello")
    with pytest.raises(InstrumentIdError, match="notes.txt: extra file not listed in the manifest"):
        load_model(folder)


def test_an_edited_manifest_is_refused(tmp_path, trained):
    folder = _save(trained["sklearn"], tmp_path / "m")
    manifest_path = folder / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["params"]["window_seconds"] = 5.0
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(InstrumentIdError, match=r"manifest.json: altered"):
        load_model(folder)
    manifest_path.write_text("{not json")
    with pytest.raises(InstrumentIdError, match="manifest.json: not readable JSON"):
        load_model(folder)
    manifest_path.unlink()
    with pytest.raises(InstrumentIdError, match="manifest.json: missing"):
        load_model(folder)
    with pytest.raises(InstrumentIdError, match="no model folder"):
        load_model(tmp_path / "nowhere")


def test_added_file_is_listed_then_verified(tmp_path, trained):
    folder = _save(trained["sklearn"], tmp_path / "m")
    (folder / "model_float32.tflite").write_bytes(b"\x00tflite-bytes" * 10)
    with pytest.raises(InstrumentIdError, match="extra file"):
        verify_model_dir(folder)
    manifest = add_file_to_manifest(folder, "model_float32.tflite")
    assert manifest["files"]["model_float32.tflite"]["size_bytes"] == 130
    assert load_model(folder).manifest == manifest
    _flip_byte(folder / "model_float32.tflite")
    with pytest.raises(InstrumentIdError, match="model_float32.tflite: altered"):
        verify_model_dir(folder)


def test_add_file_refuses_when_the_folder_is_already_damaged(tmp_path, trained):
    folder = _save(trained["sklearn"], tmp_path / "m")
    _flip_byte(folder / "pipeline.json")
    (folder / "extra.bin").write_bytes(b"x")
    with pytest.raises(InstrumentIdError, match="pipeline.json: altered"):
        add_file_to_manifest(folder, "extra.bin")


def test_unknown_skops_types_are_refused_not_loaded(tmp_path, features, trained):
    pipeline = trained["sklearn"].pipeline
    model = FunctionTransformer(negate).fit(pipeline.transform(features.subset("train")[0]))
    folder = save_model_dir(
        tmp_path / "m", kind="sklearn", name="odd", model=model, pipeline=pipeline, params=AudioParams(),
        feature_set=SEED26, metrics={}, training_data={}, architecture={},
    )
    with pytest.raises(InstrumentIdError, match=r"model.skops: refusing to load unexpected types \[.*negate"):
        load_model(folder)


def test_failed_save_leaves_the_existing_folder_untouched(tmp_path, trained):
    folder = _save(trained["sklearn"], tmp_path / "m")
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    with pytest.raises(AttributeError):
        # a scikit-learn model cannot be written as Keras: fails inside the atomic folder, after writing began
        save_model_dir(
            folder, kind="keras", name="broken", model=trained["sklearn"].model, pipeline=trained["sklearn"].pipeline,
            params=AudioParams(), feature_set=SEED26, metrics={}, training_data={}, architecture={},
        )
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # no temporary folder left behind


def test_saving_over_an_existing_folder_replaces_it_whole(tmp_path, trained):
    folder = _save(trained["sklearn"], tmp_path / "m")
    _save(trained["keras"], folder)
    assert load_model(folder).kind == "keras"
    assert not (folder / "model.skops").exists()


def test_importing_model_zoo_stays_light():
    code = "import sys, model_zoo; print(sorted(m for m in ('tensorflow', 'keras', 'sklearn', 'skops') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
