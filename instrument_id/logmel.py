"""musicnn's log-mel front end in numpy: librosa's melspectrogram (hann, center, zero pad, slaney mel) then log10(C*x + 1).

One definition for the converter's checks, the embedding loader and any feature set built on the musicnn embedding;
tests hold it against librosa.feature.melspectrogram. numpy and scipy only: the edge install has no librosa.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.fft
import scipy.signal

from instrument_id.errors import InstrumentIdError
from instrument_id.params import checked_fields

# slaney mel scale (librosa.hz_to_mel with htk=False): linear below 1 kHz, logarithmic above
_MEL_LINEAR_HZ_PER_MEL = 200.0 / 3.0
_MEL_BREAK_HZ = 1000.0
_MEL_LOG_STEP = np.log(6.4) / 27.0


@dataclass(frozen=True)
class LogMelParams:
    """Every setting of the log-mel front end; musicnn's defaults (MTT_musicnn was trained on these)."""

    sample_rate_hz: int = 16000
    n_fft: int = 512  # also the window length
    stft_hop_samples: int = 256
    n_mels: int = 96
    fmin_hz: float = 0.0
    fmax_hz: float = 8000.0
    power: float = 2.0  # |STFT| ** power
    log_scale: float = 10000.0  # log10(log_scale * mel + 1)
    window: str = "hann"  # periodic (scipy get_window fftbins=True), as librosa
    center_pad: str = "constant"  # n_fft // 2 zeros each side (librosa >= 0.10 default pad_mode)
    mel_scale: str = "slaney"  # librosa htk=False
    mel_norm: str = "slaney"  # each filter scaled to unit area in Hz

    def __post_init__(self) -> None:
        fixed = {"window": "hann", "center_pad": "constant", "mel_scale": "slaney", "mel_norm": "slaney"}
        for name, supported in fixed.items():
            if getattr(self, name) != supported:
                raise InstrumentIdError(f"LogMelParams.{name}={getattr(self, name)!r} is not supported (only {supported!r})")
        if min(self.sample_rate_hz, self.n_fft, self.stft_hop_samples, self.n_mels) < 1:
            raise InstrumentIdError(f"LogMelParams needs positive sizes, got {self}")
        if not 0.0 <= self.fmin_hz < self.fmax_hz <= self.sample_rate_hz / 2:
            raise InstrumentIdError(f"LogMelParams needs 0 <= fmin_hz < fmax_hz <= Nyquist, got {self}")
        if self.power <= 0 or self.log_scale <= 0:
            raise InstrumentIdError(f"LogMelParams needs positive power and log_scale, got {self}")

    @property
    def n_bins(self) -> int:
        """rfft bins per frame."""
        return self.n_fft // 2 + 1

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "LogMelParams":
        """Rebuild from a stored dict; unknown and missing keys are errors (today's defaults never fill a gap)."""
        return cls(**checked_fields(cls, data, "log-mel"))


def frames_for(samples: int, params: LogMelParams) -> int:
    """Frames log_mel gives for a window of `samples` (centred STFT): 1 + samples // hop."""
    if samples < 1:
        raise InstrumentIdError(f"a window needs at least one sample, got {samples}")
    return 1 + samples // params.stft_hop_samples


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney mel of frequencies in Hz."""
    hz = np.asarray(hz, dtype=np.float64)
    mel = hz / _MEL_LINEAR_HZ_PER_MEL
    above = hz >= _MEL_BREAK_HZ
    mel_break = _MEL_BREAK_HZ / _MEL_LINEAR_HZ_PER_MEL
    return np.where(above, mel_break + np.log(np.maximum(hz, _MEL_BREAK_HZ) / _MEL_BREAK_HZ) / _MEL_LOG_STEP, mel)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    """Frequencies in Hz of slaney mels."""
    mel = np.asarray(mel, dtype=np.float64)
    mel_break = _MEL_BREAK_HZ / _MEL_LINEAR_HZ_PER_MEL
    return np.where(mel >= mel_break, _MEL_BREAK_HZ * np.exp(_MEL_LOG_STEP * (mel - mel_break)), mel * _MEL_LINEAR_HZ_PER_MEL)


def mel_filter_bank(params: LogMelParams) -> np.ndarray:
    """(n_mels, n_bins) float32 triangular filters, as librosa.filters.mel(htk=False, norm='slaney')."""
    fft_hz = np.fft.rfftfreq(params.n_fft, d=1.0 / params.sample_rate_hz)  # (n_bins,)
    edges_mel = np.linspace(_hz_to_mel(params.fmin_hz), _hz_to_mel(params.fmax_hz), params.n_mels + 2)
    edges_hz = _mel_to_hz(edges_mel)  # (n_mels + 2,)
    widths_hz = np.diff(edges_hz)  # (n_mels + 1,)
    ramps = edges_hz[:, None] - fft_hz[None, :]  # (n_mels + 2, n_bins)
    rising = -ramps[:-2] / widths_hz[:-1, None]
    falling = ramps[2:] / widths_hz[1:, None]
    # librosa stores each row in float32 before the area normalisation; doing the same keeps us within float32 ulps
    weights = np.maximum(0.0, np.minimum(rising, falling)).astype(np.float32)  # (n_mels, n_bins)
    area_norm = (2.0 / (edges_hz[2:] - edges_hz[:-2])).astype(np.float32)
    return weights * area_norm[:, None]


@dataclass(frozen=True)
class _Tables:
    window: np.ndarray  # (n_fft,) float32
    mel_t: np.ndarray  # (n_bins, n_mels) float32


_TABLES: dict[LogMelParams, _Tables] = {}


def _tables(params: LogMelParams) -> _Tables:
    """The window and the transposed filter bank of params, built once per process."""
    if params not in _TABLES:
        window = scipy.signal.get_window("hann", params.n_fft, fftbins=True).astype(np.float32)
        _TABLES[params] = _Tables(window=window, mel_t=np.ascontiguousarray(mel_filter_bank(params).T))
    return _TABLES[params]


def mel_power(windows: np.ndarray, params: LogMelParams) -> np.ndarray:
    """(n, samples) audio -> (n, frames, n_mels) float32 mel power, as librosa.feature.melspectrogram(...).T."""
    windows = np.asarray(windows)
    if windows.ndim != 2 or windows.shape[1] < 1:
        raise InstrumentIdError(f"log_mel needs windows shaped (n, samples), got {windows.shape}")
    if not np.issubdtype(windows.dtype, np.floating):
        raise InstrumentIdError(f"log_mel needs float audio in [-1, 1], got {windows.dtype}")
    if not np.isfinite(windows).all():
        raise InstrumentIdError("log_mel: the audio holds NaN or infinite samples")
    tables = _tables(params)
    n, samples = windows.shape
    half = params.n_fft // 2
    padded = np.pad(windows.astype(np.float32, copy=False), ((0, 0), (half, half)))  # (n, samples + n_fft)
    frames = np.lib.stride_tricks.sliding_window_view(padded, params.n_fft, axis=1)[:, :: params.stft_hop_samples]
    n_frames = frames.shape[1]  # 1 + samples // hop
    spectrum = scipy.fft.rfft(frames * tables.window, axis=-1)  # (n, frames, n_bins) complex64
    power = np.abs(spectrum) ** np.float32(params.power)  # as librosa: |S| ** power, not re^2 + im^2
    mel = power.reshape(n * n_frames, params.n_bins).astype(np.float32, copy=False) @ tables.mel_t
    return mel.reshape(n, n_frames, params.n_mels)  # (n, frames, n_mels)


def log_mel(windows: np.ndarray, params: LogMelParams) -> np.ndarray:
    """(n, samples) float audio at params.sample_rate_hz -> (n, frames, n_mels) float32 log10(log_scale * mel + 1)."""
    mel = mel_power(windows, params)  # (n, frames, n_mels)
    return np.log10(np.float32(params.log_scale) * mel + np.float32(1.0))
