"""Generated audio for the edge exports: the clips every .tflite file is checked on, and those int8 is calibrated on.

Nothing is downloaded. The check clips are YAMNet's (silence, seeded noise, a 440 Hz sine) plus a music-like
sequence of harmonic tones. The calibration clips cover what a microphone hears between notes (silence, noise from
very quiet to loud, pure tones across the range) with another seed and other frequencies than the check, so the
check does not score int8 on the very windows its ranges were fitted to.
"""

from __future__ import annotations

import numpy as np

from instrument_id.params import AudioParams

CHECK_SECONDS = 4.0  # three 2 s windows per clip at a 1 s hop
TONE_SECONDS = 0.5
TONE_NOTES = (48, 55, 60, 64, 67, 72, 76, 79)  # MIDI: a C major arpeggio over three octaves
TONE_HARMONICS = 6
CALIBRATION_NOISE_RMS = (0.003, 0.01, 0.03, 0.1, 0.3)
CALIBRATION_SINE_HZ = (110.0, 330.0, 990.0, 2970.0)
CALIBRATION_SEED = 1


def _midi_hz(note: int) -> float:
    return 440.0 * 2.0 ** ((note - 69) / 12.0)


def harmonic_tones(params: AudioParams, seconds: float) -> np.ndarray:
    """(samples,) float32, peak 0.5: decaying notes of six harmonics, one every TONE_SECONDS."""
    t = np.arange(int(round(seconds * params.sample_rate_hz))) / params.sample_rate_hz  # (samples,) seconds
    tones = np.zeros_like(t)
    for i, onset_s in enumerate(np.arange(0.0, seconds, TONE_SECONDS)):
        f0_hz = _midi_hz(TONE_NOTES[i % len(TONE_NOTES)])
        since = np.clip(t - onset_s, 0.0, None)  # (samples,) seconds since this note's onset
        partials = sum(np.sin(2 * np.pi * k * f0_hz * since) / k for k in range(1, TONE_HARMONICS + 1))
        tones += np.where((t >= onset_s) & (t < onset_s + TONE_SECONDS), partials * np.exp(-3.0 * since), 0.0)
    return (0.5 * tones / np.abs(tones).max()).astype(np.float32)


def check_clips(params: AudioParams, seconds: float = CHECK_SECONDS) -> dict[str, np.ndarray]:
    """{name: (samples,) float32 at params.sample_rate_hz}: silence, seeded noise, a 440 Hz sine, harmonic tones."""
    n_samples = int(round(seconds * params.sample_rate_hz))
    t = np.arange(n_samples) / params.sample_rate_hz  # (samples,) seconds
    return {
        "silence": np.zeros(n_samples, np.float32),
        "noise": (0.1 * np.random.default_rng(0).standard_normal(n_samples)).astype(np.float32),
        "sine 440 Hz": (0.5 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32),
        "harmonic tones": harmonic_tones(params, seconds),
    }


def calibration_clips(params: AudioParams, seconds: float = CHECK_SECONDS) -> list[np.ndarray]:
    """(samples,) float32 clips: silence, noise at each CALIBRATION_NOISE_RMS, a sine at each CALIBRATION_SINE_HZ."""
    n_samples = int(round(seconds * params.sample_rate_hz))
    t = np.arange(n_samples) / params.sample_rate_hz  # (samples,) seconds
    rng = np.random.default_rng(CALIBRATION_SEED)
    return [
        np.zeros(n_samples, np.float32),
        *((rms * rng.standard_normal(n_samples)).astype(np.float32) for rms in CALIBRATION_NOISE_RMS),
        *((0.5 * np.sin(2 * np.pi * hz * t)).astype(np.float32) for hz in CALIBRATION_SINE_HZ),
    ]
