"""Per-window instrument labels: which instruments sound for at least min_presence_seconds in each window."""

from __future__ import annotations

import numpy as np

from instrument_id.instruments import NUM_INSTRUMENTS
from instrument_id.params import AudioParams
from train.musicnet import Labels

# float slack in seconds when comparing overlap against min_presence_seconds; far below one sample at 44.1 kHz
PRESENCE_TOLERANCE_SECONDS = 1e-7


def n_windows_for(n_samples: int, params: AudioParams) -> int:
    """How many windows instrument_id.audio.frame_windows cuts from n_samples at params.sample_rate_hz."""
    size, hop = params.window_samples, params.hop_samples
    return 1 if n_samples < size else 1 + (n_samples - size) // hop


def window_start_seconds(n_windows: int, params: AudioParams) -> np.ndarray:
    """(n_windows,) float64 start of window k, k * hop_samples / sample_rate_hz, as frame_windows cuts them."""
    return np.arange(n_windows, dtype=np.float64) * params.hop_samples / params.sample_rate_hz


def merge_intervals(start: np.ndarray, end: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Union of [start, end) intervals -> sorted, disjoint (starts, ends); touching intervals join."""
    order = np.argsort(start, kind="stable")
    start, end = np.asarray(start, dtype=np.float64)[order], np.asarray(end, dtype=np.float64)[order]
    if start.size == 0:
        return start, end
    reach = np.maximum.accumulate(end)  # (n,) furthest end seen so far
    opens = np.empty(start.size, dtype=bool)  # (n,) True where an interval starts a new merged run
    opens[0] = True
    opens[1:] = start[1:] > reach[:-1]
    first = np.flatnonzero(opens)
    last = np.r_[first[1:] - 1, start.size - 1]
    return start[first], reach[last]


def covered_seconds(starts: np.ndarray, ends: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Covered length of (-inf, t] by sorted disjoint intervals, for each t; (m,) -> (m,)."""
    if starts.size == 0:
        return np.zeros(np.shape(t), dtype=np.float64)
    before = np.concatenate([[0.0], np.cumsum(ends - starts)])  # (k+1,) covered length of the first j intervals
    j = np.searchsorted(starts, t, side="right")  # intervals starting at or before t; all but the last end before t
    partial = np.where(j > 0, np.minimum(t, ends[np.maximum(j - 1, 0)]) - starts[np.maximum(j - 1, 0)], 0.0)
    return before[np.maximum(j - 1, 0)] + np.maximum(partial, 0.0)


def window_labels(labels: Labels, n_windows: int, params: AudioParams) -> np.ndarray:
    """-> (n_windows, 11) uint8: 1 where the instrument's notes (merged) cover >= min_presence_seconds of the window."""
    window_start = window_start_seconds(n_windows, params)  # (n_windows,)
    window_end = window_start + params.window_samples / params.sample_rate_hz
    note_start = labels.start_sample / labels.sample_rate_hz  # (n_notes,) seconds
    note_end = labels.end_sample / labels.sample_rate_hz
    classes = labels.class_index
    out = np.zeros((n_windows, NUM_INSTRUMENTS), dtype=np.uint8)
    for index in np.unique(classes):  # at most 11 passes, each vectorized over notes and windows
        mine = classes == index
        starts, ends = merge_intervals(note_start[mine], note_end[mine])
        overlap = covered_seconds(starts, ends, window_end) - covered_seconds(starts, ends, window_start)
        out[:, index] = overlap >= params.min_presence_seconds - PRESENCE_TOLERANCE_SECONDS
    return out
