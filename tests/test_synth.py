"""`instrument-id synth`: a seeded FluidSynth corpus in the exact MusicNet layout."""

from __future__ import annotations

import csv
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from instrument_id.cli import main
from instrument_id.instruments import INSTRUMENTS, PROGRAM_TO_INDEX
from train.musicnet import list_recordings, read_labels, read_metadata
from train.synth import METADATA_COLUMNS, plan_corpus
from train.synth_perform import LABEL_HEADER, perform
from train.synth_render import default_soundfont
from train.synth_score import ENSEMBLE_BY_NAME, NOTE_VALUE_NAMES, SPECS, compose

pytest.importorskip("fluidsynth", reason="needs pyfluidsynth and libfluidsynth3")


def synth(out: Path, *extra: str, minutes: str = "0.5", seed: str = "0", jobs: str = "1") -> int:
    return main(["synth", "--out", str(out), "--minutes", minutes, "--seed", seed, "--jobs", jobs, *extra])


def corpus_bytes(root: Path, pattern: str) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.glob(pattern))}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "corpus"
    assert synth(out) == 0
    return out


def test_layout_metadata_and_wavs(corpus: Path) -> None:
    assert sorted(p.name for p in corpus.iterdir()) == [
        "musicnet_metadata.csv", "test_data", "test_labels", "train_data", "train_labels"]
    with open(corpus / "musicnet_metadata.csv", newline="") as handle:
        reader = csv.DictReader(handle)
        assert tuple(reader.fieldnames or ()) == METADATA_COLUMNS
        metadata = {row["id"]: row for row in reader}
    recordings = list_recordings(corpus)  # the project's own MusicNet reader accepts it
    assert {r.id for r in recordings} == set(metadata) == set(read_metadata(corpus))
    splits = [r.official_split for r in recordings]
    assert splits.count("test") >= 1 and splits.count("train") >= 1
    for rec in recordings:
        assert int(rec.id) >= 1000
        info = sf.info(rec.wav_path)
        assert (info.samplerate, info.channels, info.subtype, info.format) == (44100, 1, "PCM_16", "WAV")
        assert int(metadata[rec.id]["seconds"]) == round(info.frames / 44100)
        assert metadata[rec.id]["ensemble"] in ENSEMBLE_BY_NAME
        y, _ = sf.read(rec.wav_path)
        assert 0.05 < np.abs(y).max() < 1.0  # normalized to a peak below full scale, not silent


def test_label_csvs(corpus: Path) -> None:
    known_values = set(NOTE_VALUE_NAMES.values())
    for rec in list_recordings(corpus):
        text = rec.labels_path.read_text()
        assert text.splitlines()[0] == LABEL_HEADER
        rows = [line.split(",") for line in text.splitlines()[1:]]
        assert rows
        frames = sf.info(rec.wav_path).frames
        starts = [int(r[0]) for r in rows]
        assert starts == sorted(starts)
        for start, end, program, note, start_beat, end_beat, note_value in rows:
            assert 0 <= int(start) < int(end) <= frames
            assert int(program) in PROGRAM_TO_INDEX
            name = INSTRUMENTS[PROGRAM_TO_INDEX[int(program)]].name
            assert SPECS[name].low_pitch <= int(note) <= SPECS[name].high_pitch
            assert float(start_beat) >= 0 and float(end_beat) > 0 and "." in start_beat
            assert note_value in known_values
        assert len(read_labels(rec.labels_path)) == len(rows)


def test_labels_mark_where_the_sound_is(corpus: Path) -> None:
    for rec in list_recordings(corpus):
        y, _ = sf.read(rec.wav_path)
        labels = read_labels(rec.labels_path)
        sounding = np.zeros(len(y), dtype=bool)
        for start, end in zip(labels.start_sample, labels.end_sample):
            sounding[start:end] = True
        lead_in = slice(0, int(labels.start_sample.min()))
        assert np.sqrt(np.mean(y[sounding] ** 2)) > 10 * np.sqrt(np.mean(y[lead_in] ** 2) + 1e-12)


def test_same_seed_same_bytes_any_jobs_and_rerun_replaces(tmp_path: Path, corpus: Path) -> None:
    again = tmp_path / "again"
    assert synth(again, jobs="2") == 0
    for pattern in ("musicnet_metadata.csv", "*_labels/*.csv", "*_data/*.wav"):
        assert corpus_bytes(again, pattern) == corpus_bytes(corpus, pattern)
    assert synth(again, seed="1") == 0  # replaces the earlier corpus in the same folder
    assert corpus_bytes(again, "musicnet_metadata.csv") != corpus_bytes(corpus, "musicnet_metadata.csv")
    assert corpus_bytes(again, "*_labels/*.csv") != corpus_bytes(corpus, "*_labels/*.csv")
    files = {p.stem for p in again.glob("*_data/*.wav")} | {p.stem for p in again.glob("*_labels/*.csv")}
    assert files == set(read_metadata(again))  # nothing left over from the seed-0 corpus


def test_soundfonts_are_cycled(tmp_path: Path) -> None:
    other = tmp_path / "Other GM.sf2"
    shutil.copyfile(default_soundfont(), other)
    out = tmp_path / "corpus"
    assert synth(out, "--soundfont", str(default_soundfont()), str(other), minutes="0.3") == 0
    fonts = {row["source"].split("(")[1].split(",")[0] for row in read_metadata(out).values()}
    assert fonts == {"TimGM6mb.sf2", "Other GM.sf2"}


def test_ten_minute_plan_has_every_instrument_entering_and_leaving_without_clashing_notes() -> None:
    programs: set[int] = set()
    label_sets_per_recording = []
    for plan in plan_corpus(10.0, seed=5, soundfonts=[default_soundfont()]):
        rng = np.random.default_rng(plan.seed)
        performance = perform(rng, compose(rng, ENSEMBLE_BY_NAME[plan.ensemble], plan.duration_seconds))
        for inst in performance.midi.instruments:  # one note-off per key and channel: a pitch never sounds twice
            spans = sorted((n.pitch, n.start, n.end) for n in inst.notes)
            assert all(a[0] != b[0] or a[2] <= b[1] for a, b in zip(spans, spans[1:]))
        if plan.split == "train":
            programs |= {row.instrument for row in performance.labels}
        window = 2 * 44100
        label_sets_per_recording.append({
            frozenset(r.instrument for r in performance.labels if r.start_time < s + window and r.end_time > s)
            for s in range(0, performance.num_samples - window, 44100)})
    assert programs == {inst.program for inst in INSTRUMENTS}
    assert sum(len(sets) > 1 for sets in label_sets_per_recording) >= 3


@pytest.mark.parametrize("name, content, reason", [
    ("missing.sf2", None, "does not exist"),
    ("notes.txt", b"x", "expected a .sf2 or .sf3"),
    ("fake.sf3", b"RIFF\0\0\0\0WAVEfmt ", "not a SoundFont"),
])
def test_bad_soundfont_exits_2_naming_it(tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str,
                                         content: bytes | None, reason: str) -> None:
    font = tmp_path / name
    if content is not None:
        font.write_bytes(content)
    assert synth(tmp_path / "corpus", "--soundfont", str(font)) == 2
    err = capsys.readouterr().err
    assert str(font) in err and reason in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "corpus").exists()


@pytest.mark.parametrize("minutes", ["0", "-1", "nan"])
def test_minutes_must_be_positive(tmp_path: Path, capsys: pytest.CaptureFixture[str], minutes: str) -> None:
    assert synth(tmp_path / "corpus", minutes=minutes) == 2
    assert "--minutes must be positive" in capsys.readouterr().err


def test_missing_fluidsynth_says_how_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "fluidsynth", None)  # what a failed import of the library looks like
    assert synth(tmp_path / "corpus") == 2
    err = capsys.readouterr().err
    assert "apt-get install libfluidsynth3" in err and "brew install fluid-synth" in err


def test_refuses_to_replace_a_folder_that_is_not_a_corpus(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "precious"
    out.mkdir()
    (out / "thesis.txt").write_text("keep me")
    assert synth(out) == 2
    assert "refusing to replace" in capsys.readouterr().err
    assert (out / "thesis.txt").read_text() == "keep me"
