"""Leave-one-soundfont-out: recordings whose parts use several soundfonts never leak a held-out timbre into training."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from instrument_id.errors import InstrumentIdError
from tests.synthetic_features import make_featureset
from train.feature_study import held_out_masks, leave_one_font_out, recording_fonts, without_source
from train.synth import METADATA_COLUMNS

SOURCES = {
    "1000": "instrument-id synth (TimGM6mb.sf2, hall room)",  # a corpus from before per-part soundfonts
    "1001": "instrument-id synth (FluidR3_GM.sf2+TimGM6mb.sf2, room 9.0x6.1x3.2 m RT60 0.81 s mic 2.0-2.6 m, "
            "mix even violin@TimGM6mb.sf2 +0.0 dB / piano@FluidR3_GM.sf2 -3.1 dB, chain peak -3.0 dBFS)",
    "1002": "instrument-id synth (FluidR3_GM.sf2, room 4.1x3.0x2.4 m RT60 0.30 s mic 1.1 m, mix solo piano +0.0 dB, "
            "chain peak -2.0 dBFS)",
}


def write_metadata(root: Path, sources: dict[str, str]) -> None:
    with open(root / "musicnet_metadata.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=METADATA_COLUMNS)
        writer.writeheader()
        for recording_id, source in sources.items():
            writer.writerow({column: "x" for column in METADATA_COLUMNS} | {"id": recording_id, "source": source})


def test_recording_fonts_reads_every_soundfont_of_old_and_new_sources(tmp_path: Path) -> None:
    write_metadata(tmp_path, SOURCES)
    assert recording_fonts(tmp_path) == {"1000": {"TimGM6mb.sf2"}, "1001": {"FluidR3_GM.sf2", "TimGM6mb.sf2"},
                                         "1002": {"FluidR3_GM.sf2"}}
    write_metadata(tmp_path, {"7": "European Archive"})  # real MusicNet: no soundfont to hold out
    with pytest.raises(InstrumentIdError, match="no instrument-id synth source"):
        recording_fonts(tmp_path)


def test_held_out_masks_fit_without_the_font_and_score_only_it() -> None:
    sets = [frozenset({"A"}), frozenset({"A", "B"}), frozenset({"B"}), frozenset({"B", "C"})]
    fit, score = held_out_masks(sets, "A")
    assert fit.tolist() == [False, False, True, True] and score.tolist() == [True, False, False, False]
    fit, score = held_out_masks(sets, "C")
    assert fit.tolist() == [True, True, True, False] and not score.any()


def test_leave_one_font_out_scores_single_font_recordings_and_skips_fonts_never_used_alone() -> None:
    features = make_featureset(300, seed=3)  # 30 recordings rec0..rec29 of 10 windows, in split order
    kinds = [{"A"}, {"B"}, {"A", "B"}, {"B", "C"}]
    fonts = {f"rec{k}": frozenset(kinds[k % 4]) for k in range(30)}
    rows = leave_one_font_out(features, fonts, ["lr"], seed=0)
    assert [r["held_out"] for r in rows] == ["A", "B"]  # C only ever plays beside B: nothing to score
    for row in rows:
        alone = [r for r, f in fonts.items() if f == {row["held_out"]}]
        assert row["n_windows"] == int(np.isin(features.recording, alone).sum())
        assert 0.0 <= row["macro_f1"] <= 1.0


def test_no_instrument_recordings_use_no_font_and_train_in_every_fold(tmp_path: Path) -> None:
    write_metadata(tmp_path, {**SOURCES, "1003": "instrument-id synth (no instrument, segments hum -30 dB, chain none)"})
    fonts = recording_fonts(tmp_path)
    assert fonts["1003"] == frozenset()
    fit, score = held_out_masks([fonts[r] for r in sorted(fonts)], "FluidR3_GM.sf2")
    assert fit.tolist() == [True, False, False, True] and score.tolist() == [False, False, True, False]


def test_loso_without_drops_every_recording_that_uses_the_source() -> None:
    features = make_featureset(300, seed=3)
    kinds = [{"A"}, {"B"}, {"A", "B"}, {"B", "C"}]
    fonts = {f"rec{k}": frozenset(kinds[k % 4]) for k in range(30)}
    kept = without_source(features, fonts, "B")
    assert set(kept.recording) == {f"rec{k}" for k in range(30) if k % 4 == 0}
    assert len(kept.X) == 10 * len(set(kept.recording)) and kept.X.shape[1] == features.X.shape[1]
    with pytest.raises(InstrumentIdError, match="--loso-without D: no recording of the corpus uses it; its sources: A, B, C"):
        without_source(features, fonts, "D")
