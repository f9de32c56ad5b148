"""Compiled per-frame kernels (numba) behind the fast path of instrument_id.features.

The numpy path in features.py computes the same values with one FFT and two GEMMs over the whole batch; these kernels
replace the GEMMs with loops that touch only the mel filters' non-zero bins, find the rolloff bin block by block, and
fuse framing, windowing, RMS and the zero-crossing count into single passes over the audio. numba is optional: the edge
install has no compiler, so `AVAILABLE` is False there and features.py keeps its numpy path. tests/test_features.py
holds both paths to librosa and to each other.

fastmath allows reordering sums (so the loops vectorize) and fused multiply-adds; it makes no assumption about NaN or
infinity (the extractor refuses non-finite audio before any kernel runs).
"""

from __future__ import annotations

import numpy as np

try:
    import numba
except ImportError:  # the edge install: features.py uses its numpy path
    numba = None

AVAILABLE = numba is not None
_FASTMATH = {"reassoc", "contract", "nsz", "arcp"}
_TINY32 = float(np.finfo(np.float32).tiny)


def _jit(function):
    """Compile with the GIL released while a kernel runs and cached on disk (no compile per process)."""
    if numba is None:
        return function
    return numba.njit(nogil=True, cache=True, fastmath=_FASTMATH)(function)


@_jit
def frame_window_rms(x, window, hop, pad_left, frames_out, rms_out):
    """Cut x into frames_out.shape[0] frames of len(window) samples every hop, the first starting at -pad_left
    (zero padding outside x), write each frame times the window into frames_out, and each frame's RMS into rms_out.

    Loops here run from 0 over slices: numba then knows no index is negative, drops its wraparound checks and the
    loops vectorize (about 10x faster than indexing x[start + j] directly)."""
    n = x.shape[0]
    n_frames, n_fft = frames_out.shape
    for t in range(n_frames):
        start = t * hop - pad_left
        lo = min(max(0, -start), n_fft)  # frame positions lo..hi-1 hold samples of x
        hi = max(min(n_fft, n - start), lo)
        row = frames_out[t]
        row[:lo] = 0.0
        row[hi:] = 0.0
        source = x[start + lo : start + hi]
        weights = window[lo:hi]
        target = row[lo:hi]
        squares = 0.0
        for j in range(source.shape[0]):
            v = source[j]
            squares += np.float64(v) * np.float64(v)
            target[j] = v * weights[j]
        rms_out[t] = np.sqrt(squares / n_fft)


@_jit
def frame_zcr(x, hop, pad_left, n_fft, threshold, zcr_out):
    """Per-frame zero-crossing rate as librosa.feature.zero_crossing_rate: frames as in frame_window_rms but padded
    with the edge samples; a frame counts sign changes at its positions 1..n_fft-1 (|v| <= threshold counts as
    positive). Edge padding repeats x[0] and x[-1], so only changes between two samples of x inside the frame count."""
    n = x.shape[0]
    for t in range(zcr_out.shape[0]):
        start = t * hop - pad_left
        lo = max(start + 1, 1)  # changes between x[i - 1] and x[i] for lo <= i <= hi
        hi = min(start + n_fft - 1, n - 1)
        count = 0
        if hi >= lo:
            previous = x[lo - 1 : hi]
            current = x[lo : hi + 1]
            for j in range(current.shape[0]):
                count += (current[j] < -threshold) != (previous[j] < -threshold)
        zcr_out[t] = count / n_fft


@_jit
def spectral_values(spectrum, freqs_khz, mel_start, mel_stop, mel_offset, mel_weights, chroma_bank, rolloff_percent,
                    rolloff_block, values_out, mel_out):
    """spectrum: (T, 2 * n_bins) float32, the rfft's complex64 output viewed as (re, im) pairs. Per frame writes
    values_out[t] = (mean max-normalized chroma, centroid Hz, bandwidth Hz, rolloff bin index) and the mel power
    mel_out[t] (the log is taken by the caller, where numpy's vectorized log is faster than a scalar one here)."""
    n_frames = spectrum.shape[0]
    n_bins = spectrum.shape[1] // 2
    n_mels = mel_start.shape[0]
    n_chroma = chroma_bank.shape[0]
    n_blocks = (n_bins + rolloff_block - 1) // rolloff_block
    power = np.empty(n_bins, np.float32)
    mag = np.empty(n_bins, np.float32)
    block_sums = np.empty(n_blocks, np.float32)
    for t in range(n_frames):
        pairs = spectrum[t]
        for k in range(n_bins):
            re = pairs[2 * k]
            im = pairs[2 * k + 1]
            p = re * re + im * im
            power[k] = p
            mag[k] = np.sqrt(p)
        # centroid and bandwidth of the L1-normalized magnitude, two passes in float64 as librosa's formula
        s0 = 0.0
        s1 = 0.0
        for k in range(n_bins):
            s0 += mag[k]
            s1 += mag[k] * freqs_khz[k]
        centroid_khz = 0.0
        bandwidth_khz = 0.0
        if s0 >= _TINY32:
            centroid_khz = s1 / s0
            s2 = 0.0
            for k in range(n_bins):
                d = freqs_khz[k] - centroid_khz
                s2 += mag[k] * d * d
            bandwidth_khz = np.sqrt(s2 / s0)
        # rolloff: the first bin where the running magnitude sum reaches rolloff_percent of the total
        total = np.float32(0.0)
        for b in range(n_blocks):
            block = mag[b * rolloff_block : min((b + 1) * rolloff_block, n_bins)]
            block_sum = np.float32(0.0)
            for j in range(block.shape[0]):  # 0-based loops over slices: no negative-index checks, so SIMD
                block_sum += block[j]
            block_sums[b] = block_sum
            total += block_sum
        threshold = np.float32(rolloff_percent) * total
        running = np.float32(0.0)
        rolloff_bin = n_bins - 1
        for b in range(n_blocks):
            if running + block_sums[b] >= threshold:
                block = mag[b * rolloff_block : min((b + 1) * rolloff_block, n_bins)]
                for j in range(block.shape[0]):
                    running += block[j]
                    if running >= threshold:
                        rolloff_bin = b * rolloff_block + j
                        break
                break
            running += block_sums[b]
        # chroma from the power spectrum, normalized by its frame maximum
        chroma_sum = np.float32(0.0)
        chroma_max = np.float32(0.0)
        for c in range(n_chroma):
            acc = np.float32(0.0)
            for k in range(n_bins):
                acc += chroma_bank[c, k] * power[k]
            chroma_sum += acc
            chroma_max = max(chroma_max, acc)
        if chroma_max < _TINY32:
            chroma_max = np.float32(1.0)
        # mel power: each triangular filter over its non-zero bins only
        for m in range(n_mels):
            weights = mel_weights[mel_offset[m] : mel_offset[m] + mel_stop[m] - mel_start[m]]
            band = power[mel_start[m] : mel_stop[m]]
            acc = np.float32(0.0)
            for j in range(band.shape[0]):
                acc += weights[j] * band[j]
            mel_out[t, m] = acc
        values_out[t, 0] = chroma_sum / chroma_max / n_chroma
        values_out[t, 1] = 1e3 * centroid_khz
        values_out[t, 2] = 1e3 * bandwidth_khz
        values_out[t, 3] = rolloff_bin


@_jit
def window_summary(values, log_mel, top_db, dct, out):
    """One window's 26 features from its frames: out[:6] = frame means of values (T, 6); out[6:] = the DCT of the
    frame-mean log-mel (T, n_mels), floored at its maximum - top_db first, as librosa.power_to_db."""
    n_frames, n_values = values.shape
    n_mels = log_mel.shape[1]
    for i in range(n_values):
        total = 0.0
        for t in range(n_frames):
            total += values[t, i]
        out[i] = total / n_frames
    peak = log_mel[0, 0]
    for t in range(n_frames):
        row = log_mel[t]
        for m in range(n_mels):
            peak = max(peak, row[m])
    floor = peak - top_db
    mean_log_mel = np.zeros(n_mels, np.float64)
    for t in range(n_frames):
        row = log_mel[t]
        for m in range(n_mels):
            mean_log_mel[m] += max(row[m], floor)
    for k in range(dct.shape[1]):
        total = 0.0
        for m in range(n_mels):
            total += mean_log_mel[m] * dct[m, k]
        out[n_values + k] = total / n_frames


@_jit
def windows_summary(values, log_mel, firsts, window_frames, top_db, dct, out):
    """window_summary for many windows over shared frames: window i spans frames firsts[i] .. + window_frames."""
    for i in range(firsts.shape[0]):
        first = firsts[i]
        window_summary(values[first : first + window_frames], log_mel[first : first + window_frames], top_db, dct, out[i])
