"""The TensorFlow features (eager and as a builtin-only .tflite) hold to instrument_id.features.compute_features."""

from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
litert = pytest.importorskip("ai_edge_litert.interpreter")

from instrument_id.errors import InstrumentIdError  # noqa: E402
from instrument_id.features import compute_features  # noqa: E402
from instrument_id.params import FEATURE_NAMES, AudioParams  # noqa: E402
from tflite.tf_features import convert_builtins_only, convert_features_to_tflite, features_graph  # noqa: E402

PARAMS = AudioParams()
N_SCALARS = 6  # chroma, rms, centroid, bandwidth, rolloff, zcr; the rest are MFCCs
# Observed float32 agreement is <= 1e-5 relative and <= 1.1e-6 * max |MFCC|; the bounds leave ~10x headroom
# yet still catch a symmetric instead of periodic Hann window (errors 1e-4 relative, 1e-3 * max |MFCC|).
RTOL = 1e-4
SCALAR_ATOL = 1e-6  # every scalar feature of silence is exactly 0
MFCC_ATOL_OF_MAX = 1e-5  # absolute floor for near-zero MFCCs, relative to the clip's largest |MFCC|
# A pure tone's bandwidth is set by the FFT noise floor far from the peak (|X| ~ 1e-7 weighted by (f - c)^2);
# numpy's float32 pocketfft and TFLite's double-precision RFFT2D differ there (the float64 reference is 48.20 Hz,
# numpy 49.35 Hz, TFLite 48.37 Hz for the sine), so tonal clips get a looser bound on that one feature.
TONAL_BANDWIDTH_RTOL = 3e-2


def _clips() -> dict[str, np.ndarray]:
    """Silence, noise, a sine, a ramped chord and a music-like clip, each (window_samples,) float32."""
    n = PARAMS.window_samples
    t_seconds = np.arange(n) / PARAMS.sample_rate_hz
    rng = np.random.default_rng(7)
    chord = sum(np.sin(2 * np.pi * f_hz * t_seconds) for f_hz in (261.63, 329.63, 392.0)) / 3
    music = np.zeros(n)
    for onset_seconds, f0_hz in [(0.0, 196.0), (0.5, 293.66), (1.1, 440.0)]:
        since = t_seconds - onset_seconds
        envelope = np.where(since >= 0, np.exp(-3.0 * since), 0.0)
        music += envelope * sum(np.sin(2 * np.pi * f0_hz * k * since) / k for k in range(1, 8))
    clips = {
        "silence": np.zeros(n),
        "noise": rng.normal(0.0, 0.1, n),
        "sine": 0.5 * np.sin(2 * np.pi * 440.0 * t_seconds),
        "chord": np.linspace(0.05, 0.8, n) * chord,
        "music": 0.3 * music + 0.01 * rng.normal(size=n),
    }
    return {name: clip.astype(np.float32) for name, clip in clips.items()}


CLIPS = _clips()


def _assert_matches(name: str, got: np.ndarray, expected: np.ndarray) -> None:
    """Per feature: relative bound RTOL, with an absolute floor for MFCCs near zero."""
    atol = np.full(len(FEATURE_NAMES), SCALAR_ATOL)
    atol[N_SCALARS:] = MFCC_ATOL_OF_MAX * np.abs(expected[N_SCALARS:]).max()
    rtol = np.full(len(FEATURE_NAMES), RTOL)
    if name in ("sine", "chord"):
        rtol[FEATURE_NAMES.index("spectral_bandwidth")] = TONAL_BANDWIDTH_RTOL
    bad = np.abs(got - expected) > atol + rtol * np.abs(expected)
    detail = [f"{FEATURE_NAMES[i]}: got {got[i]:.6g}, expected {expected[i]:.6g}" for i in np.flatnonzero(bad)]
    assert not detail, f"{name}: {detail}"


@pytest.fixture(scope="module")
def expected() -> dict[str, np.ndarray]:
    return {name: compute_features(clip[None, :], PARAMS)[0] for name, clip in CLIPS.items()}


@pytest.fixture(scope="module")
def interpreter():
    model = convert_features_to_tflite(PARAMS)
    interp = litert.Interpreter(model_content=model)
    interp.allocate_tensors()
    return interp


def test_eager_graph_matches_numpy_on_a_batch(expected):
    names = list(CLIPS)
    batch = np.stack([CLIPS[name] for name in names])  # (5, window_samples)
    got = features_graph(tf.constant(batch), PARAMS).numpy()
    assert got.shape == (len(names), len(FEATURE_NAMES)) and got.dtype == np.float32
    for row, name in zip(got, names):
        _assert_matches(name, row, expected[name])


@pytest.mark.parametrize("name", list(CLIPS))
def test_tflite_model_matches_numpy(interpreter, expected, name):
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
    assert tuple(inp["shape"]) == (1, PARAMS.window_samples) and tuple(out["shape"]) == (1, len(FEATURE_NAMES))
    interpreter.set_tensor(inp["index"], CLIPS[name][None, :])
    interpreter.invoke()
    _assert_matches(name, interpreter.get_tensor(out["index"])[0], expected[name])


def test_tflite_model_uses_builtin_ops_only(interpreter):
    op_names = {op["op_name"] for op in interpreter._get_ops_details()}
    assert "RFFT2D" in op_names
    assert not {op for op in op_names if op.startswith("Flex") or op == "CUSTOM"}, sorted(op_names)


def test_conversion_refuses_graphs_that_need_flex_ops():
    spec = tf.TensorSpec([2, 2], tf.float32)
    needs_flex = tf.function(tf.linalg.inv, input_signature=[spec])
    with pytest.raises(Exception, match="MatrixInverse"):
        convert_builtins_only(needs_flex)


def test_unknown_sample_count_is_refused():
    @tf.function(input_signature=[tf.TensorSpec([1, None], tf.float32)])
    def dynamic(audio):
        return features_graph(audio, PARAMS)

    with pytest.raises(InstrumentIdError, match="static samples"):
        dynamic.get_concrete_function()
