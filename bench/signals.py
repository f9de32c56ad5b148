"""Music-like test signals: seeded clips that benchmarks time and tests feed to every feature path."""

from __future__ import annotations

import numpy as np

from instrument_id.params import AudioParams


def music_like_clips(n_clips: int, params: AudioParams, seed: int = 0) -> np.ndarray:
    """(n_clips, window_samples) seeded clips of decaying harmonic tones over a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(params.window_samples) / params.sample_rate_hz  # (samples,)
    clips = np.zeros((n_clips, len(t)), dtype=np.float32)
    for i in range(n_clips):
        for _ in range(rng.integers(1, 5)):
            f0_hz = 55.0 * 2 ** (rng.integers(0, 48) / 12)
            onset = rng.uniform(0, 1.5)
            envelope = np.where(t >= onset, np.exp(-(t - onset) * rng.uniform(0.5, 4)), 0.0)
            partials = sum(np.sin(2 * np.pi * f0_hz * k * t) / k**rng.uniform(1, 2) for k in range(1, 8))
            clips[i] += (0.2 * envelope * partials).astype(np.float32)
        clips[i] += 0.005 * rng.standard_normal(len(t)).astype(np.float32)
    return clips


def harmonic_clip(seconds: float, rate_hz: int, seed: int = 0) -> np.ndarray:
    """(samples,) float32: a seeded sum of decaying harmonic tones, peak 0.8."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate_hz)) / rate_hz  # (samples,)
    y = np.zeros_like(t)
    for onset_s in np.arange(0.0, seconds, 0.5):
        f0_hz = 55.0 * 2 ** (rng.integers(0, 48) / 12)
        tau = np.clip(t - onset_s, 0.0, None)
        partials = sum(np.sin(2 * np.pi * k * f0_hz * tau) / k for k in range(1, 7))
        y += np.where(t >= onset_s, partials * np.exp(-rng.uniform(1, 4) * tau), 0.0)
    return (0.8 * y / np.abs(y).max()).astype(np.float32)
