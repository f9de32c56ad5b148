"""Read the MusicNet download as it unpacks: {train,test}_data/*.wav beside {train,test}_labels/*.csv."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import logging
import math
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Literal, NamedTuple, Sequence

import numpy as np
import soundfile as sf

from instrument_id.audio import resample, to_mono
from instrument_id.errors import InstrumentIdError
from instrument_id.instruments import PROGRAM_TO_INDEX
from instrument_id.params import AudioParams

log = logging.getLogger(__name__)

MUSICNET_RATE_HZ = 44100  # every MusicNet WAV, and the unit of the label times
LABEL_COLUMNS = ("start_time", "end_time", "instrument", "note", "start_beat", "end_beat", "note_value")
METADATA_FILE = "musicnet_metadata.csv"
TIMBRE_SOURCES_FILE = "timbre_sources.json"  # a rendered corpus's timbre sources (train/synth.py); caches copy it
SPLIT_FOLDERS: dict[str, tuple[str, str]] = {"train": ("train_data", "train_labels"), "test": ("test_data", "test_labels")}
LABELS_PAST_END_TOLERANCE_SECONDS = 1.0  # MusicNet's aligned note ends may overhang the audio slightly
FINGERPRINT_EDGE_BYTES = 64 * 1024
LAYOUT_HELP = ("expected the MusicNet layout: ROOT/train_data/*.wav, ROOT/train_labels/*.csv, "
               "ROOT/test_data/*.wav, ROOT/test_labels/*.csv (optional ROOT/musicnet_metadata.csv)")

# An ensemble name MusicNet never uses: the synthetic corpus's recordings of no instrument (train/synth_nonmusic.py),
# whose label CSVs hold the header and no row. Any other recording without label rows is refused as damaged.
NO_INSTRUMENT_ENSEMBLE = "No Instrument"
# Ensembles of instruments outside the 11 only (a trumpet recital, a brass trio): their label CSVs hold no row either,
# and their metadata says so with this prefix ("None of the 11: Trumpet Recital").
NONE_OF_THE_11_PREFIX = "None of the 11: "

Split = Literal["train", "test"]


@dataclass(frozen=True)
class Recording:
    """One MusicNet recording: its id (the file stem), official split and the two files that hold it."""

    id: str
    official_split: Split
    wav_path: Path
    labels_path: Path
    expects_notes: bool = True  # False for a recording of no instrument (its metadata row says so)

    def read_labels(self) -> "Labels":
        """Its label CSV (read_labels), allowed to hold no row only when expects_notes is False."""
        return read_labels(self.labels_path, allow_empty=not self.expects_notes)


@dataclass(frozen=True)
class Labels:
    """The notes of one recording, one row per CSV line; times in samples at sample_rate_hz (MusicNet: 44.1 kHz)."""

    start_sample: np.ndarray  # (n,) int64
    end_sample: np.ndarray  # (n,) int64
    program: np.ndarray  # (n,) int16, General MIDI program, 1-based
    note: np.ndarray  # (n,) int16, MIDI note number
    line: np.ndarray  # (n,) int32, CSV line number (header is line 1) so later checks can point at the row
    source: str = ""
    sample_rate_hz: int = MUSICNET_RATE_HZ

    def __len__(self) -> int:
        return len(self.start_sample)

    @property
    def class_index(self) -> np.ndarray:
        """(n,) int64 index of each note's instrument in INSTRUMENTS order."""
        lookup = np.full(max(PROGRAM_TO_INDEX) + 1, -1, dtype=np.int64)
        lookup[list(PROGRAM_TO_INDEX)] = list(PROGRAM_TO_INDEX.values())
        return lookup[self.program]

    def class_set(self) -> frozenset[int]:
        """The class indices of every instrument that plays at least one note."""
        return frozenset(int(i) for i in np.unique(self.class_index))


class Skipped(NamedTuple):
    file: str
    reason: str


def _sort_key(recording_id: str) -> tuple[int, int, str]:
    # MusicNet ids are integers: sort 1727 before 10000 while keeping any other name deterministic
    return (0, int(recording_id), "") if recording_id.isdigit() else (1, 0, recording_id)


def list_recordings(root: str | os.PathLike, skipped: list[Skipped] | None = None) -> list[Recording]:
    """Every recording under root, sorted by id; a WAV without its CSV (or the reverse) raises, or goes to `skipped`."""
    root = Path(root)
    if not root.is_dir():
        raise InstrumentIdError(f"{root}: MusicNet folder not found; {LAYOUT_HELP}")
    missing = [f"{root / folder}" for pair in SPLIT_FOLDERS.values() for folder in pair if not (root / folder).is_dir()]
    if missing:
        raise InstrumentIdError(f"{root}: missing folder(s) {', '.join(missing)}; {LAYOUT_HELP}")
    recordings: dict[str, Recording] = {}
    for split, (data_folder, labels_folder) in SPLIT_FOLDERS.items():
        wavs = {p.stem: p for p in (root / data_folder).iterdir() if p.suffix.lower() == ".wav" and p.is_file()}
        csvs = {p.stem: p for p in (root / labels_folder).iterdir() if p.suffix.lower() == ".csv" and p.is_file()}
        unpaired = [(wavs[s], f"no label file {root / labels_folder / (s + '.csv')}") for s in sorted(set(wavs) - set(csvs))]
        unpaired += [(csvs[s], f"no audio file {root / data_folder / (s + '.wav')}") for s in sorted(set(csvs) - set(wavs))]
        for path, reason in unpaired:
            if skipped is None:
                raise InstrumentIdError(f"{path}: {reason}")
            skipped.append(Skipped(str(path), reason))
        for stem in set(wavs) & set(csvs):
            if stem in recordings:
                raise InstrumentIdError(f"{wavs[stem]}: recording id {stem} is also in {recordings[stem].wav_path.parent}")
            recordings[stem] = Recording(stem, split, wavs[stem], csvs[stem])  # type: ignore[arg-type]
    if not recordings:
        raise InstrumentIdError(f"{root}: no recordings found; {LAYOUT_HELP}")
    silent = {i for i, row in read_metadata(root).items() if _holds_none_of_the_11((row.get("ensemble") or "").strip())}
    return [dataclasses.replace(recordings[k], expects_notes=k not in silent) for k in sorted(recordings, key=_sort_key)]


def _holds_none_of_the_11(ensemble: str) -> bool:
    """Whether a metadata ensemble says the recording holds none of the 11 (so its label CSV has no row)."""
    return ensemble == NO_INSTRUMENT_ENSEMBLE or ensemble.startswith(NONE_OF_THE_11_PREFIX)


def read_metadata(root: str | os.PathLike) -> dict[str, dict[str, str]]:
    """ROOT/musicnet_metadata.csv as {id: row}; {} when the optional file is absent."""
    path = Path(root) / METADATA_FILE
    if not path.is_file():
        return {}
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        if "id" not in (reader.fieldnames or []):
            raise InstrumentIdError(f"{path}: no 'id' column (found {reader.fieldnames})")
        return {row["id"].strip(): row for row in reader}


def _number(text: str, column: str, path: Path, line: int) -> float:
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise InstrumentIdError(f"{path}, line {line}: {column} is not a number ({text!r})") from None
    if not math.isfinite(value):
        raise InstrumentIdError(f"{path}, line {line}: {column} is not finite ({text!r})")
    return value


def _parse_label_rows(reader: Any, path: Path) -> list[tuple[float, float, float, float, int]]:
    """Validated (start, end, program, note, line) rows of one label CSV."""
    rows: list[tuple[float, float, float, float, int]] = []
    header = [name.strip() for name in next(reader, [])]
    absent = [name for name in LABEL_COLUMNS if name not in header]
    if absent:
        raise InstrumentIdError(f"{path}: missing column(s) {', '.join(absent)}; expected {','.join(LABEL_COLUMNS)}")
    used = [header.index(name) for name in LABEL_COLUMNS[:4]]
    for row in reader:
        line = reader.line_num
        if not any(cell.strip() for cell in row):
            continue
        if len(row) < len(header):
            raise InstrumentIdError(f"{path}, line {line}: {len(row)} fields, the header has {len(header)}")
        start, end, program, note = (_number(row[i], LABEL_COLUMNS[k], path, line) for k, i in enumerate(used))
        if start < 0 or end < start:
            raise InstrumentIdError(f"{path}, line {line}: note ends before it starts ({start:g} -> {end:g})")
        if program not in PROGRAM_TO_INDEX:
            raise InstrumentIdError(
                f"{path}, line {line}: unknown instrument program {program:g}; MusicNet uses {sorted(PROGRAM_TO_INDEX)}")
        rows.append((start, end, program, note, line))
    return rows


def read_labels(path: str | os.PathLike, allow_empty: bool = False) -> Labels:
    """Parse and validate one MusicNet label CSV; every failure names the file and, for a row, its line. A CSV of
    the header alone is refused unless allow_empty (a recording of no instrument)."""
    path = Path(path)
    try:
        handle = open(path, newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise InstrumentIdError(f"{path}: cannot open label file ({exc.strerror})") from None
    with handle:
        try:
            rows = _parse_label_rows(csv.reader(handle), path)
        except (UnicodeDecodeError, csv.Error) as exc:
            raise InstrumentIdError(f"{path}: not a readable CSV ({exc})") from None
    if not rows and not allow_empty:
        raise InstrumentIdError(f"{path}: recording without label rows (and its metadata row does not say "
                                f"ensemble {NO_INSTRUMENT_ENSEMBLE!r} or {NONE_OF_THE_11_PREFIX}...)")
    table = np.array(rows, dtype=np.float64).reshape(-1, 5)  # (n, 5)
    return Labels(
        start_sample=np.rint(table[:, 0]).astype(np.int64), end_sample=np.rint(table[:, 1]).astype(np.int64),
        program=table[:, 2].astype(np.int16), note=table[:, 3].astype(np.int16), line=table[:, 4].astype(np.int32),
        source=str(path),
    )


def _check_wav_complete(path: Path) -> None:
    """Raise when a RIFF/WAVE file's data chunk is shorter than its header says (libsndfile reads it silently)."""
    size_bytes = path.stat().st_size
    with open(path, "rb") as handle:
        head = handle.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return  # RF64 or not a WAV: leave it to soundfile
        offset = 12
        for _ in range(64):  # a handful of chunks (fmt, LIST, fact) precede data
            handle.seek(offset)
            chunk = handle.read(8)
            if len(chunk) < 8:
                raise InstrumentIdError(f"{path}: truncated WAV, no data chunk")
            chunk_id, chunk_bytes = chunk[:4], struct.unpack("<I", chunk[4:])[0]
            if chunk_id == b"data":
                available = size_bytes - offset - 8
                if chunk_bytes != 0xFFFFFFFF and available < chunk_bytes:
                    raise InstrumentIdError(f"{path}: truncated WAV, {available} of {chunk_bytes} audio bytes present")
                return
            offset += 8 + chunk_bytes + (chunk_bytes & 1)


def read_recording(rec: Recording, params: AudioParams) -> tuple[np.ndarray, Labels]:
    """-> ((samples,) float32 mono at params.sample_rate_hz, labels at 44.1 kHz); checks rate, length and labels."""
    labels = rec.read_labels()
    try:
        info = sf.info(str(rec.wav_path))
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise InstrumentIdError(f"{rec.wav_path}: not a readable audio file ({exc})") from None
    if info.samplerate != MUSICNET_RATE_HZ:
        raise InstrumentIdError(
            f"{rec.wav_path}: sample rate {info.samplerate} Hz, MusicNet audio is {MUSICNET_RATE_HZ} Hz "
            "(the label times count samples at that rate)")
    _check_wav_complete(rec.wav_path)
    try:
        data, _ = sf.read(str(rec.wav_path), dtype="float32", always_2d=True)  # (samples, channels)
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise InstrumentIdError(f"{rec.wav_path}: not a readable audio file ({exc})") from None
    if data.shape[0] == 0:
        raise InstrumentIdError(f"{rec.wav_path}: the file holds 0 samples")
    if not np.all(np.isfinite(data)):
        raise InstrumentIdError(f"{rec.wav_path}: audio contains NaN or infinite samples")
    if data.shape[1] != 1:
        log.info("%s: %d channels, mixed down to mono", rec.wav_path, data.shape[1])
    limit = data.shape[0] + LABELS_PAST_END_TOLERANCE_SECONDS * MUSICNET_RATE_HZ
    late = np.flatnonzero(labels.end_sample > limit)
    if late.size:
        i = late[0]
        raise InstrumentIdError(
            f"{rec.labels_path}, line {labels.line[i]}: note ends at {labels.end_sample[i] / MUSICNET_RATE_HZ:.3f} s, "
            f"past the end of {rec.wav_path.name} ({data.shape[0] / MUSICNET_RATE_HZ:.3f} s)")
    y = resample(to_mono(data), MUSICNET_RATE_HZ, params.sample_rate_hz)  # (samples',) float32
    return y, labels


class RecordingStream:
    """Iterate (recording, audio, labels); with on_error='skip' a bad recording lands in .skipped instead of raising."""

    def __init__(self, recordings: Sequence[Recording], params: AudioParams, on_error: str, progress: bool) -> None:
        if on_error not in ("raise", "skip"):
            raise InstrumentIdError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        self.recordings, self.params, self.on_error, self.progress = list(recordings), params, on_error, progress
        self.skipped: list[Skipped] = []

    def __len__(self) -> int:
        return len(self.recordings)

    def __iter__(self) -> Iterator[tuple[Recording, np.ndarray, Labels]]:
        recordings = self.recordings
        if self.progress:
            from tqdm import tqdm

            recordings = tqdm(recordings, desc="reading recordings", unit="rec")
        for rec in recordings:
            try:
                y, labels = read_recording(rec, self.params)
            except InstrumentIdError as exc:
                if self.on_error == "raise":
                    raise
                log.warning("skipping %s: %s", rec.id, exc)
                self.skipped.append(Skipped(str(rec.wav_path), str(exc)))
                continue
            yield rec, y, labels


def iter_recordings(recordings: Sequence[Recording], params: AudioParams, on_error: str = "raise",
                    progress: bool = False) -> RecordingStream:
    """Read recordings one at a time (a 10-minute WAV is ~100 MB as float32); .skipped lists (file, reason)."""
    return RecordingStream(recordings, params, on_error, progress)


def update_with_edges(digest: Any, path: Path) -> None:
    """Feed an audio file's size and its first and last FINGERPRINT_EDGE_BYTES into a hash (not the whole file)."""
    size_bytes = path.stat().st_size
    digest.update(f"{size_bytes}\n".encode())
    with open(path, "rb") as handle:
        digest.update(handle.read(FINGERPRINT_EDGE_BYTES))
        handle.seek(max(0, size_bytes - FINGERPRINT_EDGE_BYTES))
        digest.update(handle.read(FINGERPRINT_EDGE_BYTES))


def corpus_fingerprint(root: str | os.PathLike, recordings: Sequence[Recording] | None = None) -> str:
    """A sha256 that changes when any label, WAV or the metadata changes, in seconds on the 33 GB corpus.

    Label CSVs and the metadata file are hashed whole (tens of MB in all). A WAV contributes its size and its
    first and last 64 KiB: a re-encode, truncation, or a different take changes these, while hashing 33 GB would
    take minutes. mtimes are left out on purpose so a copy or re-download of the same files keeps the fingerprint.
    """
    root = Path(root)
    recordings = list_recordings(root) if recordings is None else recordings
    digest = hashlib.sha256(b"musicnet-fingerprint-v1\n")
    for rec in recordings:
        for path in (rec.labels_path, rec.wav_path):
            digest.update(f"{path.relative_to(root).as_posix()}\n".encode())
        digest.update(hashlib.sha256(rec.labels_path.read_bytes()).digest())
        update_with_edges(digest, rec.wav_path)
    metadata = root / METADATA_FILE
    if metadata.is_file():
        digest.update(b"metadata\n" + hashlib.sha256(metadata.read_bytes()).digest())
    return digest.hexdigest()
