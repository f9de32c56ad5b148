"""The shipped default models: they pass the verified loader, answer a clip, and `bench load` times them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from instrument_id.cli import main
from instrument_id.features import compute_features
from instrument_id.instruments import column_names
from model_zoo import load_model

SHIPPED = Path(__file__).resolve().parent.parent / "model_zoo" / "models"


@pytest.mark.parametrize("name,kind", [("mlp", "keras"), ("rf", "sklearn")])
def test_shipped_model_loads_verified_and_names_a_clip(name, kind):
    model = load_model(SHIPPED / name)
    assert model.kind == kind and model.manifest["labels"] == column_names()
    assert model.pipeline.n_components == model.params.pca_components == 16
    t = np.arange(model.params.window_samples) / model.params.sample_rate_hz
    clip = (0.3 * np.sin(2 * np.pi * 440 * t) * np.exp(-t)).astype(np.float32)
    probabilities, decisions = model.predict_features(compute_features(clip[None], model.params))
    assert probabilities.shape == decisions.shape == (1, 11)
    assert np.all((probabilities >= 0) & (probabilities <= 1))
    # the stored metrics are of this corpus's held-out test split, with thresholds chosen on valid
    assert model.metrics["threshold_source"] == "valid"
    assert 0.0 < model.metrics["splits"]["test"]["macro_f1"] <= 1.0


def test_bench_load_times_a_fresh_process_and_refuses_a_tampered_folder(tmp_path, capsys):
    assert main(["bench", "load", "--model", str(SHIPPED / "rf"), "--runs", "1", "--json"]) == 0
    row, = json.loads(capsys.readouterr().out)["models"]
    assert row["kind"] == "sklearn" and row["runs"] == 1
    assert row["import_seconds"] > 0 and row["cold_load_seconds"] > 0 and row["unverified_load_seconds"] > 0
    assert row["cold_load_seconds_max"] >= row["cold_load_seconds"]
    tampered = tmp_path / "rf"
    shutil.copytree(SHIPPED / "rf", tampered)
    with open(tampered / "pipeline.json", "a", encoding="utf-8") as handle:
        handle.write(" ")
    assert main(["bench", "load", "--model", str(tampered), "--runs", "1"]) == 2
    err = capsys.readouterr().err
    assert "loading failed in a fresh process" in err and "pipeline.json: truncated or grown" in err


def test_predict_defaults_to_the_shipped_raw_audio_model(tmp_path, capsys):
    import soundfile as sf

    from tflite.predict_cli import DEFAULT_RAW_AUDIO_MODEL

    assert DEFAULT_RAW_AUDIO_MODEL == SHIPPED / "mlp" / "model_raw_audio.tflite"
    t = np.arange(3 * 44100) / 44100
    clip = tmp_path / "clip.wav"
    sf.write(clip, 0.3 * np.sin(2 * np.pi * 440 * t) * np.exp(-t), 44100)
    assert main(["predict", str(clip), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["model"] == str(DEFAULT_RAW_AUDIO_MODEL) and result["model_kind"] == "raw_audio"
    assert len(result["probabilities"]) == 11 and result["n_windows"] == 2


def test_the_default_service_serves_the_three_shipped_models_with_musicnn_as_an_arm():
    pytest.importorskip("flask")
    pytest.importorskip("ai_edge_litert.interpreter")
    from serving.config import default_config_data, parse_config

    config = parse_config(default_config_data(), Path.cwd())
    assert config.model_names() == ["mlp", "rf", "musicnn"]
    arms = {arm.name: (arm.model, arm.weight) for arm in config.arms}
    assert arms == {"A": ("musicnn", 0.5), "B": ("mlp", 0.25), "C": ("rf", 0.25)}
    from model_zoo import open_model

    musicnn = next(m for m in config.models if m.name == "musicnn")
    model = open_model(musicnn.path, musicnn.runtime, tflite_file=musicnn.tflite_file)
    silence = model.predict_clip(np.zeros(3 * model.params.sample_rate_hz, np.float32))
    assert model.takes_audio and silence.instruments == []  # nothing plays: nothing is named


def test_the_shipped_musicnn_model_names_what_it_heard_and_what_chose_it():
    model = load_model(SHIPPED / "musicnn")
    training = model.manifest["training_data"]
    sources = training["timbre_sources"]
    assert "FluidR3_GM.sf2" in sources  # the soundfont corpus
    real = [s for s in sources if ": SFZ (" in s]  # an SFZ library, with the sample libraries it plays
    assert real and "Philharmonia" in real[0]
    assert len(training["caches"]) == 2 and training["valid_from"]["features"].endswith("-real-valid.npz")
    valid = model.metrics["splits"]["valid"]
    assert valid["n_windows"] == training["valid_from"]["windows"]["train"] + training["valid_from"]["windows"].get(
        "valid", 0) + training["valid_from"]["windows"].get("test", 0)  # every held-out window chose it
