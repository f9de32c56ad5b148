"""Both feature paths (compiled kernels and numpy) against librosa's own functions, value by value, on varied clips."""

from pathlib import Path

import numpy as np
import pytest

from bench.signals import music_like_clips
from instrument_id.audio import frame_windows, load_mono
from instrument_id.errors import InstrumentIdError
from instrument_id import kernels
from instrument_id.features import compute_features, extractor_for
from instrument_id.params import FEATURE_NAMES, AudioParams
from train.librosa_reference import librosa_features

PARAMS = AudioParams()
REAL_DEV = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "real-dev" / "medley-solos-db"
BANDWIDTH = FEATURE_NAMES.index("spectral_bandwidth")
needs_numba = pytest.mark.skipif(not kernels.AVAILABLE, reason="numba not installed (the edge install)")


@pytest.fixture(params=["numba", "numpy"], autouse=True)
def backend(request, monkeypatch):
    """Every test here runs on both paths; compute_features picks the path from INSTRUMENT_ID_FEATURES."""
    if request.param == "numba" and not kernels.AVAILABLE:
        pytest.skip("numba not installed (the edge install)")
    monkeypatch.setenv("INSTRUMENT_ID_FEATURES", request.param)
    return request.param


def _clips() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(3)
    t = np.arange(PARAMS.window_samples) / PARAMS.sample_rate_hz
    ramp = np.linspace(0, 1, len(t))
    return {
        "silence": np.zeros(len(t), np.float32),
        "white_noise": (0.1 * rng.standard_normal(len(t))).astype(np.float32),
        "sine_440": (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32),
        "chord_ramp": (ramp * sum(0.2 * np.sin(2 * np.pi * f * t) for f in (261.6, 329.6, 392.0, 1046.5))).astype(np.float32),
        "quiet_noise_burst": np.where(t > 1.2, 1e-4 * rng.standard_normal(len(t)), 0).astype(np.float32),
        "music_like_0": music_like_clips(2, PARAMS, seed=11)[0],
        "music_like_1": music_like_clips(2, PARAMS, seed=11)[1],
    }


def assert_matches_librosa(ours: np.ndarray, reference: np.ndarray, clip_name: str, pure_tone: bool = False) -> None:
    """1e-3 relative per feature; near-zero MFCCs get an absolute floor of 1e-3 of the clip's largest MFCC."""
    mfcc_scale = np.max(np.abs(reference[6:]))
    floors = np.r_[np.full(6, 1e-6), np.full(20, 1e-3 * mfcc_scale + 1e-6)]
    rtol = np.full(26, 1e-3)
    if pure_tone:
        # The spread of a pure tone is ~50 Hz; the float32 FFT round-off floor (~1e-7 of the peak in every bin,
        # weighted by (f - centroid)^2 up to 10 kHz^2) then dominates. librosa's own float32 STFT is 0.4% off
        # the float64 value, ours 2.5%: a 5% bound for this one feature on pure tones.
        rtol[BANDWIDTH] = 5e-2
    error = np.abs(ours - reference)
    bad = error > rtol * np.abs(reference) + floors
    assert not bad.any(), f"{clip_name}: " + ", ".join(
        f"{FEATURE_NAMES[i]} ours={ours[i]:.6g} librosa={reference[i]:.6g}" for i in np.flatnonzero(bad))


@pytest.mark.parametrize("name", list(_clips()))
def test_each_feature_matches_librosa(name, backend):
    clip = _clips()[name]
    assert extractor_for(PARAMS).backend == backend
    ours = compute_features(clip, PARAMS)[0]
    assert ours.shape == (26,) and ours.dtype == np.float32
    assert_matches_librosa(ours, librosa_features(clip, PARAMS), name, pure_tone=name in ("sine_440", "chord_ramp"))


@pytest.mark.parametrize("window_seconds", [1.0, 3.3, 12.0])
def test_other_window_lengths_match_librosa(window_seconds):
    params = AudioParams(window_seconds=window_seconds)
    clip = music_like_clips(1, AudioParams(window_seconds=window_seconds), seed=5)[0]
    reference = librosa_features(clip, params)
    assert_matches_librosa(compute_features(clip, params)[0], reference, f"{window_seconds} s")


def test_batch_equals_one_at_a_time():
    clips = music_like_clips(70, PARAMS, seed=2)  # more than one internal batch
    batched = compute_features(clips, PARAMS)
    singles = np.stack([compute_features(c, PARAMS)[0] for c in clips[[0, 33, 69]]])
    np.testing.assert_allclose(batched[[0, 33, 69]], singles, rtol=1e-4, atol=1e-4)  # BLAS blocking differs by batch size


def test_sine_features_make_physical_sense():
    t = np.arange(PARAMS.window_samples) / PARAMS.sample_rate_hz
    low, high = (compute_features(np.sin(2 * np.pi * f * t).astype(np.float32), PARAMS)[0] for f in (220.0, 3520.0))
    centroid, rolloff, zcr = (FEATURE_NAMES.index(n) for n in ("spectral_centroid", "rolloff", "zero_crossing_rate"))
    assert abs(low[centroid] - 220) < 15 and abs(high[centroid] - 3520) < 30
    assert low[rolloff] < high[rolloff]
    assert high[zcr] == pytest.approx(2 * 3520 / PARAMS.sample_rate_hz, rel=0.02)


def test_nan_audio_is_refused():
    clip = np.zeros(PARAMS.window_samples, np.float32)
    clip[100] = np.nan
    with pytest.raises(InstrumentIdError, match="NaN"):
        compute_features(clip, PARAMS)


@pytest.mark.skipif(not REAL_DEV.is_dir(), reason="real-dev recordings not present")
def test_real_recordings_match_librosa():
    for path in sorted(REAL_DEV.glob("*.flac"))[:4]:
        window = frame_windows(load_mono(path, PARAMS), PARAMS)[0]
        assert_matches_librosa(compute_features(window, PARAMS)[0], librosa_features(window, PARAMS), path.name)


def test_stft_hop_that_does_not_divide_n_fft_matches_librosa():
    params = AudioParams(stft_hop_samples=500)  # RMS and ZCR then take the prefix-sum path
    clip = music_like_clips(1, params, seed=8)[0]
    assert_matches_librosa(compute_features(clip, params)[0], librosa_features(clip, params), "hop 500")


@needs_numba
@pytest.mark.parametrize("samples", [100, 1000, 2048, 2049, 22050, 30001, 44100])
def test_compiled_kernels_equal_the_numpy_path(samples):
    """Any length, including clips shorter than one FFT frame, where padding decides every frame."""
    rng = np.random.default_rng(samples)
    clips = np.concatenate([(0.1 * rng.standard_normal((2, samples))).astype(np.float32),
                            music_like_clips(1, PARAMS, seed=samples)[:, :samples]])
    compiled, numpy_path = extractor_for(PARAMS, "numba"), extractor_for(PARAMS, "numpy")
    np.testing.assert_allclose(compiled(clips), numpy_path(clips), rtol=2e-4, atol=1e-4)


@needs_numba
def test_frame_values_without_padding_agree_between_paths():
    """The streaming analysis asks for frames that lie inside the audio (pad_left=0), values per frame."""
    x = music_like_clips(1, PARAMS, seed=4)[0]
    n_frames = 1 + (len(x) - PARAMS.n_fft) // PARAMS.stft_hop_samples
    compiled = extractor_for(PARAMS, "numba").frame_values(x, 0, n_frames)
    numpy_path = extractor_for(PARAMS, "numpy").frame_values(x, 0, n_frames)
    for ours, theirs in zip(compiled, numpy_path):
        np.testing.assert_allclose(ours, theirs, rtol=2e-4, atol=1e-3)


def test_unknown_backend_is_refused(monkeypatch):
    monkeypatch.setenv("INSTRUMENT_ID_FEATURES", "fortran")
    with pytest.raises(InstrumentIdError, match="INSTRUMENT_ID_FEATURES"):
        compute_features(np.zeros(PARAMS.window_samples, np.float32), PARAMS)


@needs_numba
def test_window_summaries_agree_between_paths():
    """The streaming analysis's per-window means over shared frames, on both paths."""
    x = music_like_clips(3, PARAMS, seed=6).reshape(-1)
    n_frames = 1 + (len(x) - PARAMS.n_fft) // PARAMS.stft_hop_samples
    compiled, numpy_path = extractor_for(PARAMS, "numba"), extractor_for(PARAMS, "numpy")
    values, log_mel = compiled.frame_values(x, 0, n_frames)
    firsts = np.arange(0, n_frames - PARAMS.n_frames + 1, 21)
    np.testing.assert_allclose(compiled.window_summaries(values, log_mel, firsts, PARAMS.n_frames),
                               numpy_path.window_summaries(values, log_mel, firsts, PARAMS.n_frames), rtol=1e-5, atol=1e-4)
