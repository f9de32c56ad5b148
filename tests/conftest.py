"""Shared test fixtures: tiny corpora written in the real MusicNet layout."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import soundfile as sf

MUSICNET_RATE_HZ = 44100
LABEL_HEADER = "start_time,end_time,instrument,note,start_beat,end_beat,note_value"


def midi_to_hz(note: int) -> float:
    """Equal-tempered frequency of a MIDI note (A4 = 69 = 440 Hz)."""
    return 440.0 * 2.0 ** ((note - 69) / 12.0)


def label_csv_text(notes: list[tuple[float, float, int, int]]) -> str:
    """MusicNet label CSV text for (start_seconds, end_seconds, program, midi_note) notes, times in 44.1 kHz samples."""
    lines = [LABEL_HEADER]
    for start_s, end_s, program, note in notes:
        start, end = int(round(start_s * MUSICNET_RATE_HZ)), int(round(end_s * MUSICNET_RATE_HZ))
        lines.append(f"{start},{end},{program},{note},{start_s * 2:.3f},{(end_s - start_s) * 2:.3f},Quarter")
    return "\n".join(lines) + "\n"


def make_musicnet_fixture(root: Path, recordings: list[dict[str, Any]]) -> Path:
    """Write a MusicNet-layout corpus under root and return root.

    Each recording is a dict: id, split ('train' | 'test'), seconds, notes [(start_s, end_s, program, midi_note)],
    optional sample_rate_hz (default 44100), channels (default 1), labels_text (raw CSV, overrides notes),
    no_wav / no_csv (leave that file out). WAVs are 16-bit PCM with one sine per note.
    """
    root = Path(root)
    for split in ("train", "test"):
        (root / f"{split}_data").mkdir(parents=True, exist_ok=True)
        (root / f"{split}_labels").mkdir(parents=True, exist_ok=True)
    for spec in recordings:
        rate_hz = spec.get("sample_rate_hz", MUSICNET_RATE_HZ)
        notes = spec.get("notes", [])
        t = np.arange(int(round(spec["seconds"] * rate_hz))) / rate_hz  # (samples,) seconds
        y = np.zeros_like(t)
        for start_s, end_s, _program, note in notes:
            inside = (t >= start_s) & (t < end_s)
            y[inside] += 0.2 * np.sin(2 * np.pi * midi_to_hz(note) * t[inside])
        y /= max(1.0, float(np.abs(y).max(initial=0.0)) / 0.9)
        data = np.repeat(y[:, None], spec.get("channels", 1), axis=1)  # (samples, channels)
        if not spec.get("no_wav"):
            sf.write(root / f"{spec['split']}_data" / f"{spec['id']}.wav", data, rate_hz, subtype="PCM_16")
        if not spec.get("no_csv"):
            text = spec.get("labels_text") or label_csv_text(notes)
            (root / f"{spec['split']}_labels" / f"{spec['id']}.csv").write_text(text)
    return root


@pytest.fixture
def make_musicnet(tmp_path: Path) -> Callable[..., Path]:
    """make_musicnet(recordings, name='musicnet') writes a corpus in tmp_path/name and returns its root."""
    def make(recordings: list[dict[str, Any]], name: str = "musicnet") -> Path:
        return make_musicnet_fixture(tmp_path / name, recordings)

    return make


@pytest.fixture
def staggered_corpus(make_musicnet) -> Path:
    """Six 6 s recordings, each with all 11 instruments entering at staggered times, so every window length
    has every instrument in train and no instrument in every window."""
    from instrument_id.instruments import INSTRUMENTS

    recordings = []
    for r in range(6):
        notes = [(float((j + r) % 6), (j + r) % 6 + 1.5, inst.program, 48 + 3 * j) for j, inst in enumerate(INSTRUMENTS)]
        recordings.append({"id": str(3000 + r), "split": "train", "seconds": 6.0, "notes": notes})
    return make_musicnet(recordings)
