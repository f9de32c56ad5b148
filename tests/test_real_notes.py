"""`instrument-id real-notes`: train / held-out valid SFZ libraries from a real-notes folder (philharmonia/manifest.csv
and its Ogg notes, an SFZ upright piano). The folder here is a tiny generated stand-in with the real layout; no test
reads the real recordings."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pretty_midi
import pytest
import soundfile as sf

from instrument_id.cli import main
from train.real_notes import PHILHARMONIA_SOURCE, UPRIGHT_PIANO_SFZ, UPRIGHT_SOURCE
from train.synth_sfz import check_sfz_library, sample_paths, synthesize_sfz

pytest.importorskip("pysfizz", reason="needs pysfizz (the sfizz SFZ player)")

RATE_HZ = 22050  # the Philharmonia notes are mono 22050 Hz Ogg Vorbis
MANIFEST_HEADER = "file,instrument,program,midi_pitch,dynamic,articulation,length,seconds,peak_dbfs"
NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
# (instrument, GM program as the manifest writes it, pitches, [(articulation, length)]): 12 violin and 8 trumpet notes
NOTES = (("violin", "41", (55, 67, 79), (("arco-normal", "1"), ("pizz-normal", "normal"))),
         ("trumpet", "", (58, 70), (("normal", "1"), ("staccato", "025"))))
DYNAMICS = ("piano", "forte")


def write_ogg(path: Path, pitch: int, seconds: float = 0.4, level: float = 0.3) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * RATE_HZ)) / RATE_HZ
    y = sum(level / k * np.sin(2 * np.pi * k * 440.0 * 2 ** ((pitch - 69) / 12) * t) for k in (1, 2, 3))
    y *= np.minimum(1.0, np.minimum(t, t[-1] - t) / 0.005)
    sf.write(path, y.astype(np.float32), RATE_HZ, format="OGG", subtype="VORBIS")
    return path


def manifest_row(instrument: str, program: str, pitch: int, dynamic: str, articulation: str, length: str) -> str:
    name = f"{NOTE_NAMES[pitch % 12]}{pitch // 12 - 1}"
    return (f"{instrument}/{instrument}_{name}_{length}_{dynamic}_{articulation}.ogg,{instrument},{program},{pitch},"
            f"{dynamic},{articulation},{length},0.4,-10.0")


def make_real_notes(root: Path, extra_rows: tuple[str, ...] = ()) -> list[str]:
    """The real-notes layout under root; returns the manifest's usable note files (those a library should play)."""
    rows, usable = [], []
    for instrument, program, pitches, articulations in NOTES:
        for pitch in pitches:
            for dynamic in DYNAMICS:
                for articulation, length in articulations:
                    rows.append(manifest_row(instrument, program, pitch, dynamic, articulation, length))
                    usable.append(rows[-1].split(",")[0])
    # not single notes at one dynamic: a phrase and a crescendo, which no library may play
    rows.append(manifest_row("violin", "41", 60, "forte", "arco-normal", "phrase"))
    rows.append(manifest_row("violin", "41", 62, "cresc-decresc", "arco-normal", "1"))
    for row in rows:
        write_ogg(root / "philharmonia" / row.split(",")[0], int(row.split(",")[3]))
    rows += extra_rows
    (root / "philharmonia" / "manifest.csv").write_text("\n".join([MANIFEST_HEADER, *rows]) + "\n")
    write_ogg(root / "upright-piano-kw" / "samples" / "C4vL.ogg", 60)
    (root / UPRIGHT_PIANO_SFZ).write_text("<global> ampeg_release=0.6\n<group> hivel=127\n"
                                          "<region> lokey=0 hikey=127 pitch_keycenter=60 sample=samples/C4vL.ogg\n")
    return usable


def real_notes(samples: Path, out: Path, *extra: str) -> int:
    return main(["real-notes", "--samples", str(samples), "--out", str(out), "--valid-share", "0.3", *extra])


def note_files(library: Path, samples: Path) -> list[str]:
    """The Philharmonia note files (as the manifest names them) that the library's own .sfz files play."""
    root = (samples / "philharmonia").resolve()
    return [str(p.relative_to(root)) for sfz in sorted(library.glob("*.sfz")) for p in sample_paths(sfz)
            if p.is_relative_to(root)]


def library_texts(out: Path) -> dict[str, str]:
    return {str(p.relative_to(out)): p.read_text() for p in sorted(out.rglob("*")) if p.is_file()}


def test_writes_train_and_valid_libraries_holding_out_whole_files(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    samples, out = tmp_path / "real-notes", tmp_path / "libs"
    usable = make_real_notes(samples)
    assert real_notes(samples, out) == 0
    printed = capsys.readouterr().out
    assert "train: " in printed and "valid: " in printed
    assert sorted(p.name for p in out.iterdir()) == ["real-train", "real-valid"]
    train, valid = check_sfz_library(out / "real-train"), check_sfz_library(out / "real-valid")
    assert train.programs == {0, 40, 56}  # the upright piano (no --piano), violin 41, trumpet 57
    assert valid.programs and valid.programs <= {40, 56}  # held-out Philharmonia notes only
    for library in (train, valid):
        for program, entries in library.instruments.items():
            names = {sfz.name for sfz, _weight in entries}
            if program == 40:
                assert names <= {"violin-sustained.sfz", "violin-pizzicato.sfz"}
            elif program == 56:
                assert names <= {"trumpet-sustained.sfz", "trumpet-short.sfz"}
            else:
                assert [sfz for sfz, _ in entries] == [(samples / UPRIGHT_PIANO_SFZ).resolve()]  # played in place
            assert sum(weight for _sfz, weight in entries) == pytest.approx(1.0, abs=1e-3)  # family shares
    in_train, in_valid = note_files(out / "real-train", samples), note_files(out / "real-valid", samples)
    assert in_train and in_valid
    assert len(in_train) == len(set(in_train)) and len(in_valid) == len(set(in_valid))
    assert not set(in_train) & set(in_valid)  # held out by file: no note in both
    assert sorted(in_train + in_valid) == sorted(usable)  # every single note in exactly one; no phrase, no crescendo

    # a library of real-notes plays: a violin part through real-train sounds (22050 Hz Vorbis notes at 44100 Hz)
    midi = pretty_midi.PrettyMIDI()
    violin = pretty_midi.Instrument(program=40)
    violin.notes = [pretty_midi.Note(100, 67, 0.1, 0.4)]
    midi.instruments.append(violin)
    y = synthesize_sfz(midi, train, 44100)
    assert np.abs(y[int(0.15 * 44100):int(0.35 * 44100)]).max() > 0.01


def test_the_split_is_stable(tmp_path: Path) -> None:
    samples = tmp_path / "real-notes"
    make_real_notes(samples)
    assert real_notes(samples, tmp_path / "a") == 0
    assert real_notes(samples, tmp_path / "b") == 0
    assert library_texts(tmp_path / "a") == library_texts(tmp_path / "b")  # same split, same libraries
    valid = set(note_files(tmp_path / "a" / "real-valid", samples))
    assert real_notes(samples, tmp_path / "seeded", "--seed", "1") == 0
    assert set(note_files(tmp_path / "seeded" / "real-valid", samples)) != valid  # the seed draws another split
    # more notes listed: those already there keep their side (the split hashes each file's own name)
    extra = tuple(manifest_row("violin", "41", pitch, "forte", "arco-normal", "1") for pitch in range(70, 78))
    for row in extra:
        write_ogg(samples / "philharmonia" / row.split(",")[0], int(row.split(",")[3]))
    make_real_notes(samples, extra_rows=extra)
    assert real_notes(samples, tmp_path / "grown") == 0
    grown = set(note_files(tmp_path / "grown" / "real-valid", samples))
    assert grown - {row.split(",")[0] for row in extra} == valid


def test_piano_option_trains_the_grand_and_validates_on_the_upright(tmp_path: Path) -> None:
    samples, out, piano = tmp_path / "real-notes", tmp_path / "libs", tmp_path / "piano"
    make_real_notes(samples)
    for name in ("C4v10", "A4v10", "C4v4"):
        write_ogg(piano / f"{name}.ogg", 60 if name.startswith("C4") else 69)
    (piano / "notes.txt").write_text("not a sample")
    assert real_notes(samples, out, "--piano", str(piano)) == 0
    train, valid = check_sfz_library(out / "real-train"), check_sfz_library(out / "real-valid")
    assert [sfz.name for sfz, _ in train.instruments[0]] == ["piano-grand.sfz"]
    assert [sfz for sfz, _ in valid.instruments[0]] == [(samples / UPRIGHT_PIANO_SFZ).resolve()]
    grand = (out / "real-train" / "piano-grand.sfz").read_text()
    assert sorted(int(k) for k in re.findall(r"pitch_keycenter=(\d+)", grand)) == [60, 60, 69]
    assert "amp_veltrack=100" in grand and len(re.findall(r"<group>", grand)) == 2  # layers 4 and 10


def test_unknown_instrument_exits_2_naming_the_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    samples, out = tmp_path / "real-notes", tmp_path / "libs"
    make_real_notes(samples, extra_rows=("banjo/banjo_C4_1_forte_normal.ogg,banjo,,60,forte,normal,1,0.4,-10.0",))
    lines = (samples / "philharmonia" / "manifest.csv").read_text().splitlines()
    assert real_notes(samples, out) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert f"manifest.csv line {len(lines)}: unknown instrument 'banjo'" in err, err
    assert not out.exists()


def test_missing_manifest_exits_2_naming_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    samples, out = tmp_path / "real-notes", tmp_path / "libs"
    make_real_notes(samples)
    (samples / "philharmonia" / "manifest.csv").unlink()
    assert real_notes(samples, out) == 2
    err = capsys.readouterr().err.strip()
    assert re.fullmatch(r"instrument-id real-notes: error: \S*real-notes/philharmonia/manifest\.csv: not found.*", err)
    assert not out.exists()


@pytest.mark.parametrize("share", ["0", "1", "-0.2"])
def test_valid_share_must_be_between_0_and_1(tmp_path: Path, capsys: pytest.CaptureFixture[str], share: str) -> None:
    samples = tmp_path / "real-notes"
    make_real_notes(samples)
    assert main(["real-notes", "--samples", str(samples), "--out", str(tmp_path / "libs"), "--valid-share", share]) == 2
    assert "--valid-share must be between 0 and 1" in capsys.readouterr().err
    assert not (tmp_path / "libs").exists()


def test_a_missing_note_file_exits_2_and_leaves_no_library(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    samples, out = tmp_path / "real-notes", tmp_path / "libs"
    make_real_notes(samples, extra_rows=("violin/gone.ogg,violin,41,60,forte,arco-normal,1,0.4,-10.0",))
    assert real_notes(samples, out) == 2
    assert "gone.ogg does not exist" in capsys.readouterr().err
    assert not out.exists()


def test_rewriting_the_same_out_checks_the_new_libraries(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    samples, out = tmp_path / "real-notes", tmp_path / "libs"
    make_real_notes(samples)
    assert real_notes(samples, out) == 0
    make_real_notes(samples, extra_rows=("violin/gone.ogg,violin,41,60,forte,arco-normal,1,0.4,-10.0",))
    assert real_notes(samples, out) == 2
    assert "gone.ogg does not exist" in capsys.readouterr().err


def test_programs_csv_keeps_each_source_name_whole(tmp_path: Path) -> None:
    samples, out = tmp_path / "real-notes", tmp_path / "libs"
    make_real_notes(samples)
    assert real_notes(samples, out) == 0
    assert check_sfz_library(out / "real-train").sources == tuple(sorted((PHILHARMONIA_SOURCE, UPRIGHT_SOURCE)))


def test_hold_out_family_puts_every_note_of_it_in_valid(tmp_path: Path) -> None:
    samples = tmp_path / "real-notes"
    make_real_notes(samples)
    assert real_notes(samples, tmp_path / "out", "--hold-out-family", "strings") == 0
    train = set(note_files(tmp_path / "out" / "real-train", samples))
    valid = set(note_files(tmp_path / "out" / "real-valid", samples))
    assert train and not any(name.startswith("violin/") for name in train)  # no string note trains
    assert any(name.startswith("violin/") for name in valid)
