"""The 26 features the usual way, one librosa call per feature: the reference for tests and benchmarks."""

from __future__ import annotations

import librosa
import numpy as np

from instrument_id.params import AudioParams


def librosa_features(y: np.ndarray, params: AudioParams) -> np.ndarray:
    """(samples,) audio -> (26,) float64 features computed with librosa's own functions."""
    sr, n_fft, hop = params.sample_rate_hz, params.n_fft, params.stft_hop_samples
    y = np.asarray(y, dtype=np.float32)
    chroma = librosa.feature.chroma_stft(y=y, sr=sr, n_fft=n_fft, hop_length=hop, tuning=params.chroma_tuning)
    rms = librosa.feature.rms(y=y, frame_length=n_fft, hop_length=hop)
    centroid = librosa.feature.spectral_centroid(y=y, sr=sr, n_fft=n_fft, hop_length=hop)
    bandwidth = librosa.feature.spectral_bandwidth(y=y, sr=sr, n_fft=n_fft, hop_length=hop)
    rolloff = librosa.feature.spectral_rolloff(y=y, sr=sr, n_fft=n_fft, hop_length=hop, roll_percent=params.rolloff_percent)
    zcr = librosa.feature.zero_crossing_rate(y, frame_length=n_fft, hop_length=hop)
    mfcc = librosa.feature.mfcc(y=y, sr=sr, n_mfcc=params.n_mfcc, n_fft=n_fft, hop_length=hop, n_mels=params.n_mels)
    scalars = [np.mean(v) for v in (chroma, rms, centroid, bandwidth, rolloff, zcr)]
    return np.array(scalars + list(np.mean(mfcc, axis=1)), dtype=np.float64)
