"""Labelled clip folders: read a labels CSV (a `file` column and one 0/1 column per instrument) and score the clips.

The layout is that of ../shared/data/real-dev/medley-solos-db/labels.csv: any other columns are kept as metadata.
A clip of any length, rate and channel count is mixed to mono at the model's rate and cut into the model's
windows (a clip shorter than one window is zero-padded); each instrument scores its highest window, so a clip
is judged exactly like a window of the synthetic test split.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from instrument_id.audio import frame_windows, load_mono
from instrument_id.errors import InstrumentIdError
from instrument_id.feature_sets import FeatureSetSpec
from instrument_id.instruments import NUM_INSTRUMENTS, column_names
from instrument_id.params import AudioParams
from model_zoo.featurizers import featurize

FILE_COLUMN = "file"
INSTRUMENT_COLUMN = re.compile(r"^[A-Za-z][\w ]*\(\d+\)$")  # 'violin(41)': the form of an instrument's label column


@dataclass
class LabelledClips:
    """Clips listed in a labels CSV. paths (n,) existing audio files; Y (n, 11) uint8; metadata: other columns."""

    labels_csv: Path
    paths: list[Path]
    Y: np.ndarray
    metadata: list[dict[str, str]]

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def none_rows(self) -> np.ndarray:
        """(n,) bool: clips in which none of the 11 instruments plays."""
        return self.Y.sum(axis=1) == 0


def _label_value(text: str | None, labels_csv: Path, line: int, column: str) -> int:
    value = (text or "").strip()
    if value not in ("0", "1"):
        raise InstrumentIdError(f"{labels_csv} line {line}: column {column} must be 0 or 1, got {value!r}")
    return int(value)


def read_labels(labels_csv: str | Path, clips_dir: str | Path) -> LabelledClips:
    """Parse and check a labels CSV against clips_dir: every instrument column, 0/1 values, each listed file present."""
    labels_csv, clips_dir = Path(labels_csv), Path(clips_dir)
    if not clips_dir.is_dir():
        raise InstrumentIdError(f"{clips_dir}: clips folder not found")
    if not labels_csv.is_file():
        raise InstrumentIdError(f"{labels_csv}: labels file not found")
    try:
        with open(labels_csv, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            header = reader.fieldnames or []
            columns = column_names()
            missing = [c for c in (FILE_COLUMN, *columns) if c not in header]
            unknown = [c for c in header if INSTRUMENT_COLUMN.match(c or "") and c not in columns]
            if unknown:
                raise InstrumentIdError(
                    f"{labels_csv} line 1: unknown instrument column(s) {', '.join(unknown)}; the instruments are "
                    f"{', '.join(columns)} (a clip of any other instrument is a row of zeros)")
            if missing:
                raise InstrumentIdError(
                    f"{labels_csv}: missing column(s) {', '.join(missing)}; a labels CSV needs '{FILE_COLUMN}' and "
                    f"one 0/1 column per instrument: {', '.join(columns)}"
                )
            paths, rows, metadata, seen = [], [], [], {}
            for row in reader:
                line = reader.line_num
                if None in row:
                    raise InstrumentIdError(f"{labels_csv} line {line}: more values than header columns")
                name = (row[FILE_COLUMN] or "").strip()
                if not name:
                    raise InstrumentIdError(f"{labels_csv} line {line}: empty '{FILE_COLUMN}' value")
                if name in seen:
                    raise InstrumentIdError(f"{labels_csv} line {line}: {name} is already listed on line {seen[name]}")
                seen[name] = line
                path = clips_dir / name
                if not path.is_file():
                    raise InstrumentIdError(f"{path}: missing audio file (listed in {labels_csv} line {line})")
                rows.append([_label_value(row[c], labels_csv, line, c) for c in columns])
                paths.append(path)
                metadata.append({k: v for k, v in row.items() if k != FILE_COLUMN and k not in columns})
    except UnicodeDecodeError as exc:
        raise InstrumentIdError(f"{labels_csv}: not UTF-8 text ({exc})") from None
    except csv.Error as exc:
        raise InstrumentIdError(f"{labels_csv}: not a readable CSV ({exc})") from None
    if not paths:
        raise InstrumentIdError(f"{labels_csv}: lists no clips")
    Y = np.asarray(rows, dtype=np.uint8).reshape(len(rows), NUM_INSTRUMENTS)  # (n, 11)
    return LabelledClips(labels_csv=labels_csv, paths=paths, Y=Y, metadata=metadata)


def clip_window_features(clips: LabelledClips, params: AudioParams, spec: FeatureSetSpec,
                         progress: bool = True) -> list[np.ndarray]:
    """Per clip, (n_windows, width) values of the feature set for its windows at these audio settings."""
    out = []
    for path in tqdm(clips.paths, desc="clip features", unit="clip", disable=None if progress else True):
        y = load_mono(path, params)  # (samples,) mono at params.sample_rate_hz
        out.append(featurize(frame_windows(y, params), params, spec))  # (n_windows, samples) -> (n_windows, width)
    return out
