"""SFZ libraries (a folder of .sfz instruments and programs.csv) as a timbre source played by sfizz: the library
check, the .sfz writer's key ranges and velocity layers, rendering in time and at pitch, and `synth` with a library
beside a fallback soundfont. Every library here is a few generated notes written into tmp_path."""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Callable

import numpy as np
import pretty_midi
import pytest
import soundfile as sf

from instrument_id.cli import main
from instrument_id.errors import InstrumentIdError
from train.musicnet import list_recordings
from train.sfz_write import NoteSample, sfz_text
from train.synth import plan_corpus
from train.synth_perform import LABEL_HEADER
from train.synth_render import check_soundfont, default_soundfont, source_programs
from train.synth_sfz import (check_sfz, check_sfz_library, choose_instrument, read_sfz_library, sample_paths,
                             synthesize_sfz)

pytest.importorskip("pysfizz", reason="needs pysfizz (the sfizz SFZ player)")

RATE_HZ = 44100
VIOLIN = 40  # 0-based General MIDI program (41 in programs.csv)


def midi_to_hz(pitch: float) -> float:
    return 440.0 * 2.0 ** ((pitch - 69) / 12.0)


def write_tone(path: Path, pitch: int, seconds: float = 1.0, level: float = 0.3, rate_hz: int = RATE_HZ,
               **kwargs: str) -> Path:
    """A harmonic tone (fundamental strongest) at pitch, with short fades: a stand-in for one recorded note."""
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * rate_hz)) / rate_hz
    y = sum(level / k * np.sin(2 * np.pi * k * midi_to_hz(pitch) * t) for k in (1, 2, 3))
    y *= np.minimum(1.0, np.minimum(t, t[-1] - t) / 0.005)
    sf.write(path, y.astype(np.float32), rate_hz, **kwargs)
    return path


def make_library(folder: Path, pitches: tuple[int, ...] = (60, 64, 67), program: int = VIOLIN + 1,
                 velocity: int = 96) -> Path:
    """folder holding v.sfz over one generated note per pitch and programs.csv mapping program to it."""
    notes = [NoteSample(write_tone(folder / "samples" / f"n{p}.wav", p), p, velocity) for p in pitches]
    (folder / "v.sfz").write_text(sfz_text(notes, "test violin"))
    (folder / "programs.csv").write_text(f"program,sfz,weight\n{program},v.sfz,1\n")
    return folder


def part(program: int, notes: list[tuple[int, float, float]], velocity: int = 100) -> pretty_midi.PrettyMIDI:
    midi = pretty_midi.PrettyMIDI()
    inst = pretty_midi.Instrument(program=program)
    inst.notes = [pretty_midi.Note(velocity, pitch, start, end) for pitch, start, end in notes]
    midi.instruments.append(inst)
    return midi


def peak_hz(y: np.ndarray, start_s: float, end_s: float) -> float:
    segment = y[int(start_s * RATE_HZ):int(end_s * RATE_HZ)]
    spectrum = np.abs(np.fft.rfft(segment * np.hanning(len(segment))))
    return float(np.argmax(spectrum) * RATE_HZ / len(segment))


def level(y: np.ndarray, start_s: float, end_s: float) -> float:
    return float(np.abs(y[int(start_s * RATE_HZ):int(end_s * RATE_HZ)]).max())


def test_library_loads_and_maps_its_program(tmp_path: Path) -> None:
    lib = make_library(tmp_path / "lib")
    library = check_sfz_library(lib)
    assert library.path == lib.resolve()
    assert library.programs == {VIOLIN}
    assert library.instruments[VIOLIN] == (((lib / "v.sfz").resolve(), 1.0),)
    assert sample_paths(lib / "v.sfz") == [(lib / "samples" / f"n{p}.wav").resolve() for p in (60, 64, 67)]
    assert check_soundfont(lib) == lib.resolve()  # a folder given to `synth --soundfont` is an SFZ library
    assert source_programs(lib.resolve()) == {VIOLIN}
    assert read_sfz_library(lib) == library  # what the rendering workers read: the same mapping, nothing loaded


def test_a_part_sounds_in_time_and_at_the_played_pitch(tmp_path: Path) -> None:
    library = check_sfz_library(make_library(tmp_path / "lib"))
    # 60 is a sample's own pitch; 72 (an octave up) is the 67 sample transposed by 5 semitones
    midi = part(VIOLIN, [(60, 0.5, 1.0), (72, 2.0, 2.5)])
    n = 4 * RATE_HZ
    y = synthesize_sfz(midi, library, n)
    assert y.shape == (n,) and y.dtype == np.float32
    loudest = float(np.abs(y).max())
    assert loudest > 0.05
    first = np.flatnonzero(np.abs(y) > 0.05 * loudest)[0] / RATE_HZ
    assert 0.5 <= first < 0.52  # starts when the note does
    assert level(y, 0.6, 0.95) > 0.3 * loudest and level(y, 2.1, 2.45) > 0.3 * loudest  # sounds during the notes
    for quiet in ((0.0, 0.49), (1.5, 1.95), (3.0, 4.0)):  # before, between (after the 0.25 s release), after
        assert level(y, *quiet) < 0.01 * loudest, quiet
    low, high = peak_hz(y, 0.55, 0.95), peak_hz(y, 2.05, 2.45)
    assert low == pytest.approx(midi_to_hz(60), rel=0.02)
    assert high == pytest.approx(midi_to_hz(72), rel=0.02)
    assert high / low == pytest.approx(2.0, rel=0.02)


def test_sfz_text_layers_cover_every_velocity_and_key(tmp_path: Path) -> None:
    piano = [NoteSample(write_tone(tmp_path / f"p{p}.wav", p, level=0.03), p, 44) for p in (48, 60, 72)]
    piano.append(NoteSample(write_tone(tmp_path / "p60b.wav", 60, level=0.03), 60, 44))  # a second take of 60
    forte = [NoteSample(write_tone(tmp_path / f"f{p}.wav", p, level=0.3), p, 96) for p in (50, 62)]
    text = sfz_text(piano + forte, "layers")
    groups = [g for g in re.split(r"(?m)^(?=<group>)", text) if g.startswith("<group>")]
    assert len(groups) == 2
    velocities = sorted((int(re.search(r"lovel=(\d+)", g)[1]), int(re.search(r"hivel=(\d+)", g)[1])) for g in groups)
    assert velocities[0][0] == 1 and velocities[-1][1] == 127
    assert all(hi + 1 == lo for (_, hi), (lo, _) in zip(velocities, velocities[1:]))  # no gap, no overlap
    assert velocities[0][0] <= 44 <= velocities[0][1] and velocities[1][0] <= 96 <= velocities[1][1]
    for group in groups:
        regions = [dict(re.findall(r"(\w+)=(\S+)", line)) for line in group.splitlines() if line.startswith("<region>")]
        keys = sorted({(int(r["lokey"]), int(r["hikey"])) for r in regions})
        assert keys[0][0] == 0 and keys[-1][1] == 127
        assert all(hi + 1 == lo for (_, hi), (lo, _) in zip(keys, keys[1:]))
        for r in regions:
            assert int(r["lokey"]) <= int(r["pitch_keycenter"]) <= int(r["hikey"])
    takes = [line for line in text.splitlines() if "pitch_keycenter=60" in line]
    assert len(takes) == 2
    assert "seq_length=2 seq_position=1" in takes[0] and "seq_length=2 seq_position=2" in takes[1]
    assert "seq_" not in text.replace(takes[0], "").replace(takes[1], "")  # single takes need no round-robin
    assert re.search(r"(?m)^<control>\nhint_ram_based=1$", text)  # samples held whole: no streaming race

    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "layers.sfz").write_text(text)
    (lib / "programs.csv").write_text("program,sfz\n41,layers.sfz\n")
    library = check_sfz_library(lib)
    soft = synthesize_sfz(part(VIOLIN, [(61, 0.1, 0.6)], velocity=30), library, RATE_HZ)
    loud = synthesize_sfz(part(VIOLIN, [(61, 0.1, 0.6)], velocity=110), library, RATE_HZ)
    # amp_veltrack=0: the level is the recording's, so the piano layer sounds about 10x quieter than the forte one
    assert 5 < level(loud, 0.2, 0.6) / level(soft, 0.2, 0.6) < 20


def test_takes_alternate_note_by_note_and_every_render_is_the_same(tmp_path: Path) -> None:
    """Two takes of a note alternate (round-robin, not a random draw that depends on earlier renders), and a part
    whose notes outlast sfizz's preload (8,192 frames) renders the same in six processes at once."""
    from concurrent.futures import ProcessPoolExecutor

    takes = [NoteSample(write_tone(tmp_path / "s" / f"t{k}.wav", 60, seconds=3.0, level=0.1 + 0.2 * k), 60, 96)
             for k in range(2)]
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "t.sfz").write_text(sfz_text(takes, "two takes"))
    (tmp_path / "lib" / "programs.csv").write_text("program,sfz\n41,t.sfz\n")
    notes = [(60, 0.1 + 2.0 * k, 2.0 + 2.0 * k) for k in range(4)]  # each 1.9 s: far past the preload
    library = check_sfz_library(tmp_path / "lib")
    y = synthesize_sfz(part(VIOLIN, notes), library, 8 * RATE_HZ)
    levels = [level(y, 1.0 + 2.0 * k, 1.8 + 2.0 * k) for k in range(4)]
    assert all(lv > 0.01 for lv in levels)  # every held note sounds to its end
    assert levels[1] > 2 * levels[0] and levels[3] > 2 * levels[2]  # take 1, take 2, take 1, take 2
    with ProcessPoolExecutor(6) as pool:
        renders = list(pool.map(synthesize_sfz, [part(VIOLIN, notes)] * 6, [library] * 6, [8 * RATE_HZ] * 6))
    assert all(np.array_equal(r, y) for r in renders)


def test_an_sfz_without_the_ram_hint_plays_whole_from_a_copy_that_finds_its_samples(tmp_path: Path) -> None:
    """A user's .sfz with relative sample paths and no hint_ram_based renders whole, its samples found beside it."""
    write_tone(tmp_path / "user" / "smp" / "a.wav", 57, seconds=3.0)
    (tmp_path / "user" / "bass.sfz").write_text("<region> sample=smp/a.wav pitch_keycenter=57 loop_mode=no_loop\n")
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "programs.csv").write_text(f"program,sfz\n44,{tmp_path / 'user' / 'bass.sfz'}\n")
    y = synthesize_sfz(part(43, [(57, 0.1, 2.6)]), check_sfz_library(lib), 3 * RATE_HZ)
    assert level(y, 2.0, 2.5) > 0.5 * level(y, 0.3, 0.8) > 0.01  # sounds to the end of the 2.5 s note
    assert abs(peak_hz(y, 0.5, 2.5) - midi_to_hz(57)) < 5
    assert "hint_ram_based" not in (tmp_path / "user" / "bass.sfz").read_text()  # the user's file is untouched


def test_choose_instrument_draws_by_weight_and_stably(tmp_path: Path) -> None:
    lib = make_library(tmp_path / "lib")
    (lib / "w.sfz").write_text((lib / "v.sfz").read_text())
    (lib / "programs.csv").write_text("program,sfz,weight\n41,v.sfz,3\n41,w.sfz,1\n")
    library = check_sfz_library(lib)
    parts = [part(VIOLIN, [(60 + i % 12, 0.1 * i, 0.1 * i + 0.5)]).instruments[0] for i in range(400)]
    picks = [choose_instrument(library, p).name for p in parts]
    assert picks.count("v.sfz") / len(picks) == pytest.approx(0.75, abs=0.08)
    assert [choose_instrument(library, p).name for p in parts] == picks  # seeded by the part's notes
    with pytest.raises(InstrumentIdError, match="no instrument for General MIDI program 43"):
        choose_instrument(library, part(42, [(60, 0.0, 1.0)]).instruments[0])


def _no_programs_csv(lib: Path) -> None:
    (lib / "programs.csv").unlink()


def _missing_sfz(lib: Path) -> None:
    (lib / "programs.csv").write_text("program,sfz\n41,v.sfz\n41,missing.sfz\n")


def _missing_sample(lib: Path) -> None:
    (lib / "samples" / "n64.wav").unlink()


def _garbage_sample(lib: Path) -> None:
    (lib / "samples" / "n64.wav").write_bytes(b"this is not audio \x00\x01\x02" * 100)


def _program_zero(lib: Path) -> None:
    (lib / "programs.csv").write_text("program,sfz\n0,v.sfz\n")


def _program_not_a_number(lib: Path) -> None:
    (lib / "programs.csv").write_text("program,sfz\n41,v.sfz\nx,v.sfz\n")


def _weight_zero(lib: Path) -> None:
    (lib / "programs.csv").write_text("program,sfz,weight\n41,v.sfz,0\n")


def _not_an_sfz(lib: Path) -> None:
    (lib / "programs.csv").write_text("program,sfz\n41,samples/n60.wav\n")


def _no_sfz_column(lib: Path) -> None:
    (lib / "programs.csv").write_text("program,instrument\n41,v.sfz\n")


def _no_rows(lib: Path) -> None:
    (lib / "programs.csv").write_text("program,sfz\n")


def _sfz_names_no_sample(lib: Path) -> None:
    (lib / "v.sfz").write_text("<region> lokey=0 hikey=127\n")


BAD_LIBRARIES = [  # (how the library is broken, what the error says)
    (_no_programs_csv, r"lib: an SFZ library needs programs\.csv"),
    (_missing_sfz, r"lib/missing\.sfz: SFZ file does not exist"),
    (_missing_sample, r"lib/v\.sfz: sample \S*/samples/n64\.wav does not exist"),
    (_garbage_sample, r"lib/v\.sfz: sample \S*/samples/n64\.wav cannot be read"),
    (_program_zero, r"lib/programs\.csv line 2: program must be 1\.\.128"),
    (_program_not_a_number, r"lib/programs\.csv line 3: program must be an integer"),
    (_weight_zero, r"lib/programs\.csv line 2: .*weight above 0"),
    (_not_an_sfz, r"lib/programs\.csv line 2: samples/n60\.wav is not an \.sfz file"),
    (_no_sfz_column, r"lib/programs\.csv: needs the columns program and sfz"),
    (_no_rows, r"lib/programs\.csv: maps no program"),
    (_sfz_names_no_sample, r"lib/v\.sfz: names no sample"),
]


@pytest.mark.parametrize(("breakage", "message"), BAD_LIBRARIES, ids=[f.__name__.strip("_") for f, _ in BAD_LIBRARIES])
def test_bad_libraries_are_refused_naming_the_file(tmp_path: Path, breakage: Callable[[Path], None],
                                                   message: str) -> None:
    lib = make_library(tmp_path / "lib")
    breakage(lib)
    with pytest.raises(InstrumentIdError, match=message):
        check_sfz_library(lib)


def test_sample_paths_follow_default_path_and_keep_spaces(tmp_path: Path) -> None:
    folder = tmp_path / "inst"
    write_tone(folder / "audio" / "my note.wav", 69)
    sfz = folder / "x.sfz"
    sfz.write_text("<control> default_path=audio/\n<region> sample=my note.wav lokey=0 hikey=127 "
                   "pitch_keycenter=69 // a comment sample=nothing.wav\n<region> sample=*sine\n")
    assert sample_paths(sfz) == [(folder / "audio" / "my note.wav").resolve()]
    assert check_sfz(sfz) == sfz.resolve()


def test_a_sample_sfizz_cannot_play_is_refused(tmp_path: Path) -> None:
    if "OPUS" not in sf.available_subtypes("OGG"):
        pytest.skip("this libsndfile writes no Ogg Opus")
    lib = tmp_path / "lib"
    note = write_tone(lib / "n69.ogg", 69, rate_hz=48000, format="OGG", subtype="OPUS")
    (lib / "v.sfz").write_text(sfz_text([NoteSample(note, 69, 96)], "opus"))
    (lib / "programs.csv").write_text("program,sfz\n41,v.sfz\n")
    try:
        library = check_sfz_library(lib)
    except InstrumentIdError as exc:
        assert "n69.ogg" in str(exc)
        return
    y = synthesize_sfz(part(VIOLIN, [(69, 0.1, 0.6)]), library, RATE_HZ)
    assert np.abs(y).max() > 0.01, "the library passed the check, yet its note renders silent"


def synth(out: Path, lib: Path, *extra: str, seed: int = 0) -> int:
    return main(["synth", "--out", str(out), "--minutes", "0.3", "--seed", str(seed), "--soundfont", str(lib),
                 "--ensembles", "solos", "--no-instrument", "0", "--jobs", "1", *extra])


def test_synth_plays_the_library_and_falls_back_for_other_programs(tmp_path: Path) -> None:
    pytest.importorskip("fluidsynth", reason="needs pyfluidsynth and libfluidsynth3")
    lib = make_library(tmp_path / "real-lib")
    fallback = default_soundfont()
    # a seed whose plan has a violin piece (the library) and another (the fallback): plans are cheap, rendering not
    seed = next(s for s in range(200) if {tuple(p.soundfonts) for p in plan_corpus(
        0.3, s, [lib.resolve()], no_instrument_share=0.0, ensemble_set="solos", fallbacks=[fallback])}
        == {(str(lib.resolve()),), (str(fallback),)})
    out = tmp_path / "corpus"
    assert synth(out, lib, "--fallback-soundfont", str(fallback), seed=seed) == 0
    recordings = list_recordings(out)
    assert recordings and all(Path(r.wav_path).is_file() and Path(r.labels_path).is_file() for r in recordings)
    with open(out / "musicnet_metadata.csv", newline="") as handle:
        metadata = {row["id"]: row for row in csv.DictReader(handle)}
    fonts = {}
    for rec in recordings:
        row = metadata[rec.id]
        fonts[row["ensemble"]] = row["source"].removeprefix("instrument-id synth (").split(",")[0]
        labels = Path(rec.labels_path).read_text().splitlines()
        assert labels[0] == LABEL_HEADER and len(labels) > 1
        if row["ensemble"] == "Violin Recital":
            assert {line.split(",")[2] for line in labels[1:]} == {"41"}
            y, rate = sf.read(rec.wav_path)
            assert rate == RATE_HZ and np.abs(y).max() > 0.05
    assert fonts.pop("Violin Recital") == "real-lib"  # the library's folder name is the recording's source
    assert fonts and set(fonts.values()) == {fallback.name}


def test_synth_with_a_broken_library_exits_2_and_writes_nothing(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    lib = make_library(tmp_path / "lib")
    (lib / "samples" / "n64.wav").unlink()
    out = tmp_path / "corpus"
    assert synth(out, lib, "--fallback-soundfont", str(default_soundfont())) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert re.fullmatch(r"instrument-id synth: error: \S*lib/v\.sfz: sample \S*n64\.wav does not exist", err), err
    assert not out.exists()


def test_synth_without_a_fallback_names_the_program_no_source_plays(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    lib = make_library(tmp_path / "lib")
    out = tmp_path / "corpus"
    assert synth(out, lib) == 2  # solos draw instruments the violin-only library lacks
    err = capsys.readouterr().err.strip()
    assert re.fullmatch(r"instrument-id synth: error: no timbre source given plays [\w ]+ \(GM program \d+\)", err), err
    assert not out.exists()


def test_drum_pieces_are_played_by_a_soundfont_never_by_an_sfz_library(tmp_path: Path) -> None:
    pytest.importorskip("fluidsynth", reason="needs pyfluidsynth and libfluidsynth3")
    from train.synth import synthesize_piece
    from train.synth_ensembles import ENSEMBLE_BY_NAME

    lib = make_library(tmp_path / "real-lib", program=1)  # a piano library: program 0 must not play the drums
    fallback = default_soundfont()
    plans = plan_corpus(400, 3, [lib.resolve()], no_instrument_share=0.0, ensemble_set="all-with-drums",
                        fallbacks=[fallback])
    drummed = [p for p in plans if "drum kit" in ENSEMBLE_BY_NAME[p.ensemble].instruments]
    assert drummed
    for plan in drummed:
        parts = [name for name, _role in ENSEMBLE_BY_NAME[plan.ensemble].parts]
        assert plan.soundfonts[parts.index("drum kit")] == str(fallback)
    assert not any("drum kit" in ENSEMBLE_BY_NAME[p.ensemble].instruments
                   for p in plan_corpus(30, 3, [lib.resolve()], no_instrument_share=0.0, ensemble_set="all",
                                        fallbacks=[fallback]))  # "all" is as it was
    kit = next(p for p in drummed if p.ensemble == "None of the 11: Drum Kit")
    root = tmp_path / "corpus"
    for split in ("train", "test"):
        (root / f"{split}_data").mkdir(parents=True)
        (root / f"{split}_labels").mkdir(parents=True)
    row = synthesize_piece(kit, str(root))
    assert row["ensemble"] == "None of the 11: Drum Kit"
    labels = (root / f"{kit.split}_labels" / f"{kit.recording_id}.csv").read_text().splitlines()
    assert labels == [LABEL_HEADER]  # heard, never labelled
    y, _rate = sf.read(root / f"{kit.split}_data" / f"{kit.recording_id}.wav")
    assert np.abs(y).max() > 0.05  # the soundfont's bank 128 kit sounds
