"""`bench features --feature-set musicnn` and `bench tflite` on the shipped musicnn folder: real figures, in JSON."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("tensorflow")
pytest.importorskip("ai_edge_litert.interpreter")

from instrument_id.cli import main  # noqa: E402
from model_zoo.loader import shipped_model_dir  # noqa: E402


def test_bench_features_times_the_embedding_against_librosa_and_keras(capsys):
    assert main(["bench", "features", "--feature-set", "musicnn:max_pool+mean_pool", "--clips", "3",
                 "--repeats", "1", "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["embedding_ms_per_window_batched"] > 0 and figures["reference_librosa_keras_ms_per_window_batched"] > 0
    assert figures["max_abs_difference_vs_reference"] < 1e-2  # the same network, two front ends and runtimes
    assert figures["embedding_tflite_bytes"] > 1e6 and figures["feature_set"].startswith("musicnn")


def test_bench_tflite_on_the_musicnn_folder_reports_size_speed_and_agreement(capsys):
    assert main(["bench", "tflite", "--model", str(shipped_model_dir("musicnn")), "--windows", "6", "--repeats", "1",
                 "--batch", "2", "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["decisions_equal_percent"] >= 99.0 and figures["agreement_windows"] == 6
    assert figures["raw_tflite_bytes"] > 1e6 and figures["raw_tflite_ms_per_window"] > 0
