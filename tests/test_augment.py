"""The nine window augmentations: shapes, bounds, seeding, and that each does what its name says."""

from __future__ import annotations

import random

import numpy as np
import pytest

from instrument_id.errors import InstrumentIdError
from instrument_id.params import AudioParams
from train.augment import VARIANT_NAMES, augment_window, augment_windows, harmonic_noise, window_seed

SAMPLE_RATE_HZ = AudioParams().sample_rate_hz
N_SAMPLES = AudioParams().window_samples
TIME_S = np.arange(N_SAMPLES) / SAMPLE_RATE_HZ


def _tone(frequency_hz: float, amplitude: float = 0.3) -> np.ndarray:
    return (amplitude * np.sin(2 * np.pi * frequency_hz * TIME_S)).astype(np.float32)


def _music(seed: int = 0, peak: float = 0.5) -> np.ndarray:
    """A 220 Hz note with decaying partials, an attack and a little noise, scaled to `peak`."""
    rng = np.random.default_rng(seed)
    y = sum(np.sin(2 * np.pi * 220 * k * TIME_S + rng.uniform(0, 2 * np.pi)) / k for k in range(1, 8))
    y = y * np.minimum(1.0, TIME_S * 5) + 0.01 * rng.standard_normal(N_SAMPLES)
    return (peak * y / np.max(np.abs(y))).astype(np.float32)


def _peak_frequency_hz(y: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(y * np.hanning(len(y)), n=8 * len(y)))
    return float(np.fft.rfftfreq(8 * len(y), 1 / SAMPLE_RATE_HZ)[np.argmax(spectrum)])


@pytest.fixture(scope="module")
def music_out() -> tuple[np.ndarray, np.ndarray, list[dict]]:
    y = _music()
    out, described = augment_window(y, SAMPLE_RATE_HZ, seed=7, describe=True)
    return y, out, described


def test_nine_named_variants_same_length_float32_finite_and_within_full_scale(music_out):
    y, out, described = music_out
    assert len(VARIANT_NAMES) == 9 and len(set(VARIANT_NAMES)) == 9
    assert [d["name"] for d in described] == list(VARIANT_NAMES)
    assert out.shape == (9, N_SAMPLES) and out.dtype == np.float32
    assert np.all(np.isfinite(out)) and np.max(np.abs(out)) <= 1.0


def test_full_scale_input_stays_within_full_scale():
    loud = _music(seed=3, peak=1.0)
    for seed in (0, 1):
        out = augment_window(loud, SAMPLE_RATE_HZ, seed)
        assert np.all(np.isfinite(out)) and np.max(np.abs(out)) <= 1.0


def test_every_variant_changes_the_signal(music_out):
    y, out, _ = music_out
    signal_rms = np.sqrt(np.mean(y**2))
    for name, variant in zip(VARIANT_NAMES, out):
        assert np.sqrt(np.mean((variant - y) ** 2)) > 1e-3 * signal_rms, name


def test_same_seed_same_output_other_seed_differs_and_global_rngs_untouched(music_out):
    y, out, _ = music_out
    random.seed(123)
    np.random.seed(123)
    python_state, numpy_draw = random.getstate(), np.random.get_state()[1].copy()
    again = augment_window(y, SAMPLE_RATE_HZ, seed=7)
    assert random.getstate() == python_state and np.array_equal(np.random.get_state()[1], numpy_draw)
    np.testing.assert_array_equal(again, out)
    other = augment_window(y, SAMPLE_RATE_HZ, seed=8)
    for name, a, b in zip(VARIANT_NAMES, out, other):
        assert not np.array_equal(a, b), name


def test_first_k_variants_match_the_full_set(music_out):
    y, out, _ = music_out
    np.testing.assert_array_equal(augment_window(y, SAMPLE_RATE_HZ, seed=7, n_variants=3), out[:3])
    assert augment_window(y, SAMPLE_RATE_HZ, seed=7, n_variants=0).shape == (0, N_SAMPLES)


def test_augment_windows_seeds_each_window_independently_of_batching():
    windows = np.stack([_music(seed=s, peak=0.4) for s in range(3)])  # (3, samples)
    out = augment_windows(windows, SAMPLE_RATE_HZ, seed=5, n_variants=2, progress=False)
    assert out.shape == (3, 2, N_SAMPLES) and out.dtype == np.float32
    for i in range(3):
        alone = augment_window(windows[i], SAMPLE_RATE_HZ, window_seed(5, i), n_variants=2)
        np.testing.assert_array_equal(out[i], alone)
    # identical windows still get different augmentations
    same = augment_windows(np.stack([windows[0], windows[0]]), SAMPLE_RATE_HZ, seed=5, n_variants=1, progress=False)
    assert not np.array_equal(same[0], same[1])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pitch_shift_moves_a_440_hz_sine_by_the_drawn_semitones(seed):
    index = VARIANT_NAMES.index("pitch_shift")
    out, described = augment_window(_tone(440.0), SAMPLE_RATE_HZ, seed, n_variants=index + 1, describe=True)
    semitones = described[index]["num_semitones"]
    assert 0.5 <= abs(semitones) <= 2.0
    measured_hz = _peak_frequency_hz(out[index])
    assert measured_hz == pytest.approx(440.0 * 2 ** (semitones / 12), abs=2.0)


def test_speed_change_keeps_length_and_scales_frequency():
    index = VARIANT_NAMES.index("speed")
    out, described = augment_window(_tone(440.0), SAMPLE_RATE_HZ, seed=4, describe=True)
    speed = described[index]["speed"]
    assert 0.03 <= abs(speed - 1.0) <= 0.1
    assert out[index].shape == (N_SAMPLES,)
    assert _peak_frequency_hz(out[index]) == pytest.approx(440.0 * speed, abs=2.0)


def test_normalize_reaches_the_drawn_peak(music_out):
    _, out, described = music_out
    index = VARIANT_NAMES.index("normalize")
    target_peak = 10 ** (described[index]["target_peak_dbfs"] / 20)
    assert np.max(np.abs(out[index])) == pytest.approx(target_peak, rel=1e-4)


@pytest.mark.parametrize("with_background", [False, True])
def test_background_is_mixed_only_inside_its_mask(music_out, with_background):
    y = music_out[0]
    room_tone = np.random.default_rng(9).standard_normal(N_SAMPLES).astype(np.float32) * 0.01
    index = VARIANT_NAMES.index("masked_background")
    out, described = augment_window(y, SAMPLE_RATE_HZ, seed=11, background=room_tone if with_background else None,
                                    n_variants=index + 1, describe=True)
    start, stop = described[index]["start_sample"], described[index]["stop_sample"]
    assert described[index]["source"] == ("caller" if with_background else "colored_noise")
    assert 0.25 * SAMPLE_RATE_HZ <= stop - start <= 1.0 * SAMPLE_RATE_HZ + 1
    np.testing.assert_array_equal(out[index][:start], y[:start])
    np.testing.assert_array_equal(out[index][stop:], y[stop:])
    assert not np.array_equal(out[index][start:stop], y[start:stop])


def test_harmonic_noise_follows_the_window_spectrum_with_new_phases():
    y = _tone(440.0) + _tone(1320.0, amplitude=0.1)
    noise = harmonic_noise(y, np.random.default_rng(0))
    spectrum = np.abs(np.fft.rfft(noise))
    frequencies_hz = np.fft.rfftfreq(N_SAMPLES, 1 / SAMPLE_RATE_HZ)
    near_partials = (np.abs(frequencies_hz - 440) < 5) | (np.abs(frequencies_hz - 1320) < 5)
    assert np.sum(spectrum[near_partials] ** 2) > 0.99 * np.sum(spectrum**2)
    assert np.sqrt(np.mean(noise**2)) == pytest.approx(np.sqrt(np.mean(y**2)), rel=0.01)
    # phases are new: on broadband input the noise is uncorrelated with the window it came from
    broadband = np.random.default_rng(1).standard_normal(N_SAMPLES).astype(np.float32)
    assert abs(np.corrcoef(harmonic_noise(broadband, np.random.default_rng(0)), broadband)[0, 1]) < 0.05


def test_silence_gives_finite_output():
    out = augment_window(np.zeros(N_SAMPLES, dtype=np.float32), SAMPLE_RATE_HZ, seed=0)
    assert out.shape == (9, N_SAMPLES) and np.all(np.isfinite(out)) and np.max(np.abs(out)) <= 1.0


@pytest.mark.parametrize("bad", [
    {"y": np.full(100, np.nan, dtype=np.float32)},
    {"y": np.zeros((2, 100), dtype=np.float32)},
    {"n_variants": 10},
    {"seed": -1},
])
def test_bad_input_raises_project_error(bad):
    kwargs = {"y": np.zeros(100, dtype=np.float32), "sample_rate_hz": SAMPLE_RATE_HZ, "seed": 0, **bad}
    with pytest.raises(InstrumentIdError):
        augment_window(**kwargs)
