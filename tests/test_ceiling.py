"""`instrument-id ceiling`: frame statistics reproduce the 26 features; the report covers every input and model."""

from __future__ import annotations

import json

import numpy as np
import pytest

from instrument_id.cli import main
from instrument_id.features import compute_features, extractor_for
from instrument_id.params import AudioParams
from model_zoo.featureset import load_featureset
from train.ceiling import INPUTS, N_VALUES, STATISTICS, frame_table, window_statistics


def _clips(params: AudioParams) -> np.ndarray:
    """(4, samples): silence-free noise, a 440 Hz sine, a decaying chord and a sine under noise, seeded."""
    rng = np.random.default_rng(0)
    t = np.arange(params.window_samples) / params.sample_rate_hz
    sine = 0.5 * np.sin(2 * np.pi * 440 * t)
    chord = sum(0.2 * np.sin(2 * np.pi * f * t) for f in (261.6, 329.6, 392.0)) * np.exp(-t)
    return np.stack([0.1 * rng.standard_normal(t.size), sine, chord, sine + 0.05 * rng.standard_normal(t.size)])


def test_frame_means_are_the_26_features_and_statistics_are_shaped_per_value():
    params = AudioParams()
    clips = _clips(params)
    stats, mels = window_statistics(clips, params, log_mel=True)
    assert mels.shape == (4, params.n_frames, params.n_mels) and mels.dtype == np.float16
    assert stats.shape == (4, N_VALUES * len(STATISTICS))
    np.testing.assert_allclose(stats[:, :N_VALUES], compute_features(clips, params), rtol=1e-4, atol=1e-5)
    table, log_mel = frame_table(extractor_for(params), clips[1].astype(np.float32))
    assert table.shape == (params.n_frames, N_VALUES) and log_mel.shape == (params.n_frames, params.n_mels)
    assert log_mel.min() >= log_mel.max() - params.top_db  # floored as the MFCCs are
    np.testing.assert_allclose(mels[1], log_mel, rtol=1e-3, atol=0.05)  # float16 storage
    low, high = stats[:, 3 * N_VALUES:4 * N_VALUES], stats[:, 4 * N_VALUES:]
    assert np.all(low <= high + 1e-6)
    centroid, rms = 2, 1
    # a steady sine: its centroid hardly moves; the decaying chord's RMS spreads between p10 and p90
    assert stats[1, N_VALUES + centroid] < 0.1 * stats[1, centroid]
    assert high[2, rms] > 2 * low[2, rms]


@pytest.fixture
def cached(staggered_corpus, tmp_path):
    out = tmp_path / "features.npz"
    assert main(["features", "--data", str(staggered_corpus), "--out", str(out), "--augment", "1", "--jobs", "1"]) == 0
    return staggered_corpus, out


def test_ceiling_reports_every_input_and_model_with_oracle_bound(cached, tmp_path, capsys):
    root, features = cached
    out = tmp_path / "ceiling"
    capsys.readouterr()
    args = ["ceiling", "--data", str(root), "--features", str(features), "--augment", "1", "--jobs", "1",
            "--out", str(out), "--json"]
    assert main(args) == 0
    result = json.loads(capsys.readouterr().out)
    assert result == json.loads((out / "ceiling.json").read_text())
    fs = load_featureset(features)
    assert result["n_windows"]["train"] == int((fs.split == "train").sum())  # the same windows, augmented alike
    assert result["n_windows"]["train_originals"] == int(((fs.split == "train") & (fs.variant == 0)).sum())
    rows = result["rows"]
    assert [(r["inputs"], r["model"]) for r in rows] == [(name, m) for name in INPUTS for m in ("rf", "mlp")]
    assert [r["n_inputs"] for r in rows[::2]] == [fs.params.pca_components, N_VALUES, N_VALUES * len(STATISTICS)]
    for r in rows:
        assert 0.0 <= r["test_macro_f1"] <= r["test_macro_f1_oracle_thresholds"] <= 1.0
        assert len(r["test_f1_per_instrument"]) == 11 and r["fit_seconds"] > 0
    assert result["best_test_macro_f1"] == max(r["test_macro_f1"] for r in rows)
    assert (out / "ceiling.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "ceiling.md").read_text().count("| 26 means, PCA 16 (shipped) |") == 2
    assert all(r["train_fraction"] == 1.0 and r["train_recordings"] >= 1 for r in rows)


def test_ceiling_refuses_another_corpus_and_unknown_models(cached, make_musicnet, tmp_path, capsys):
    _root, features = cached
    other = make_musicnet([{"id": "4000", "split": "train", "seconds": 4.0, "notes": [(0.0, 4.0, 1, 60)]}], "other")
    out = tmp_path / "ceiling"
    assert main(["ceiling", "--data", str(other), "--features", str(features), "--out", str(out)]) == 2
    assert "not the corpus these features were computed from" in capsys.readouterr().err
    assert main(["ceiling", "--data", str(_root), "--features", str(features), "--models", "rf,svm"]) == 2
    assert "unknown --models ['svm']" in capsys.readouterr().err
    assert main(["ceiling", "--data", str(_root), "--features", str(features), "--augment", "12"]) == 2
    assert "--augment must be 0..9, got 12" in capsys.readouterr().err
    assert main(["ceiling", "--data", str(_root), "--features", str(features), "--train-fractions", "0,1"]) == 2
    assert "--train-fractions must lie in (0, 1], got '0,1'" in capsys.readouterr().err
    assert not out.exists()


def test_ceiling_cnn_and_learning_curve_rows(cached, tmp_path, capsys):
    root, features = cached
    out = tmp_path / "ceiling"
    capsys.readouterr()
    assert main(["ceiling", "--data", str(root), "--features", str(features), "--models", "cnn", "--jobs", "1",
                 "--train-fractions", "0.5,1", "--out", str(out), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    params = load_featureset(features).params
    assert [(r["inputs"], r["model"], r["train_fraction"]) for r in rows] == [
        ("log-mel frames", "cnn", 0.5), ("log-mel frames", "cnn", 1.0)]
    assert rows[0]["n_inputs"] == params.n_frames * params.n_mels
    assert rows[0]["train_recordings"] < rows[1]["train_recordings"]
    assert all(0.0 <= r["test_macro_f1"] <= r["test_macro_f1_oracle_thresholds"] <= 1.0 for r in rows)
    assert "| log-mel frames · cnn |" in (out / "ceiling.md").read_text()
