"""The 26 features, in numpy, from one STFT per window with precomputed filter banks.

librosa is the reference (tests/test_features.py holds every value against it); this module never imports it.
Every feature is a mean over STFT frames of a per-frame value, except the MFCCs, whose log-mel floor
(max - top_db) is taken over the whole window exactly as librosa.power_to_db does.

Two paths compute the same values: compiled per-frame kernels (instrument_id.kernels, numba) where numba is installed,
and whole-batch numpy (one FFT, two GEMMs) where it is not, as on the edge install. INSTRUMENT_ID_FEATURES=numpy|numba
forces one; the default takes the kernels when they import.
"""

from __future__ import annotations

import concurrent.futures
import functools
import os

import numpy as np
import scipy.fft
from numpy.lib.stride_tricks import sliding_window_view

from instrument_id import kernels
from instrument_id.errors import InstrumentIdError
from instrument_id.params import AudioParams

BACKENDS = ("numba", "numpy")

_AMIN_POWER = 1e-10  # librosa.power_to_db amin
_ZCR_THRESHOLD = 1e-10  # librosa.zero_crossings threshold
_ROLLOFF_BLOCK = 32  # bins per block when locating the rolloff bin
FFT_FRAMES = 32  # frames per FFT call on the compiled path: frames and spectrum (0.5 MB) stay in L2


def _hz_to_mel(freq_hz: np.ndarray) -> np.ndarray:
    """Slaney mel scale (librosa's default, htk=False)."""
    freq_hz = np.asanyarray(freq_hz, dtype=np.float64)
    f_sp, min_log_hz, logstep = 200.0 / 3, 1000.0, np.log(6.4) / 27.0
    mels = freq_hz / f_sp
    log_region = freq_hz >= min_log_hz
    return np.where(log_region, min_log_hz / f_sp + np.log(np.maximum(freq_hz, 1e-30) / min_log_hz) / logstep, mels)


def _mel_to_hz(mels: np.ndarray) -> np.ndarray:
    """Inverse of the Slaney mel scale."""
    f_sp, min_log_hz, logstep = 200.0 / 3, 1000.0, np.log(6.4) / 27.0
    min_log_mel = min_log_hz / f_sp
    return np.where(mels >= min_log_mel, min_log_hz * np.exp(logstep * (mels - min_log_mel)), f_sp * mels)


def mel_filterbank(sample_rate_hz: int, n_fft: int, n_mels: int) -> np.ndarray:
    """Slaney-normalized triangular mel filters, shape (n_mels, 1 + n_fft // 2), as librosa.filters.mel."""
    fft_freqs_hz = np.fft.rfftfreq(n_fft, 1.0 / sample_rate_hz)
    mel_f = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(sample_rate_hz / 2.0), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = np.subtract.outer(mel_f, fft_freqs_hz)  # (n_mels + 2, n_bins)
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper)).astype(np.float32)
    enorm = 2.0 / (mel_f[2:] - mel_f[:-2])
    return (weights * enorm[:, None]).astype(np.float32)


def chroma_filterbank(sample_rate_hz: int, n_fft: int, n_chroma: int, tuning: float) -> np.ndarray:
    """Gaussian pitch-class filters centred on octave 5, shape (n_chroma, 1 + n_fft // 2), as librosa.filters.chroma."""
    freqs_hz = np.linspace(0, sample_rate_hz, n_fft, endpoint=False)[1:]
    a440_hz = 440.0 * 2.0 ** (tuning / n_chroma)
    frqbins = n_chroma * np.log2(freqs_hz / (a440_hz / 16))
    frqbins = np.concatenate(([frqbins[0] - 1.5 * n_chroma], frqbins))
    binwidthbins = np.concatenate((np.maximum(frqbins[1:] - frqbins[:-1], 1.0), [1]))
    dist = np.subtract.outer(frqbins, np.arange(0, n_chroma, dtype="d")).T  # (n_chroma, n_fft)
    half = np.round(float(n_chroma) / 2)
    dist = np.remainder(dist + half + 10 * n_chroma, n_chroma) - half
    wts = np.exp(-0.5 * (2 * dist / binwidthbins[None, :]) ** 2)
    wts /= np.maximum(np.sqrt(np.sum(wts**2, axis=0, keepdims=True)), np.finfo(wts.dtype).tiny)
    wts *= np.exp(-0.5 * (((frqbins / n_chroma - 5.0) / 2.0) ** 2))[None, :]
    wts = np.roll(wts, -3 * (n_chroma // 12), axis=0)
    return np.ascontiguousarray(wts[:, : 1 + n_fft // 2], dtype=np.float32)


def resolve_backend(requested: str | None = None) -> str:
    """The feature path: `requested`, else INSTRUMENT_ID_FEATURES, else the compiled kernels when numba imports,
    else numpy; an unknown name, or numba where it is not installed, is refused."""
    source = "INSTRUMENT_ID_FEATURES" if requested is None else "feature backend"
    chosen = (os.environ.get("INSTRUMENT_ID_FEATURES", "auto") if requested is None else requested).strip().lower()
    if chosen in ("", "auto"):
        return "numba" if kernels.AVAILABLE else "numpy"
    if chosen not in BACKENDS:
        raise InstrumentIdError(f"{source} must be auto, numba or numpy, got {chosen!r}")
    if chosen == "numba" and not kernels.AVAILABLE:
        raise InstrumentIdError(f"{source} is numba but numba is not installed (pip install numba)")
    return chosen


def dct_ortho_matrix(n_in: int, n_out: int) -> np.ndarray:
    """Orthonormal DCT-II basis, shape (n_in, n_out): x @ M equals scipy.fft.dct(x, norm='ortho')[:n_out]."""
    n = np.arange(n_in)[:, None]
    k = np.arange(n_out)[None, :]
    basis = np.cos(np.pi * k * (2 * n + 1) / (2 * n_in)) * np.sqrt(2.0 / n_in)
    basis[:, 0] /= np.sqrt(2.0)
    return basis.astype(np.float32)


class FeatureExtractor:
    """Computes the 26 features for a batch of equal-length windows with banks built once per AudioParams."""

    def __init__(self, params: AudioParams, backend: str | None = None):
        self.params = params
        self.backend = resolve_backend(backend)
        n_bins = 1 + params.n_fft // 2
        self.window = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(params.n_fft) / params.n_fft)).astype(np.float32)
        self.freqs_hz = np.fft.rfftfreq(params.n_fft, 1.0 / params.sample_rate_hz).astype(np.float32)
        mel = mel_filterbank(params.sample_rate_hz, params.n_fft, params.n_mels)
        chroma = chroma_filterbank(params.sample_rate_hz, params.n_fft, params.n_chroma, params.chroma_tuning)
        # one GEMM of the power spectrum gives mel and chroma: (n_bins, n_mels + n_chroma)
        self.power_bank = np.ascontiguousarray(np.concatenate([mel, chroma], axis=0).T)
        # one GEMM of the magnitude gives the moments 1, f, f^2 and cumulative sums at every
        # _ROLLOFF_BLOCK-th bin, which locate the rolloff bin's block without a full cumsum
        n_blocks = -(-n_bins // _ROLLOFF_BLOCK)
        block_ends = np.minimum((np.arange(n_blocks) + 1) * _ROLLOFF_BLOCK, n_bins)
        cumulative = (np.arange(n_bins)[:, None] < block_ends[None, :]).astype(np.float32)  # (n_bins, n_blocks)
        freqs = self.freqs_hz.astype(np.float64)
        moments = np.stack([np.ones(n_bins), freqs / 1e3, (freqs / 1e3) ** 2], axis=1).astype(np.float32)
        self.magnitude_bank = np.ascontiguousarray(np.concatenate([moments, cumulative], axis=1))
        self.dct = dct_ortho_matrix(params.n_mels, params.n_mfcc)
        # the kernels' banks: each mel filter as its run of non-zero bins, chroma as (n_chroma, n_bins)
        nonzero = [np.flatnonzero(row) for row in mel]
        self.mel_start = np.array([idx[0] if len(idx) else 0 for idx in nonzero], dtype=np.int64)
        self.mel_stop = np.array([idx[-1] + 1 if len(idx) else 0 for idx in nonzero], dtype=np.int64)
        self.mel_offset = np.concatenate([[0], np.cumsum(self.mel_stop - self.mel_start)[:-1]]).astype(np.int64)
        self.mel_weights = np.concatenate([mel[m, a:b] for m, (a, b) in enumerate(zip(self.mel_start, self.mel_stop))])
        self.chroma_bank = np.ascontiguousarray(chroma)
        self.freqs_khz = freqs / 1e3

    def __call__(self, windows: np.ndarray) -> np.ndarray:
        """(n_windows, n_samples) float audio -> (n_windows, 26) float32 features."""
        windows = np.asarray(windows, dtype=np.float32)
        if windows.ndim == 1:
            windows = windows[None, :]
        if windows.ndim != 2 or windows.shape[1] < 2:
            raise InstrumentIdError(f"expected windows of shape (n, samples), got {windows.shape}")
        if not np.all(np.isfinite(windows)):
            raise InstrumentIdError("audio contains NaN or infinite samples")
        if self.backend == "numba":
            return np.stack([self._window_features(window) for window in windows]).astype(np.float32)
        p = self.params
        half = p.n_fft // 2
        padded = np.pad(windows, ((0, 0), (half, half)))  # (n, samples + n_fft)
        frames = sliding_window_view(padded, p.n_fft, axis=1)[:, :: p.stft_hop_samples]  # (n, T, n_fft)
        spectral, log_mel = self.spectral_frame_values(frames)  # (n, T, 4), (n, T, n_mels)
        means = spectral.mean(axis=1)  # (n, 4): chroma, centroid, bandwidth, rolloff
        scalars = np.stack([
            means[:, 0],
            self._rms(windows, frames.shape[1]),
            means[:, 1],
            means[:, 2],
            means[:, 3],
            self._zcr(windows, frames.shape[1]),
        ], axis=1)  # (n, 6)
        return np.concatenate([scalars, self.mfcc_from_log_mel(log_mel)], axis=1).astype(np.float32)

    def _window_features(self, window: np.ndarray) -> np.ndarray:
        """(samples,) -> (26,) through the compiled kernels: frames centred with zero padding (STFT, RMS) and edge
        padding (ZCR), as librosa's defaults."""
        n_frames = 1 + len(window) // self.params.stft_hop_samples
        values, log_mel = self.frame_values(window, self.params.n_fft // 2, n_frames)  # (T, 6), (T, n_mels)
        features = np.empty(6 + self.params.n_mfcc, dtype=np.float64)
        kernels.window_summary(values, log_mel, self.params.top_db, self.dct, features)
        return features

    def window_summaries(self, values: np.ndarray, log_mel: np.ndarray, firsts: np.ndarray,
                         window_frames: int) -> np.ndarray:
        """The 26 features of windows over shared per-frame values: window i is frames firsts[i] .. + window_frames
        of values (F, 6) and log_mel (F, n_mels) from frame_values -> (m, 26) float32."""
        if self.backend == "numba":
            out = np.empty((len(firsts), 6 + self.params.n_mfcc), dtype=np.float64)
            kernels.windows_summary(values, log_mel, np.asarray(firsts, dtype=np.int64), window_frames,
                                    self.params.top_db, self.dct, out)
            return out.astype(np.float32)
        windowed = sliding_window_view(values, window_frames, axis=0)[firsts]  # (m, 6, window_frames)
        windowed_log_mel = sliding_window_view(log_mel, window_frames, axis=0)[firsts]  # (m, n_mels, window_frames)
        mfcc = self.mfcc_from_log_mel(windowed_log_mel.transpose(0, 2, 1))  # (m, n_mfcc)
        return np.concatenate([windowed.mean(axis=2), mfcc], axis=1).astype(np.float32)

    def frame_values(self, x: np.ndarray, pad_left: int, n_frames: int) -> tuple[np.ndarray, np.ndarray]:
        """Per-frame values of n_frames frames of x every stft_hop_samples, the first starting at sample -pad_left:
        (T, 6) float64 [mean normalized chroma, RMS, centroid, bandwidth, rolloff (Hz), ZCR] and (T, n_mels) log-mel
        in dB. Outside x the STFT and RMS see zeros and the ZCR sees the edge samples, as librosa's centred frames."""
        p = self.params
        x = np.ascontiguousarray(x, dtype=np.float32)
        values = np.empty((n_frames, 6), dtype=np.float64)
        if self.backend == "numba":
            rms = np.empty(n_frames, dtype=np.float64)
            spectral = np.empty((n_frames, 4), dtype=np.float64)
            mel_power = np.empty((n_frames, p.n_mels), dtype=np.float32)
            # FFT_FRAMES frames at a time, so frames and spectrum stay in the core's cache
            frames = np.empty((min(n_frames, FFT_FRAMES), p.n_fft), dtype=np.float32)
            for first in range(0, n_frames, FFT_FRAMES):
                last = min(first + FFT_FRAMES, n_frames)
                block = frames[: last - first]
                kernels.frame_window_rms(x, self.window, p.stft_hop_samples, pad_left - first * p.stft_hop_samples,
                                         block, rms[first:last])
                spectrum = scipy.fft.rfft(block, axis=-1, overwrite_x=True)  # (frames, n_bins) complex64
                kernels.spectral_values(spectrum.view(np.float32), self.freqs_khz, self.mel_start, self.mel_stop,
                                        self.mel_offset, self.mel_weights, self.chroma_bank, p.rolloff_percent,
                                        _ROLLOFF_BLOCK, spectral[first:last], mel_power[first:last])
            zcr = np.empty(n_frames, dtype=np.float64)
            kernels.frame_zcr(x, p.stft_hop_samples, pad_left, p.n_fft, _ZCR_THRESHOLD, zcr)
            values[:, 0], values[:, 1], values[:, 2:4], values[:, 5] = spectral[:, 0], rms, spectral[:, 1:3], zcr
            values[:, 4] = self.freqs_hz[spectral[:, 3].astype(np.int64)]
            log_mel = np.log(np.maximum(mel_power, _AMIN_POWER)) * np.float32(10.0 / np.log(10.0))
            return values, log_mel
        span = (n_frames - 1) * p.stft_hop_samples + p.n_fft
        right = max(0, span - pad_left - len(x))
        zero_padded = np.pad(x, (pad_left, right))[:span]
        frames = sliding_window_view(zero_padded, p.n_fft)[:: p.stft_hop_samples]  # (T, n_fft)
        spectral, log_mel = self.spectral_frame_values(frames[None])
        values[:, [0, 2, 3, 4]] = spectral[0]
        values[:, 1] = np.sqrt(np.einsum("tf,tf->t", frames, frames).astype(np.float64) / p.n_fft)
        edge_padded = np.pad(x, (pad_left, right), mode="edge")[:span]
        negative = sliding_window_view(edge_padded < -_ZCR_THRESHOLD, p.n_fft)[:: p.stft_hop_samples]
        values[:, 5] = np.count_nonzero(negative[:, 1:] != negative[:, :-1], axis=1) / p.n_fft
        return values, log_mel[0]

    def spectral_frame_values(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(n, T, n_fft) raw frames -> per-frame (n, T, 4) [mean normalized chroma, centroid, bandwidth, rolloff in Hz]
        and (n, T, n_mels) log-mel in dB; every window feature but RMS, ZCR and the MFCC floor is a frame mean of these."""
        p = self.params
        spectrum = scipy.fft.rfft(frames * self.window, axis=-1)  # (n, T, n_bins) complex64
        mag = np.abs(spectrum)  # (n, T, n_bins)
        banks = np.square(mag) @ self.power_bank  # (n, T, n_mels + n_chroma)
        mag_sums = mag @ self.magnitude_bank  # (n, T, 3 + n_blocks)
        chroma = banks[..., p.n_mels :]
        chroma_max = chroma.max(axis=-1, keepdims=True)
        chroma = chroma / np.where(chroma_max < np.finfo(np.float32).tiny, 1.0, chroma_max)
        centroid, bandwidth = self._centroid_bandwidth(mag_sums[..., :3])
        spectral = np.stack([chroma.mean(axis=-1), centroid, bandwidth, self._rolloff(mag, mag_sums[..., 3:])], axis=-1)
        log_mel = np.log(np.maximum(banks[..., : p.n_mels], _AMIN_POWER)) * np.float32(10.0 / np.log(10.0))
        return spectral, log_mel

    def mfcc_from_log_mel(self, log_mel: np.ndarray) -> np.ndarray:
        """(n, T, n_mels) log-mel dB -> (n, n_mfcc) mean MFCCs: floor at the window's max - top_db, as librosa.

        The DCT is linear, so it is applied once to the mean log-mel."""
        floor = log_mel.max(axis=(1, 2), keepdims=True) - self.params.top_db
        return np.maximum(log_mel, floor).mean(axis=1) @ self.dct  # (n, n_mfcc)

    @staticmethod
    def _centroid_bandwidth(moments: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-frame magnitude-weighted centroid and spread (Hz) from sums of |X|, |X| f, |X| f^2 (f in kHz)."""
        moments = moments.astype(np.float64)  # (n, T, 3)
        total = moments[..., 0]
        safe = np.where(total < np.finfo(np.float32).tiny, 1.0, total)
        centroid_khz = moments[..., 1] / safe  # (n, T)
        spread = np.maximum(moments[..., 2] / safe - centroid_khz**2, 0.0)
        spread = np.where(total < np.finfo(np.float32).tiny, 0.0, spread)
        return 1e3 * centroid_khz, 1e3 * np.sqrt(spread)

    def _rolloff(self, mag: np.ndarray, block_cumsums: np.ndarray) -> np.ndarray:
        """Per-frame lowest frequency (Hz) below which rolloff_percent of the magnitude lies."""
        n, n_frames, n_bins = mag.shape
        threshold = self.params.rolloff_percent * block_cumsums[..., -1:]  # (n, T, 1)
        block = np.argmax(block_cumsums >= threshold, axis=-1)  # (n, T) first block that reaches it
        before = np.where(block > 0, np.take_along_axis(block_cumsums, np.maximum(block - 1, 0)[..., None], -1)[..., 0], 0.0)
        offsets = block[..., None] * _ROLLOFF_BLOCK + np.arange(_ROLLOFF_BLOCK)  # (n, T, block)
        inside = np.take_along_axis(mag, np.minimum(offsets, n_bins - 1), axis=-1)  # (n, T, block)
        inside = np.where(offsets < n_bins, inside, 0.0)
        reached = before[..., None] + np.cumsum(inside, axis=-1) >= threshold
        index = np.minimum(offsets[..., 0] + np.argmax(reached, axis=-1), n_bins - 1)  # (n, T)
        return self.freqs_hz[index]

    def _frame_sums(self, per_sample: np.ndarray, n_frames: int) -> np.ndarray:
        """Sums of a per-sample value over each n_fft frame at stft_hop_samples: (n, samples') -> (n, T)."""
        p = self.params
        hop, width = p.stft_hop_samples, p.n_fft
        if width % hop == 0:
            # frames are whole runs of hop-sized blocks: sum blocks once, then add width // hop neighbours
            n_blocks = n_frames - 1 + width // hop
            blocks = per_sample[:, : n_blocks * hop].reshape(len(per_sample), n_blocks, hop).sum(axis=2, dtype=np.float64)
            return sum(blocks[:, k : k + n_frames] for k in range(width // hop))
        prefix = np.concatenate([np.zeros((len(per_sample), 1)), np.cumsum(per_sample, axis=1)], axis=1)
        starts = np.arange(n_frames) * hop
        return prefix[:, starts + width] - prefix[:, starts]

    def _rms(self, windows: np.ndarray, n_frames: int) -> np.ndarray:
        """Frame mean of RMS over zero-padded frames of n_fft samples."""
        half = self.params.n_fft // 2
        squared = np.zeros((len(windows), windows.shape[1] + 2 * half + self.params.n_fft), np.float32)
        np.square(windows, out=squared[:, half : half + windows.shape[1]])  # float32 squares, float64 block sums
        energy = self._frame_sums(squared, n_frames)  # (n, T)
        return np.sqrt(energy / self.params.n_fft).mean(axis=1)

    def _zcr(self, windows: np.ndarray, n_frames: int) -> np.ndarray:
        """Frame mean of the zero-crossing rate over edge-padded frames, as librosa.feature.zero_crossing_rate."""
        n_fft = self.params.n_fft
        half = n_fft // 2
        padded = np.pad(windows, ((0, 0), (half, half)), mode="edge")
        # librosa zeroes |x| <= threshold (signbit False), so "negative" means x < -threshold
        negative = padded < -_ZCR_THRESHOLD
        changes = np.zeros((len(padded), padded.shape[1] + n_fft), dtype=np.uint8)
        changes[:, 1 : padded.shape[1]] = negative[:, 1:] != negative[:, :-1]
        starts = np.arange(n_frames) * self.params.stft_hop_samples
        # a frame counts changes at its positions 1..n_fft-1 (librosa pads position 0 with False)
        counts = self._frame_sums(changes, n_frames) - changes[:, starts]
        return (counts / n_fft).mean(axis=1)


@functools.lru_cache(maxsize=8)
def _cached_extractor(params: AudioParams, backend: str) -> FeatureExtractor:
    extractor = FeatureExtractor(params, backend)
    if backend == "numba":  # compile (or load from numba's disk cache) now, not inside the first clip's timing
        extractor(np.zeros((1, params.n_fft), dtype=np.float32))
    return extractor


def extractor_for(params: AudioParams, backend: str | None = None) -> FeatureExtractor:
    """The shared extractor for these settings and backend (default: resolve_backend()); filter banks built and
    kernels compiled once per process (a server calls this before it forks its workers)."""
    return _cached_extractor(params, resolve_backend(backend))


def compute_features(windows: np.ndarray, params: AudioParams, batch_size: int = 16, workers: int = 1) -> np.ndarray:
    """(n, samples) or (samples,) audio at params.sample_rate_hz -> (n, 26) float32, in memory-bounded batches.

    workers > 1 runs batches on that many threads: the FFT, the GEMMs and the large ufuncs release the GIL."""
    extractor = extractor_for(params)
    windows = np.asarray(windows, dtype=np.float32)
    if windows.ndim == 1:
        windows = windows[None, :]
    batches = [windows[i : i + batch_size] for i in range(0, len(windows), batch_size)]  # each (<= batch_size, samples)
    if len(batches) <= 1:
        return extractor(windows)
    if workers <= 1:
        return np.concatenate([extractor(batch) for batch in batches])
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        return np.concatenate(list(pool.map(extractor, batches)))
