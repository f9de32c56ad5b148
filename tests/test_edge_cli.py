"""`instrument-id predict` on the edge runtime, its error handling, and `instrument-id bench tflite`."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import soxr

tf = pytest.importorskip("tensorflow")
pytest.importorskip("ai_edge_litert.interpreter")

from edge_model_fixture import shared_edge_fixture  # noqa: E402
from instrument_id.audio import frame_windows, load_mono  # noqa: E402
from instrument_id.cli import main  # noqa: E402
from instrument_id.errors import InstrumentIdError  # noqa: E402
from instrument_id.features import compute_features  # noqa: E402
from instrument_id.instruments import column_names  # noqa: E402
from model_zoo import load_model  # noqa: E402
from model_zoo.backends import keras_proba  # noqa: E402
from tflite.convert import VARIANT_FILES  # noqa: E402
from model_zoo.tflite_model import EdgeModel, interpreter_class  # noqa: E402

RAW = VARIANT_FILES["raw"]
FLOAT32 = VARIANT_FILES["none"]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return shared_edge_fixture(tmp_path_factory)


@pytest.fixture(scope="module")
def zoo(built):
    return load_model(built.model_dir)


@pytest.fixture(scope="module")
def stereo_wav(built, tmp_path_factory):
    """5 s of a test recording, as a stereo 48 kHz float WAV (neither the corpus' rate nor the model's)."""
    y, rate_hz = sf.read(next((built.corpus / "test_data").glob("*.wav")), dtype="float32")
    y = y[: 5 * rate_hz]
    path = tmp_path_factory.mktemp("clips") / "clip.wav"
    sf.write(path, np.stack([soxr.resample(y, rate_hz, 48000)] * 2, axis=1), 48000, subtype="FLOAT")
    return path


def _reference_instruments(zoo, path) -> list[str]:
    """Instruments by numpy features -> pipeline -> Keras, each scored by its best window."""
    windows = frame_windows(load_mono(path, zoo.params), zoo.params)  # (n, window_samples)
    probabilities = keras_proba(zoo.model, zoo.pipeline.transform(compute_features(windows, zoo.params)))
    decisions = zoo.pipeline.decide(probabilities.max(axis=0, keepdims=True))[0]
    return [name for name, present in zip(column_names(), decisions) if present]


@pytest.mark.parametrize("variant", [RAW, FLOAT32])
def test_predict_json_names_the_same_instruments_as_keras(built, zoo, stereo_wav, capsys, variant):
    assert main(["predict", str(stereo_wav), str(stereo_wav), "--model", str(built.model_dir / variant), "--json"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2
    result = json.loads(lines[0])
    assert result["instruments"] == _reference_instruments(zoo, stereo_wav)
    assert list(result["probabilities"]) == column_names()
    assert all(0.0 <= p <= 1.0 for p in result["probabilities"].values())
    assert result["n_windows"] == 4 and result["padded"] is False
    assert result["total_ms"] >= result["features_ms"] + result["model_ms"] > 0


def test_predict_takes_a_model_folder_and_runs_its_raw_audio_file(built, stereo_wav, capsys):
    assert main(["predict", str(stereo_wav), "--model", str(built.model_dir / RAW), "--json"]) == 0
    from_file = json.loads(capsys.readouterr().out)
    assert main(["predict", str(stereo_wav), "--model", str(built.model_dir), "--json"]) == 0
    from_folder = json.loads(capsys.readouterr().out)
    assert from_folder["model_kind"] == "raw_audio" == from_file["model_kind"]
    assert from_folder["instruments"] == from_file["instruments"]
    assert from_folder["probabilities"] == from_file["probabilities"]


def test_predict_says_none_of_the_11_for_silence(tmp_path, capsys):
    from model_zoo.loader import shipped_model_dir

    path = tmp_path / "silence.wav"
    sf.write(path, np.zeros(2 * 22050, dtype=np.float32), 22050)
    assert main(["predict", str(path), "--model", str(shipped_model_dir("musicnn"))]) == 0  # trained on silence
    assert "silence.wav: none of the 11 (no instrument above its threshold)" in capsys.readouterr().out


def test_predict_text_lists_instruments_probabilities_and_time(built, stereo_wav, capsys):
    assert main(["predict", str(stereo_wav), "--model", str(built.model_dir / RAW)]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in column_names())
    assert "total" in out and "ms" in out


@pytest.mark.parametrize("variant", [RAW, FLOAT32])
def test_predict_never_imports_tensorflow_or_librosa(built, stereo_wav, variant):
    code = (
        "import json, sys\n"
        "from instrument_id.cli import main\n"
        f"rc = main(['predict', {str(stereo_wav)!r}, '--model', {str(built.model_dir / variant)!r}, '--json'])\n"
        "heavy = sorted(m for m in ('tensorflow', 'librosa', 'keras') if m in sys.modules)\n"
        "print(json.dumps({'rc': rc, 'heavy': heavy}))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert json.loads(lines[-1]) == {"rc": 0, "heavy": []}
    assert json.loads(lines[0])["runtime"] == "ai_edge_litert"


def test_a_short_clip_is_zero_padded_with_a_warning(built, tmp_path, capsys):
    path = tmp_path / "short.wav"
    sf.write(path, 0.3 * np.sin(np.linspace(0, 900, 11025)), 22050)
    assert main(["predict", str(path), "--model", str(built.model_dir / RAW), "--json"]) == 0
    captured = capsys.readouterr()
    assert "zero-padded" in captured.err and "short.wav" in captured.err
    assert json.loads(captured.out)["padded"] is True


def test_help_says_short_clips_are_zero_padded(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["predict", "--help"])
    assert exited.value.code == 0
    assert "zero-padded" in capsys.readouterr().out


def _write_bad_clip(kind: str, path):
    if kind == "text":
        path.write_text("not audio at all\n")
    elif kind == "nan":
        y = np.zeros(44100, dtype=np.float32)
        y[100] = np.nan
        sf.write(path, y, 22050, subtype="FLOAT")
    elif kind == "empty":
        sf.write(path, np.zeros(0, dtype=np.float32), 22050)
    return path


@pytest.mark.parametrize(
    ("kind", "reason"),
    [("missing", "not a readable audio file"), ("text", "not a readable audio file"), ("nan", "NaN"), ("empty", "0 samples")],
)
def test_a_bad_clip_is_one_error_line_and_exit_2(built, tmp_path, capsys, kind, reason):
    path = _write_bad_clip(kind, tmp_path / "clip.wav")
    assert main(["predict", str(path), "--model", str(built.model_dir / RAW)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and reason in err[0] and "clip.wav" in err[0]


def _tiny_tflite(n_inputs: int, n_outputs: int) -> bytes:
    spec = tf.TensorSpec([None, n_inputs], tf.float32, name="pca_values")
    function = tf.function(lambda z: {"probabilities": tf.sigmoid(z[:, :1] + tf.zeros([1, n_outputs]))}, input_signature=[spec])
    return tf.lite.TFLiteConverter.from_concrete_functions([function.get_concrete_function()], tf.Module()).convert()


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("text", "is not a TFLite model"),
        ("truncated", "is not a TFLite model"),
        ("wide_input", "reads 20 values, but"),
        ("narrow_output", "expected (batch, 11)"),
        ("no_pipeline", "needs the pipeline.json"),
    ],
)
def test_a_bad_model_is_one_error_line_and_exit_2(built, stereo_wav, tmp_path, capsys, case, reason):
    model = tmp_path / "model.tflite"
    shutil.copy(built.model_dir / "pipeline.json", tmp_path / "pipeline.json")
    if case == "text":
        model.write_text("this is a text file renamed to .tflite\n")
    elif case == "truncated":
        model.write_bytes((built.model_dir / FLOAT32).read_bytes()[:4096])
    elif case == "wide_input":
        model.write_bytes(_tiny_tflite(20, 11))
    elif case == "narrow_output":
        model.write_bytes(_tiny_tflite(16, 5))
    else:
        model.write_bytes((built.model_dir / FLOAT32).read_bytes())
        (tmp_path / "pipeline.json").unlink()
    assert main(["predict", str(stereo_wav), "--model", str(model)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and reason in err[0] and "model.tflite" in err[0]


def test_edge_model_refuses_nan_and_empty_audio_and_scores_silence(built):
    edge = EdgeModel(built.model_dir / RAW)
    with pytest.raises(InstrumentIdError, match="NaN or infinite"):
        edge.predict_clip(np.array([0.0, np.inf, 0.0] * 20000, dtype=np.float32))
    with pytest.raises(InstrumentIdError, match="empty clip"):
        edge.predict_clip(np.zeros(0, dtype=np.float32))
    silence = edge.predict_clip(np.zeros(3 * edge.params.sample_rate_hz, dtype=np.float32))
    assert silence.n_windows == 2 and np.isfinite(silence.probabilities).all()


def test_a_long_clip_scores_each_instrument_by_its_best_window(built, zoo):
    edge = EdgeModel(built.model_dir / FLOAT32)
    y = load_mono(next((built.corpus / "test_data").glob("*.wav")), zoo.params)
    windows = frame_windows(y, zoo.params)
    per_window, _ = edge.predict_windows(windows)  # (n, 11)
    clip = edge.predict_clip(y)
    assert clip.n_windows == len(windows) > 1
    np.testing.assert_array_equal(clip.probabilities, per_window.max(axis=0))
    assert np.array_equal(clip.decisions, zoo.pipeline.decide(per_window).any(axis=0))


def test_runtime_falls_back_when_packages_fail_to_import(tmp_path, monkeypatch):
    # a tflite_runtime built for numpy 1 fails at import under numpy 2 with AttributeError, not ImportError
    fake = tmp_path / "tflite_runtime"
    fake.mkdir()
    (fake / "__init__.py").write_text("")
    (fake / "interpreter.py").write_text("raise AttributeError('_ARRAY_API not found')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)  # makes its import raise ImportError
    for name in [m for m in sys.modules if m.startswith("tflite_runtime")]:
        monkeypatch.delitem(sys.modules, name)
    interpreter_type, runtime = interpreter_class()
    assert runtime == "tensorflow" and interpreter_type is tf.lite.Interpreter


def test_bench_tflite_reports_every_variant(built, capsys):
    argv = ["bench", "tflite", "--model", str(built.model_dir), "--features", str(built.features),
            "--data", str(built.corpus), "--repeats", "1", "--batch", "4", "--json"]
    assert main(argv) == 0
    figures = json.loads(capsys.readouterr().out)
    variants = figures["variants"]
    expected = {"keras_predict", "keras_call", "tflite_float32", "tflite_float16", "tflite_dynamic", "tflite_int8", "tflite_raw"}
    assert set(variants) == expected and figures["missing"] == []
    for values in variants.values():
        assert values["size_bytes"] > 0 and values["latency_ms_model"] >= 0 and values["throughput_clips_per_s"] > 0
    assert variants["tflite_float32"]["macro_f1_drop"] == pytest.approx(0.0, abs=1e-9)
    assert figures["int8_size_ratio_vs_float32"] <= 1 / 3
    assert figures["raw_audio_agreement_percent"] >= 99.0
    assert "test windows re-cut" in figures["raw_audio_agreement_source"]
    assert figures["features_match_training_data"] is True
