"""The converted musicnn embedding: log-mel front end vs librosa, Keras and TFLite vs the wheel's own TF1 graph, the
verified loader's refusals, and the musicnn feature set."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from instrument_id.errors import InstrumentIdError
from instrument_id.logmel import LogMelParams, frames_for, log_mel, mel_power
from model_zoo.embedding import DEFAULT_EMBEDDING_DIR, load_embedding, verify_embedding_dir
from train.musicnn_convert import MAX_ERROR, check_logmel, max_error

WHEEL = Path(__file__).resolve().parent.parent / ".cache" / "musicnn" / "musicnn-0.1.0-py3-none-any.whl"


def _wheel() -> Path:
    if WHEEL.is_file():
        return WHEEL
    message = f"{WHEEL} is missing: `pip download musicnn==0.1.0 --no-deps -d .cache/musicnn` (scripts/setup.sh does)"
    if os.environ.get("CI"):
        pytest.fail(message)  # CI's set-up fetches it, so a missing wheel there is a broken set-up, not a skip
    pytest.skip(message)


def test_log_mel_matches_librosa():
    librosa = pytest.importorskip("librosa")
    params = LogMelParams()
    rng = np.random.default_rng(3)
    windows = (0.3 * rng.standard_normal((3, 32000))).astype(np.float32)
    windows[1] = 0.5 * np.sin(2 * np.pi * 440.0 * np.arange(32000) / 16000)
    ours = mel_power(windows, params)  # (3, 126, 96)
    assert ours.shape == (3, frames_for(32000, params), 96) == (3, 126, 96)
    for row, window in zip(ours, windows):
        reference = librosa.feature.melspectrogram(y=window, sr=16000, n_fft=512, hop_length=256, n_mels=96).T
        np.testing.assert_allclose(row, reference, rtol=2e-4, atol=1e-6 * reference.max())
    np.testing.assert_allclose(log_mel(windows, params), np.log10(10000 * ours + 1), rtol=1e-6)


def test_log_mel_refuses_bad_audio():
    with pytest.raises(InstrumentIdError, match="NaN"):
        log_mel(np.full((1, 1000), np.nan, np.float32), LogMelParams())
    with pytest.raises(InstrumentIdError, match="shaped"):
        log_mel(np.zeros(1000, np.float32), LogMelParams())
    with pytest.raises(InstrumentIdError, match="missing"):
        LogMelParams.from_dict({"n_fft": 512})


@pytest.fixture(scope="module")
def original_graph(tmp_path_factory):
    from train.musicnn_wheel import OriginalGraph, read_wheel

    info, prefix = read_wheel(_wheel(), tmp_path_factory.mktemp("musicnn-checkpoint"))
    graph = OriginalGraph(prefix)
    yield graph
    graph.close()


@pytest.mark.parametrize("runtime", ["keras", "tflite"])
def test_converted_model_matches_the_original_graph(original_graph, runtime):
    """Taggram, penultimate and both pools within 1e-4 (relative above magnitude 1) on silence, noise, a sine, music."""
    embedding = load_embedding(runtime=runtime)
    params = embedding.logmel_params
    inputs = {"126 frames (2 s)": check_logmel(params, 2.0)}
    if runtime == "keras":  # the TFLite file takes exactly 126 frames; Keras any count, e.g. the 187 of training
        inputs["187 frames (3 s)"] = check_logmel(params, 3.0)[:, :187]
    for what, logmel in inputs.items():
        assert logmel.shape[0] == 4  # silence, noise, sine, music
        reference = original_graph.run(logmel)
        ours = embedding.embed(logmel)
        errors = max_error(ours, reference, list(embedding.output_names))
        assert max(errors.values()) <= MAX_ERROR, (what, errors)
        assert reference["taggram"].std() > 0.01  # the signals give different tags: a real comparison


def _copy(tmp_path: Path) -> Path:
    folder = tmp_path / "musicnn"
    shutil.copytree(DEFAULT_EMBEDDING_DIR, folder)
    return folder


def test_loader_refuses_altered_missing_extra_files_and_an_edited_manifest(tmp_path):
    verify_embedding_dir(DEFAULT_EMBEDDING_DIR)  # the shipped folder checks out
    folder = _copy(tmp_path)
    data = bytearray((folder / "musicnn_embedding.tflite").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (folder / "musicnn_embedding.tflite").write_bytes(bytes(data))
    with pytest.raises(InstrumentIdError, match=r"musicnn_embedding\.tflite: altered.*convert-musicnn"):
        load_embedding(folder)
    folder = _copy(tmp_path / "b")
    (folder / "musicnn.keras").unlink()
    with pytest.raises(InstrumentIdError, match=r"musicnn\.keras: missing"):
        load_embedding(folder, runtime="keras")
    folder = _copy(tmp_path / "c")
    (folder / "notes.txt").write_text("x")
    with pytest.raises(InstrumentIdError, match="notes.txt: extra file"):
        load_embedding(folder)
    folder = _copy(tmp_path / "d")
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["outputs"]["max_pool"] = 700
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(InstrumentIdError, match="manifest.json: altered"):
        load_embedding(folder)
    with pytest.raises(InstrumentIdError, match="no embedding folder"):
        load_embedding(tmp_path / "nowhere")


def test_tflite_embedding_refuses_other_window_lengths():
    embedding = load_embedding(runtime="tflite")
    with pytest.raises(InstrumentIdError, match="exactly 126 frames"):
        embedding.embed(np.zeros((1, 100, 96), np.float32))


def test_musicnn_feature_set_values_and_refusals():
    from instrument_id.feature_sets import SEED26
    from model_zoo.featurizers import default_params, featurize, spec_by_name

    spec = spec_by_name("musicnn")
    assert spec.name == "musicnn" and spec.width == 753 and spec != SEED26
    both = spec_by_name("musicnn:max_pool+mean_pool")
    assert both.width == 1506
    params = default_params(spec)
    assert params.sample_rate_hz == 16000
    rng = np.random.default_rng(0)
    windows = (0.1 * rng.standard_normal((3, params.window_samples))).astype(np.float32)
    values = featurize(windows, params, both)
    assert values.shape == (3, 1506) and np.isfinite(values).all()
    np.testing.assert_allclose(values[:, :753], featurize(windows, params, spec), rtol=1e-6, atol=1e-6)
    assert not np.allclose(values[0], values[1])  # different noise, different embedding
    with pytest.raises(InstrumentIdError, match="16000 Hz"):
        featurize(windows, default_params(SEED26), spec)
    with pytest.raises(InstrumentIdError, match="unknown musicnn output"):
        spec_by_name("musicnn:nothing")
    with pytest.raises(InstrumentIdError, match="unknown feature set"):
        spec_by_name("mfcc40")
