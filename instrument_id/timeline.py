"""Long and live audio: blocks in, a per-window timeline of instrument probabilities and decisions out.

Audio arrives in blocks of any size at any sample rate; it is mixed to mono, resampled with a streaming soxr
resampler (bit-identical to resampling the whole signal at once) and fed to WindowFeatureStream, so each STFT
frame is analysed once and memory stays bounded on a recording of any length. Windows are scored in batches
(a live stream scores each window as soon as it completes). A scorer is model_zoo's Model interface (or anything
with the same calls). A model of the 26 features shares STFT frames between overlapping windows; any other (an
embedding network, a raw-audio graph) gets each window's samples (WindowSampleStream) through predict_windows.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, BinaryIO, Callable, Iterable, Iterator, Protocol

import numpy as np
import soundfile as sf
import soxr

from instrument_id.audio import to_mono
from instrument_id.errors import InstrumentIdError
from instrument_id.feature_sets import SEED26, FeatureSetSpec
from instrument_id.instruments import NUM_INSTRUMENTS, column_names
from instrument_id.params import AudioParams
from instrument_id.pipeline import FeaturePipeline
from instrument_id.streaming import WindowFeatureStream, WindowSampleStream

BATCH_WINDOWS = 256  # windows scored per model call on a file: amortizes the call, bounds the feature buffer
BLOCK_FRAMES = 1 << 18  # frames decoded per block (~6 s at 44.1 kHz, 2 MB stereo): the STFT runs in big batches


class Scorer(Protocol):
    """What analysis needs of a model (model_zoo.model.Model answers it)."""

    params: AudioParams
    feature_set: FeatureSetSpec
    pipeline: FeaturePipeline | None
    takes_audio: bool

    def predict_proba_features(self, X: np.ndarray) -> np.ndarray:
        """(n, 26) features -> (n, 11) probabilities."""

    def predict_windows(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(n, window_samples) audio -> ((n, 11) probabilities, (n, 11) bool decisions)."""


@dataclass(frozen=True)
class ScoredWindows:
    """Windows scored together: start times, probabilities and decisions."""

    starts: np.ndarray  # (n,) float64 seconds
    probabilities: np.ndarray  # (n, 11) float32
    decisions: np.ndarray  # (n, 11) bool

    def __len__(self) -> int:
        return len(self.starts)


def _empty_scored() -> ScoredWindows:
    return ScoredWindows(np.zeros(0), np.zeros((0, NUM_INSTRUMENTS), np.float32), np.zeros((0, NUM_INSTRUMENTS), bool))


class StreamAnalyzer:
    """Push mono audio at rate_hz in blocks; get scored windows once batch_windows of them are complete."""

    def __init__(self, scorer: Scorer, params: AudioParams, rate_hz: int, hop_seconds: float | None = None,
                 batch_windows: int = BATCH_WINDOWS):
        if getattr(scorer, "params", params) != params:
            raise InstrumentIdError("the scorer was trained with other audio settings than the ones given")
        if rate_hz <= 0:
            raise InstrumentIdError(f"invalid sample rate {rate_hz} Hz")
        if batch_windows < 1:
            raise InstrumentIdError(f"batch_windows must be at least 1, got {batch_windows}")
        self.scorer, self.params, self.rate_hz, self.batch_windows = scorer, params, int(rate_hz), batch_windows
        # frames shared between overlapping windows for the 26 means; whole windows for anything else
        self.shares_frames = scorer.feature_set == SEED26 and not getattr(scorer, "takes_audio", False)
        self.features = (WindowFeatureStream(params, hop_seconds) if self.shares_frames
                         else WindowSampleStream(params, hop_seconds))
        self._resampler = None
        if self.rate_hz != params.sample_rate_hz:
            self._resampler = soxr.ResampleStream(self.rate_hz, params.sample_rate_hz, 1, dtype="float32", quality="HQ")
        self._starts: list[float] = []
        self._rows: list[np.ndarray] = []
        self.samples_in = 0  # at rate_hz

    @property
    def hop_seconds(self) -> float:
        """The hop actually used (a whole number of STFT frames)."""
        return self.features.hop_seconds

    @property
    def seconds_in(self) -> float:
        """Audio received so far, in seconds."""
        return self.samples_in / self.rate_hz

    def push(self, samples: np.ndarray) -> ScoredWindows:
        """Add (n,) mono audio at rate_hz; return the windows scored now (none until a batch is full)."""
        samples = np.asarray(samples, dtype=np.float32).reshape(-1)
        self.samples_in += len(samples)
        if self._resampler is not None:
            samples = self._resampler.resample_chunk(samples)  # (n',) at params.sample_rate_hz, delayed by the filter
        self._collect(self.features.push(samples))
        return self._score(force=False)

    def finish(self) -> ScoredWindows:
        """End of audio: flush the resampler and the feature stream, score what is left."""
        if self._resampler is not None:
            self._collect(self.features.push(self._resampler.resample_chunk(np.zeros(0, np.float32), last=True)))
        if self.samples_in:
            self._collect(self.features.finish())
        return self._score(force=True)

    def _collect(self, windows: list[tuple[float, np.ndarray]]) -> None:
        for start, row in windows:
            self._starts.append(start)
            self._rows.append(row)

    def _score(self, force: bool) -> ScoredWindows:
        if not self._rows or (len(self._rows) < self.batch_windows and not force):
            return _empty_scored()
        X = np.stack(self._rows)  # (n, 26) features, or (n, window_samples) audio
        if self.shares_frames:
            probabilities = np.asarray(self.scorer.predict_proba_features(X), dtype=np.float32)  # (n, 11)
            decisions = self.scorer.pipeline.decide(probabilities)
        else:
            probabilities, decisions = self.scorer.predict_windows(X)  # (n, 11) each
            probabilities = np.asarray(probabilities, dtype=np.float32)
        if probabilities.shape != (len(X), NUM_INSTRUMENTS) or not np.isfinite(probabilities).all():
            raise InstrumentIdError(f"the model gave {probabilities.shape} probabilities (or non-finite ones) "
                                    f"for {len(X)} windows")
        scored = ScoredWindows(np.array(self._starts), probabilities, np.asarray(decisions, dtype=bool))
        self._starts, self._rows = [], []
        return scored


def union_spans(starts: np.ndarray, ends: np.ndarray) -> list[tuple[float, float]]:
    """Union of [start, end) spans sorted by start -> disjoint (start, end) pairs; touching spans join."""
    spans: list[tuple[float, float]] = []
    for start, end in zip(np.asarray(starts, float).tolist(), np.asarray(ends, float).tolist()):
        if spans and start <= spans[-1][1]:
            spans[-1] = (spans[-1][0], max(spans[-1][1], end))
        else:
            spans.append((start, end))
    return spans


@dataclass(frozen=True)
class Timeline:
    """Every window of a recording: its span, probabilities and decisions, plus the recording's length."""

    starts: np.ndarray  # (n,) float64 seconds
    ends: np.ndarray  # (n,) float64 seconds, start + window, cut at the end of the audio
    probabilities: np.ndarray  # (n, 11) float32
    decisions: np.ndarray  # (n, 11) bool
    duration_seconds: float
    hop_seconds: float
    window_seconds: float

    def __len__(self) -> int:
        return len(self.starts)

    @property
    def padded(self) -> bool:
        """True when the audio was shorter than one window and was zero-padded to one."""
        return self.duration_seconds < self.window_seconds

    def segments(self, instrument: int) -> list[tuple[float, float]]:
        """Disjoint (start, end) seconds where the instrument is decided present: the union of its windows."""
        mine = self.decisions[:, instrument]
        return union_spans(self.starts[mine], self.ends[mine])

    def summary(self) -> dict[str, dict[str, Any]]:
        """Per instrument column: seconds present, first and last second, windows decided, highest probability."""
        out = {}
        for j, name in enumerate(column_names()):
            spans = self.segments(j)
            out[name] = {
                "present": bool(spans),
                "seconds": round(sum(end - start for start, end in spans), 3),
                "first_seconds": round(spans[0][0], 3) if spans else None,
                "last_seconds": round(spans[-1][1], 3) if spans else None,
                "windows": int(self.decisions[:, j].sum()),
                "max_probability": round(float(self.probabilities[:, j].max(initial=0.0)), 6),
                "segments": [[round(start, 3), round(end, 3)] for start, end in spans],
            }
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready timeline: settings, per-instrument summary and the window rows (11 values each, class order)."""
        return {
            "duration_seconds": round(self.duration_seconds, 6),
            "hop_seconds": self.hop_seconds,
            "window_seconds": self.window_seconds,
            "n_windows": len(self),
            "padded": self.padded,
            "labels": column_names(),
            "summary": self.summary(),
            "windows": {
                "start_seconds": np.round(self.starts, 6).tolist(),
                "end_seconds": np.round(self.ends, 6).tolist(),
                "probabilities": np.round(self.probabilities.astype(np.float64), 6).tolist(),
                "decisions": self.decisions.astype(int).tolist(),
            },
        }


def analyze_signal(blocks: Iterable[np.ndarray], rate_hz: int, scorer: Scorer, params: AudioParams,
                   hop_seconds: float | None = None, *, batch_windows: int = BATCH_WINDOWS,
                   on_block: Callable[[np.ndarray], None] | None = None) -> Timeline:
    """Blocks of (n,) or (n, channels) audio at rate_hz -> the Timeline; on_block sees each mono block (progress,
    waveform envelope). Audio shorter than one window gives one zero-padded window."""
    analyzer = StreamAnalyzer(scorer, params, rate_hz, hop_seconds, batch_windows)
    parts = []
    for block in blocks:
        mono = to_mono(block)  # (n,)
        if not np.isfinite(mono).all():
            at = analyzer.seconds_in
            raise InstrumentIdError(f"audio contains NaN or infinite samples (in the block at {at:.3f} s)")
        parts.append(analyzer.push(mono))
        if on_block is not None:
            on_block(mono)
    if analyzer.samples_in == 0:
        raise InstrumentIdError("no audio: 0 samples")
    parts.append(analyzer.finish())
    parts = [p for p in parts if len(p)]
    starts = np.concatenate([p.starts for p in parts])
    duration_seconds = analyzer.seconds_in
    return Timeline(
        starts=starts,
        ends=np.minimum(starts + params.window_seconds, max(duration_seconds, starts[0])),
        probabilities=np.concatenate([p.probabilities for p in parts]),
        decisions=np.concatenate([p.decisions for p in parts]),
        duration_seconds=duration_seconds, hop_seconds=analyzer.hop_seconds, window_seconds=params.window_seconds,
    )


@dataclass
class AudioBlocks:
    """An open audio file read block by block: rate, channels, length, and an iterator of (n, channels) float32."""

    name: str
    rate_hz: int
    channels: int
    frames: int
    format: str
    _file: sf.SoundFile
    block_frames: int = BLOCK_FRAMES

    @property
    def duration_seconds(self) -> float:
        """Length stated by the file's header."""
        return self.frames / self.rate_hz

    def close(self) -> None:
        """Close the file without reading it (reading it to the end closes it too)."""
        self._file.close()

    def __iter__(self) -> Iterator[np.ndarray]:
        try:
            for block in self._file.blocks(blocksize=self.block_frames, dtype="float32", always_2d=True):
                yield block  # (n, channels)
        except (sf.LibsndfileError, RuntimeError) as exc:
            raise InstrumentIdError(f"{self.name}: decoding failed part-way ({exc})") from None
        finally:
            self._file.close()


def open_audio_blocks(source: str | os.PathLike | BinaryIO, name: str | None = None,
                      block_frames: int = BLOCK_FRAMES) -> AudioBlocks:
    """Open any file soundfile reads for block-wise decoding; missing, unreadable and empty files raise, naming it."""
    label = name or (str(source) if isinstance(source, (str, os.PathLike)) else "audio")
    if isinstance(source, (str, os.PathLike)) and not os.path.isfile(source):
        raise InstrumentIdError(f"{label}: file not found")
    try:
        handle = sf.SoundFile(source)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        raise InstrumentIdError(f"{label}: not a readable audio file ({exc})") from None
    if handle.frames == 0:
        handle.close()
        raise InstrumentIdError(f"{label}: the file holds 0 samples")
    return AudioBlocks(name=label, rate_hz=int(handle.samplerate), channels=int(handle.channels), frames=int(handle.frames),
                       format=f"{handle.format}/{handle.subtype}", _file=handle, block_frames=block_frames)


class WaveformEnvelope:
    """Min and max per column of a signal of unknown length in bounded memory: columns double in width
    (pairs merge) whenever there are 2 * max_columns of them."""

    def __init__(self, rate_hz: int, max_columns: int = 1000, first_column_samples: int = 64):
        self.rate_hz, self.max_columns, self.column_samples = rate_hz, max_columns, first_column_samples
        self._mins = np.zeros(0, np.float32)
        self._maxs = np.zeros(0, np.float32)
        self._partial: tuple[float, float, int] | None = None  # (min, max, samples) of the unfinished column

    def add(self, samples: np.ndarray) -> None:
        """Take (n,) mono samples."""
        samples = np.asarray(samples, dtype=np.float32).reshape(-1)
        while len(samples):
            if self._partial is not None:  # samples first complete the unfinished column (a merge may have left one)
                low, high, count = self._partial
                head, samples = samples[: self.column_samples - count], samples[self.column_samples - count :]
                low, high, count = min(low, float(head.min())), max(high, float(head.max())), count + len(head)
                self._partial = (low, high, count) if count < self.column_samples else None
                if self._partial is None:
                    self._append(np.array([low], np.float32), np.array([high], np.float32))
                continue
            n_full = len(samples) // self.column_samples
            if n_full == 0:
                self._partial = (float(samples.min()), float(samples.max()), len(samples))
                return
            columns = samples[: n_full * self.column_samples].reshape(n_full, self.column_samples)  # (n_full, width)
            samples = samples[n_full * self.column_samples :]
            self._append(columns.min(axis=1), columns.max(axis=1))

    def _append(self, mins: np.ndarray, maxs: np.ndarray) -> None:
        self._mins, self._maxs = np.concatenate([self._mins, mins]), np.concatenate([self._maxs, maxs])
        while len(self._mins) >= 2 * self.max_columns:
            if len(self._mins) % 2:  # the odd last column joins the unfinished one, which stays narrower than 2 widths
                low, high, count = self._partial or (np.inf, -np.inf, 0)
                self._partial = (min(low, float(self._mins[-1])), max(high, float(self._maxs[-1])), count + self.column_samples)
                self._mins, self._maxs = self._mins[:-1], self._maxs[:-1]
            self._mins = self._mins.reshape(-1, 2).min(axis=1)  # (k,) -> (k/2,)
            self._maxs = self._maxs.reshape(-1, 2).max(axis=1)
            self.column_samples *= 2

    def result(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """((m + 1,) column edges in seconds, (m,) minima, (m,) maxima)."""
        mins, maxs = self._mins, self._maxs
        widths = np.full(len(mins), self.column_samples, dtype=np.float64)
        if self._partial is not None:
            low, high, count = self._partial
            mins, maxs = np.append(mins, low), np.append(maxs, high)
            widths = np.append(widths, count)
        edges = np.concatenate([[0.0], np.cumsum(widths)]) / self.rate_hz
        return edges, mins.astype(np.float32), maxs.astype(np.float32)
