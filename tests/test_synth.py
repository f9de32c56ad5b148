"""`instrument-id synth`: a seeded FluidSynth corpus in the exact MusicNet layout."""

from __future__ import annotations

import csv
import json
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pretty_midi
import pytest
import soundfile as sf

from instrument_id.audio import frame_windows
from instrument_id.cli import main
from instrument_id.instruments import INSTRUMENTS, PROGRAM_TO_INDEX
from instrument_id.params import AudioParams
from train.feature_study import recording_fonts
from train.musicnet import list_recordings, read_labels, read_metadata, read_recording
from train.synth import METADATA_COLUMNS, PiecePlan, plan_corpus, synthesize_piece
from train.synth_ensembles import (DISTRACTOR_ENSEMBLES, ENSEMBLE_BY_NAME, ENSEMBLE_SETS, ENSEMBLES, MUSICNET_ENSEMBLES,
                                   SPECS)
from train.synth_perform import LABEL_HEADER, Performance, perform
from train.synth_render import default_soundfont, fluidsynth_settings, synthesize
from train.synth_score import ACTIVE_PROBABILITY, NOTE_VALUE_NAMES, SPARSE_PREFIX, compose
from train.windows import n_windows_for, window_labels, window_start_seconds

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
        "musicnet_metadata.csv", "test_data", "test_labels", "timbre_sources.json", "train_data", "train_labels"]
    assert json.loads((corpus / "timbre_sources.json").read_text()) == ["TimGM6mb.sf2"]
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
    metadata = read_metadata(corpus)
    for rec in list_recordings(corpus):
        if ENSEMBLE_BY_NAME[metadata[rec.id]["ensemble"]].distractor:
            continue  # its unlabelled parts may sound before the first label row: the distractor tests cover it
        y, _ = sf.read(rec.wav_path)
        labels = read_labels(rec.labels_path)
        sounding = np.zeros(len(y), dtype=bool)
        for start, end in zip(labels.start_sample, labels.end_sample):
            sounding[start:end] = True
        lead_in = slice(0, int(labels.start_sample.min()))
        # the lead-in holds only the recording chain's noise floor (-70..-40 dB under the peak)
        assert np.sqrt(np.mean(y[sounding] ** 2)) > 5 * np.sqrt(np.mean(y[lead_in] ** 2) + 1e-12)


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


SOURCE = re.compile(r"instrument-id synth \(([^,]+), room [\d.]+x[\d.]+x[\d.]+ m RT60 [\d.]+ s mic [\d.-]+ m, "
                    r"mix (solo|even|dominant) (.+), chain (.+)\)$")


def test_soundfonts_are_cycled_and_the_source_names_fonts_room_mix_and_chain(tmp_path: Path) -> None:
    other = tmp_path / "Other GM.sf2"
    shutil.copyfile(default_soundfont(), other)
    fonts = [default_soundfont(), other]
    seed = next(s for s in range(50) if any(len(set(p.soundfonts)) > 1 for p in plan_corpus(0.3, s, fonts, 1.0)))
    out = tmp_path / "corpus"
    assert synth(out, "--soundfont", *map(str, fonts), "--mixed-fonts", "1", minutes="0.3", seed=str(seed)) == 0
    used = recording_fonts(out)  # what leave-one-soundfont-out reads
    assert set().union(*used.values()) == {"TimGM6mb.sf2", "Other GM.sf2"}
    assert any(len(names) > 1 for names in used.values())
    for recording_id, row in read_metadata(out).items():
        match = SOURCE.match(row["source"])
        assert match, row["source"]
        n_parts = len(ENSEMBLE_BY_NAME[row["ensemble"]].parts)
        parts = match.group(3).split(" / ")
        assert len(parts) == n_parts and (match.group(2) == "solo") == (n_parts == 1)
        assert ("@" in match.group(3)) == (len(used[recording_id]) > 1)  # each part's font, when they differ
        assert set(match.group(1).split("+")) == used[recording_id] and "peak" in match.group(4)


def test_ten_minute_plan_has_every_instrument_entering_and_leaving_without_clashing_notes() -> None:
    programs: set[int] = set()
    label_sets_per_recording = []
    for plan in plan_corpus(10.0, seed=5, soundfonts=[default_soundfont()]):
        if not ENSEMBLE_BY_NAME[plan.ensemble].parts:
            continue  # a recording of no instrument is not composed (train/synth_nonmusic.py)
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
    ("notes.txt", b"x", "expected a .sf2/.sf3 soundfont, a TiMidity++ .cfg or an SFZ library folder"),
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


DISTRACTOR_PLAN = PiecePlan(1000, "train", "Trumpet and Piano", 20.0, (str(default_soundfont()),) * 2, seed=0)
# the brief's minimum set of other instruments, GM programs 1-based as MusicNet writes them
REQUIRED_OTHER_PROGRAMS = {57, 58, 59, 66, 67, 25, 26, 28, 30, 31, 34, 47, 53, 54, 20, 22, 12, 13}


@pytest.fixture(scope="module")
def distractor_piece(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Performance]:
    """One trumpet-and-piano recording written by the corpus code path, and its performance (same seed)."""
    root = tmp_path_factory.mktemp("distractor")
    for folder in ("train_data", "train_labels", "test_data", "test_labels"):
        (root / folder).mkdir()
    row = synthesize_piece(DISTRACTOR_PLAN, str(root))
    assert row["ensemble"] == "Trumpet and Piano"
    rng = np.random.default_rng(DISTRACTOR_PLAN.seed)
    score = compose(rng, ENSEMBLE_BY_NAME[DISTRACTOR_PLAN.ensemble], DISTRACTOR_PLAN.duration_seconds)
    return root, perform(rng, score)


def test_distractor_piece_labels_only_the_11_and_reads_back(tmp_path: Path,
                                                           distractor_piece: tuple[Path, Performance]) -> None:
    root, performance = distractor_piece
    for folder in ("train_data", "train_labels"):
        (tmp_path / folder).mkdir()
    synthesize_piece(DISTRACTOR_PLAN, str(tmp_path))  # same plan, same bytes
    assert corpus_bytes(tmp_path, "train_*/*") == corpus_bytes(root, "train_*/*")
    (rec,) = list_recordings(root)
    _y, labels = read_recording(rec, AudioParams())  # the strict reader accepts it
    heard = {inst.program + 1: len(inst.notes) for inst in performance.midi.instruments}
    assert set(heard) == {SPECS["trumpet"].program, SPECS["piano"].program} and all(heard.values())
    assert set(labels.program.tolist()) == {SPECS["piano"].program}
    assert len(labels) == heard[SPECS["piano"].program]  # every piano note labelled, no trumpet note


def test_distractor_piece_sounds_where_nothing_is_labelled(distractor_piece: tuple[Path, Performance]) -> None:
    root, performance = distractor_piece
    params = AudioParams()
    (rec,) = list_recordings(root)
    y, labels = read_recording(rec, params)
    n_windows = n_windows_for(len(y), params)
    labelled = window_labels(labels, n_windows, params).any(axis=1)  # (n_windows,)
    windows = frame_windows(y, params)  # (n_windows, window_samples)
    assert len(windows) == n_windows
    rms = np.sqrt(np.mean(windows.astype(np.float64) ** 2, axis=1))  # (n_windows,)
    start = window_start_seconds(n_windows, params)
    end = start + params.window_seconds
    label_start, label_end = labels.start_sample / 44100, labels.end_sample / 44100
    # no label row in the window nor in the second before it, so the piano's release and reverb have died away
    clear = np.array([not np.any((label_start < e) & (label_end > s - 1.0)) for s, e in zip(start, end)])
    trumpet = next(inst for inst in performance.midi.instruments if inst.program + 1 == SPECS["trumpet"].program)
    trumpet_sounds = np.array([any(n.start < e and n.end > s for n in trumpet.notes) for s, e in zip(start, end)])
    loud = clear & trumpet_sounds & (rms > max(0.01, 0.3 * float(np.median(rms[labelled]))))
    assert not labelled[clear].any()
    assert loud.sum() >= 2  # real negatives: all-zero label rows over audible trumpet


def test_distractor_ensembles_are_a_minority_with_sparse_labelled_parts() -> None:
    total = sum(e.weight for e in ENSEMBLES)
    assert 0.10 <= sum(e.weight for e in ENSEMBLES if e.distractor) / total <= 0.25
    assert [e for e in ENSEMBLES if e.distractor] == list(DISTRACTOR_ENSEMBLES)
    assert not any(e.distractor for e in MUSICNET_ENSEMBLES)
    sections_without_labels = 0
    for seed, ensemble in enumerate(DISTRACTOR_ENSEMBLES):
        labelled_roles = [role for name, role in ensemble.parts if SPECS[name].labelled]
        assert labelled_roles and all(r.startswith(SPARSE_PREFIX) and ACTIVE_PROBABILITY[r] <= 0.35
                                      for r in labelled_roles)
        rng = np.random.default_rng(seed)
        score = compose(rng, ensemble, 20.0)
        performance = perform(rng, score)
        labelled_parts = {p for p, (name, _role) in enumerate(ensemble.parts) if SPECS[name].labelled}
        assert {r.instrument for r in performance.labels} == {SPECS[n].program for n in ensemble.labelled_instruments}
        assert all(inst.notes for inst in performance.midi.instruments)  # every part, labelled or not, plays
        sections_with_labels = {n.section for n in score.notes if n.part in labelled_parts}
        sections_without_labels += len(score.sections) - len(sections_with_labels)
    assert sections_without_labels >= len(DISTRACTOR_ENSEMBLES)


def test_other_instruments_are_outside_the_11_and_render_with_timgm6mb() -> None:
    assert {name: s.program for name, s in SPECS.items() if s.labelled} == {i.name: i.program for i in INSTRUMENTS}
    others = {name: spec for name, spec in SPECS.items() if not spec.labelled}
    assert REQUIRED_OTHER_PROGRAMS <= {spec.program for spec in others.values()}
    every = ENSEMBLE_SETS["all-with-drums"]
    assert set(others) == {name for e in every for name in e.instruments} - {i.name for i in INSTRUMENTS}
    for name, spec in others.items():
        assert spec.program not in PROGRAM_TO_INDEX and 0 <= spec.low_pitch < spec.high_pitch <= 127
        midi = pretty_midi.PrettyMIDI()
        inst = pretty_midi.Instrument(program=max(0, spec.program - 1), is_drum=spec.percussion, name=name)
        pitches = np.linspace(spec.low_pitch, spec.high_pitch, 5)[1:4].round().astype(int)  # across the range
        inst.notes = [pretty_midi.Note(90, int(p), 0.05 + 0.3 * k, 0.3 + 0.3 * k) for k, p in enumerate(pitches)]
        midi.instruments.append(inst)
        settings = fluidsynth_settings(np.random.default_rng(0))
        y = synthesize(midi, default_soundfont(), 44100, settings)  # raises on a missing preset
        assert np.sqrt(np.mean(y**2)) > 1e-3, name
