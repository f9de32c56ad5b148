"""A small converted MLP folder for the TFLite tests, made by the real CLI: corpus -> features -> train -> convert.

The corpus is in the MusicNet layout with one sine per note; each instrument plays in its own pitch band, so the
MLP has something to learn and its probabilities spread over (0, 1) rather than sticking to one value.
Building takes ~20 s (TensorFlow training and conversion), so it is done once per test session and shared;
tests that change the folder work on a copy.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

import numpy as np

from conftest import make_musicnet_fixture
from instrument_id.cli import main
from instrument_id.instruments import INSTRUMENTS

TRAIN_RECORDINGS, TEST_RECORDINGS = 10, 2
RECORDING_SECONDS = 12
LOWEST_NOTE = 45  # A2; instrument j plays MIDI notes LOWEST_NOTE + 3j .. + 2


@dataclass(frozen=True)
class EdgeFixture:
    """Where the corpus, its feature file and the converted MLP folder lie."""

    corpus: Path
    features: Path
    model_dir: Path


def band_notes(rng: np.random.Generator, seconds: int) -> list[tuple[float, float, int, int]]:
    """(start_s, end_s, program, midi_note) notes: one to three instruments starting in every second."""
    notes = []
    for second in range(seconds):
        for j in rng.choice(len(INSTRUMENTS), size=rng.integers(1, 4), replace=False):
            start = second + rng.uniform(0.0, 0.3)
            end = min(start + rng.uniform(0.5, 1.2), seconds)
            notes.append((start, end, INSTRUMENTS[j].program, LOWEST_NOTE + 3 * int(j) + int(rng.integers(0, 3))))
    return notes


def build_edge_fixture(root: Path, seed: int = 0) -> EdgeFixture:
    """Write the corpus, then run `features`, `train --model mlp` and `convert --quant all` as a user would."""
    rng = np.random.default_rng(seed)
    recordings = [
        {"id": str(2000 + i), "split": "train" if i < TRAIN_RECORDINGS else "test", "seconds": RECORDING_SECONDS,
         "notes": band_notes(rng, RECORDING_SECONDS)}
        for i in range(TRAIN_RECORDINGS + TEST_RECORDINGS)
    ]
    corpus = make_musicnet_fixture(root / "corpus", recordings)
    features = root / "features.npz"
    models = root / "models"
    commands = [
        ["features", "--data", str(corpus), "--out", str(features), "--augment", "0", "--split", "official", "--jobs", "1"],
        ["train", "--features", str(features), "--model", "mlp", "--out", str(models), "--epochs", "40", "--quiet"],
        ["convert", "--model", str(models / "mlp"), "--quant", "all", "--features", str(features)],
    ]
    for command in commands:
        assert main(command) == 0, command
    return EdgeFixture(corpus=corpus, features=features, model_dir=models / "mlp")


def shared_edge_fixture(tmp_path_factory: pytest.TempPathFactory) -> EdgeFixture:
    """The session's one EdgeFixture, built on first use in the session's temporary folder."""
    root = tmp_path_factory.getbasetemp() / "edge-model"
    marker = root / "built.json"
    if not marker.is_file():
        shutil.rmtree(root, ignore_errors=True)  # a build that failed half-way
        root.mkdir()
        built = build_edge_fixture(root)
        marker.write_text(json.dumps({key: str(value) for key, value in dataclasses.asdict(built).items()}))
    return EdgeFixture(**{key: Path(value) for key, value in json.loads(marker.read_text()).items()})
