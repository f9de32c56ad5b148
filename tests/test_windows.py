"""Window labels: an instrument is present where its merged notes cover >= min_presence_seconds of the window."""

from __future__ import annotations

import numpy as np
import pytest

from instrument_id.audio import frame_windows
from instrument_id.instruments import NAME_TO_INDEX, NUM_INSTRUMENTS, PROGRAM_TO_INDEX
from instrument_id.params import AudioParams
from train.musicnet import Labels, list_recordings, read_recording
from train.windows import merge_intervals, n_windows_for, window_labels

RATE_HZ = 44100
VIOLIN, CELLO, PIANO = NAME_TO_INDEX["violin"], NAME_TO_INDEX["cello"], NAME_TO_INDEX["piano"]


def labels_of(notes: list[tuple[float, float, int]]) -> Labels:
    """Labels for (start_seconds, end_seconds, program) notes, times rounded to 44.1 kHz samples."""
    table = np.array(notes, dtype=np.float64).reshape(-1, 3)
    return Labels(
        start_sample=np.rint(table[:, 0] * RATE_HZ).astype(np.int64), end_sample=np.rint(table[:, 1] * RATE_HZ).astype(np.int64),
        program=table[:, 2].astype(np.int16), note=np.full(len(table), 60, np.int16),
        line=np.arange(2, len(table) + 2, dtype=np.int32),
    )


def test_exactly_min_presence_counts_and_less_does_not():
    params = AudioParams(window_seconds=2.0, hop_seconds=2.0)
    labels = labels_of([(1.9, 2.0, 41), (3.91, 4.0, 43), (4.0, 4.1, 1)])
    y = window_labels(labels, 3, params)  # windows [0, 2), [2, 4), [4, 6)
    assert y.dtype == np.uint8 and y.shape == (3, NUM_INSTRUMENTS)
    assert y[:, VIOLIN].tolist() == [1, 0, 0]  # 0.1 s at the end of window 0
    assert y[:, CELLO].tolist() == [0, 0, 0]  # 0.09 s
    assert y[:, PIANO].tolist() == [0, 0, 1]
    assert y.sum() == 2


def test_overlapping_notes_of_one_instrument_count_once():
    params = AudioParams(window_seconds=1.0, hop_seconds=1.0)
    # three violin notes over the same 0.08 s: summed they would pass 0.1 s, their union does not
    stacked = labels_of([(0.5, 0.58, 41), (0.5, 0.58, 41), (0.52, 0.58, 41)])
    assert window_labels(stacked, 1, params)[0, VIOLIN] == 0
    # overlapping notes whose union is 0.1 s do count; other instruments never add to the violin's time
    chained = labels_of([(0.5, 0.56, 41), (0.54, 0.6, 41), (0.6, 0.65, 43), (0.7, 0.74, 1), (0.72, 0.78, 1)])
    y = window_labels(chained, 1, params)[0]
    assert y[VIOLIN] == 1 and y[CELLO] == 0 and y[PIANO] == 0


def test_note_split_across_window_edge_counts_in_each_part_only():
    params = AudioParams(window_seconds=1.0, hop_seconds=1.0)
    y = window_labels(labels_of([(0.95, 1.05, 41), (2.85, 3.15, 43)]), 4, params)
    assert y[:, VIOLIN].tolist() == [0, 0, 0, 0]  # 0.05 s on each side of 1.0 s
    assert y[:, CELLO].tolist() == [0, 0, 1, 1]  # 0.15 s before 3.0 s and 0.15 s after


def reference_labels(labels: Labels, n_windows: int, params: AudioParams) -> np.ndarray:
    """Brute force on a 44.1 kHz sample grid: mark sounding samples, count them per window."""
    hop, size = params.hop_seconds * RATE_HZ, params.window_seconds * RATE_HZ
    total = int((n_windows - 1) * hop + size) + 1
    out = np.zeros((n_windows, NUM_INSTRUMENTS), dtype=np.uint8)
    for program, index in PROGRAM_TO_INDEX.items():
        sounding = np.zeros(total, dtype=bool)
        for start, end, note_program in zip(labels.start_sample, labels.end_sample, labels.program):
            if note_program == program:
                sounding[start:end] = True
        for k in range(n_windows):
            a = int(round(k * hop))
            out[k, index] = sounding[a: a + int(round(size))].sum() >= params.min_presence_seconds * RATE_HZ
    return out


@pytest.mark.parametrize("window_seconds, hop_seconds", [(1.0, 1.0), (2.0, 1.0), (12.0, 4.0), (3.0, 0.5)])
def test_matches_brute_force_on_random_notes(window_seconds, hop_seconds):
    params = AudioParams(window_seconds=window_seconds, hop_seconds=hop_seconds)
    rng = np.random.default_rng(int(window_seconds * 10 + hop_seconds))
    start = rng.uniform(0, 30, 400)
    # many notes near 0.1 s long so the threshold is exercised, plus long ones that overlap
    duration = np.where(rng.random(400) < 0.7, rng.uniform(0.02, 0.2, 400), rng.uniform(0.2, 3.0, 400))
    programs = rng.choice([1, 7, 41, 42, 43, 44, 61, 69, 71, 72, 74], 400)
    # notes fill the first 32 s of 50 s, so long windows see both present and absent instruments
    labels = labels_of(list(zip(start, np.minimum(start + duration, 32.0), programs)))
    n_windows = n_windows_for(50 * params.sample_rate_hz, params)
    expected = reference_labels(labels, n_windows, params)
    got = window_labels(labels, n_windows, params)
    assert got.shape == (n_windows, NUM_INSTRUMENTS)
    np.testing.assert_array_equal(got, expected)
    assert 0 < got.sum() < got.size


@pytest.mark.parametrize("window_seconds", [1.0, 2.0, 12.0])
@pytest.mark.parametrize("n_seconds", [0.3, 1.0, 5.5, 13.0, 30.25])
def test_window_count_matches_frame_windows(window_seconds, n_seconds):
    params = AudioParams(window_seconds=window_seconds, hop_seconds=1.0)
    n_samples = int(n_seconds * params.sample_rate_hz)
    assert n_windows_for(n_samples, params) == len(frame_windows(np.zeros(n_samples, np.float32), params))


def test_short_recording_gives_one_padded_window_with_its_labels(make_musicnet):
    params = AudioParams(window_seconds=12.0, hop_seconds=1.0)
    root = make_musicnet([{"id": "1", "split": "train", "seconds": 5.0, "notes": [(4.9, 5.0, 41, 69), (1.0, 1.05, 43, 48)]}])
    y, labels = read_recording(list_recordings(root)[0], params)
    windows = frame_windows(y, params)
    assert windows.shape == (1, params.window_samples)
    out = window_labels(labels, len(windows), params)
    assert out[0, VIOLIN] == 1 and out[0].sum() == 1


def test_merge_intervals_joins_overlapping_and_touching():
    starts, ends = merge_intervals(np.array([5.0, 0.0, 1.0, 2.0, 7.0]), np.array([6.0, 1.0, 1.5, 3.0, 7.5]))
    assert starts.tolist() == [0.0, 2.0, 5.0, 7.0] and ends.tolist() == [1.5, 3.0, 6.0, 7.5]


@pytest.mark.parametrize("channels", [1, 2, 3, 6])
def test_to_mono_is_the_channel_mean(channels):
    from instrument_id.audio import to_mono

    data = np.random.default_rng(channels).standard_normal((4001, channels)).astype(np.float32)
    mono = to_mono(data)
    assert mono.shape == (4001,) and mono.dtype == np.float32 and mono.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(mono, data.mean(axis=1, dtype=np.float32))


@pytest.mark.parametrize("rate_hz", [8000, 44100, 48000, 96000])
def test_resample_equals_soxr_one_shot(rate_hz):
    import soxr

    from instrument_id.audio import resample

    rng = np.random.default_rng(rate_hz)
    for n in (1, 999, 88200):  # the reused stream must carry nothing from one call to the next
        y = rng.standard_normal(n).astype(np.float32)
        np.testing.assert_array_equal(resample(y, rate_hz, 22050), soxr.resample(y, rate_hz, 22050, quality="HQ"))
