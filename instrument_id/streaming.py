"""Window features of a long recording or a live stream from frame-level values computed once per frame.

The 26 features are frame means (the MFCCs: a DCT of the mean log-mel floored at the window's max - top_db), so each
STFT frame is analysed once and every window that contains it reuses it, instead of recomputing a full STFT per
overlapping window. Windows start on the STFT frame grid (multiples of stft_hop_samples); a window's frames here see
the recording around it, where the per-window extractor sees zero padding, so the two differ only in the two frames
at each window edge.
"""

from __future__ import annotations

import numpy as np

from instrument_id.errors import InstrumentIdError
from instrument_id.features import extractor_for
from instrument_id.params import AudioParams

FRAMES_PER_BATCH = 1024  # STFT frames analysed per call: bounds memory (~16 MB of frames) on any file length


class WindowFeatureStream:
    """Push mono float32 audio at params.sample_rate_hz in blocks of any size; get (start_seconds, 26 features) per window."""

    def __init__(self, params: AudioParams, hop_seconds: float | None = None):
        self.params = params
        self.extractor = extractor_for(params)
        hop_seconds = params.hop_seconds if hop_seconds is None else hop_seconds
        if hop_seconds <= 0:
            raise InstrumentIdError(f"hop must be positive, got {hop_seconds} s")
        self.frame_hop = params.stft_hop_samples
        self.window_frames = params.n_frames
        self.hop_frames = max(1, int(round(hop_seconds * params.sample_rate_hz / self.frame_hop)))
        half = params.n_fft // 2
        self._pending = np.zeros(half, dtype=np.float32)  # centred STFT: frame t spans samples t*hop - half ...
        self._pending_first_frame = 0  # frame index whose span starts at _pending[0]
        self._values = np.zeros((0, 6), dtype=np.float64)  # per frame: chroma, rms, centroid, bandwidth, rolloff, zcr
        self._log_mel = np.zeros((0, params.n_mels), dtype=np.float32)
        self._values_first_frame = 0
        self._next_window = 0
        self.samples_seen = 0

    @property
    def hop_seconds(self) -> float:
        """The hop actually used: a whole number of STFT frames."""
        return self.hop_frames * self.frame_hop / self.params.sample_rate_hz

    def push(self, samples: np.ndarray) -> list[tuple[float, np.ndarray]]:
        """Add audio; return the windows completed by it, in order."""
        samples = np.asarray(samples, dtype=np.float32).reshape(-1)
        if not np.all(np.isfinite(samples)):
            raise InstrumentIdError("audio contains NaN or infinite samples")
        self.samples_seen += len(samples)
        self._pending = np.concatenate([self._pending, samples])
        self._analyse_ready_frames()
        return self._emit(final=False)

    def finish(self) -> list[tuple[float, np.ndarray]]:
        """End of audio: pad with zeros and return the remaining windows (a recording shorter than one window gives one)."""
        short_by = max(0, self.params.window_samples - self.samples_seen)  # a short clip is zero-padded to one window
        self._pending = np.concatenate([self._pending, np.zeros(short_by + self.params.n_fft, dtype=np.float32)])
        self._analyse_ready_frames()
        return self._emit(final=True)

    def _analyse_ready_frames(self) -> None:
        n_fft = self.params.n_fft
        n_ready = 0 if len(self._pending) < n_fft else 1 + (len(self._pending) - n_fft) // self.frame_hop
        for start in range(0, n_ready, FRAMES_PER_BATCH):
            count = min(FRAMES_PER_BATCH, n_ready - start)
            chunk = self._pending[start * self.frame_hop : (start + count - 1) * self.frame_hop + n_fft]
            values, log_mel = self.extractor.frame_values(chunk, 0, count)  # (count, 6), (count, n_mels)
            self._values = np.concatenate([self._values, values])
            self._log_mel = np.concatenate([self._log_mel, log_mel])
        self._pending = self._pending[n_ready * self.frame_hop :]
        self._pending_first_frame += n_ready

    def _window_count(self, final: bool) -> int:
        """Windows whose frames are all analysed; at the end, those that fit in the audio as frame_windows cuts them."""
        analysed = self._pending_first_frame
        complete = 0 if analysed < self.window_frames else 1 + (analysed - self.window_frames) // self.hop_frames
        if not final:
            return complete
        window_samples = self.params.window_samples
        hop_samples = self.hop_frames * self.frame_hop
        fitting = 1 if self.samples_seen <= window_samples else 1 + (self.samples_seen - window_samples) // hop_samples
        return min(max(fitting, 1), max(complete, 1))

    def _emit(self, final: bool) -> list[tuple[float, np.ndarray]]:
        n_windows = self._window_count(final)
        if n_windows <= self._next_window:
            return []
        indices = np.arange(self._next_window, n_windows)
        firsts = indices * self.hop_frames - self._values_first_frame  # (m,) first frame of each window
        features = self.extractor.window_summaries(self._values, self._log_mel, firsts, self.window_frames)  # (m, 26)
        starts = indices * self.hop_frames * self.frame_hop / self.params.sample_rate_hz
        self._next_window = n_windows
        keep_from = self._next_window * self.hop_frames - self._values_first_frame  # frames no later window needs
        if keep_from > 0:
            self._values, self._log_mel = self._values[keep_from:], self._log_mel[keep_from:]
            self._values_first_frame += keep_from
        return list(zip(starts.tolist(), features))


def stream_features(y: np.ndarray, params: AudioParams, hop_seconds: float | None = None,
                    block_samples: int = 1 << 20) -> tuple[np.ndarray, np.ndarray]:
    """A whole mono signal -> ((n,) window start seconds, (n, 26) features), fed in blocks as a stream would be."""
    stream = WindowFeatureStream(params, hop_seconds)
    windows = []
    for start in range(0, len(y), block_samples):
        windows += stream.push(y[start : start + block_samples])
    windows += stream.finish()
    starts = np.array([w[0] for w in windows], dtype=np.float64)
    return starts, np.stack([w[1] for w in windows]) if windows else np.zeros((0, 26), np.float32)


class WindowSampleStream:
    """Push mono float32 audio at params.sample_rate_hz in blocks of any size; get (start_seconds, window samples)
    per window, cut as frame_windows cuts the whole signal. For models that read audio windows (a raw-audio graph,
    an embedding network): each window is scored whole, so nothing is shared between overlapping windows."""

    def __init__(self, params: AudioParams, hop_seconds: float | None = None):
        self.params = params
        hop_seconds = params.hop_seconds if hop_seconds is None else hop_seconds
        if hop_seconds <= 0:
            raise InstrumentIdError(f"hop must be positive, got {hop_seconds} s")
        # on the STFT frame grid, as WindowFeatureStream: every model of one analysis scores the same windows
        frame_hop = params.stft_hop_samples
        self.hop_samples = max(1, int(round(hop_seconds * params.sample_rate_hz / frame_hop))) * frame_hop
        self._buffer = np.zeros(0, dtype=np.float32)  # samples from the next window's start on
        self._skip = 0  # samples still to drop before the next window starts (a hop longer than the window)
        self._next_window = 0
        self.samples_seen = 0

    @property
    def hop_seconds(self) -> float:
        """The hop actually used: a whole number of STFT frames."""
        return self.hop_samples / self.params.sample_rate_hz

    def push(self, samples: np.ndarray) -> list[tuple[float, np.ndarray]]:
        """Add audio; return the windows completed by it, in order."""
        samples = np.asarray(samples, dtype=np.float32).reshape(-1)
        if not np.all(np.isfinite(samples)):
            raise InstrumentIdError("audio contains NaN or infinite samples")
        self.samples_seen += len(samples)
        dropped = min(self._skip, len(samples))
        self._skip -= dropped
        self._buffer = np.concatenate([self._buffer, samples[dropped:]])
        return self._emit()

    def finish(self) -> list[tuple[float, np.ndarray]]:
        """End of audio: a recording shorter than one window is zero-padded to one; a partial last window is dropped."""
        if self.samples_seen < self.params.window_samples and self._next_window == 0:
            self._buffer = np.pad(self._buffer, (0, self.params.window_samples - len(self._buffer)))
        return self._emit()

    def _emit(self) -> list[tuple[float, np.ndarray]]:
        size, out = self.params.window_samples, []
        while len(self._buffer) >= size:
            out.append((self._next_window * self.hop_samples / self.params.sample_rate_hz, self._buffer[:size].copy()))
            self._next_window += 1
            self._skip = max(0, self.hop_samples - len(self._buffer))
            self._buffer = self._buffer[self.hop_samples:]
        return out
