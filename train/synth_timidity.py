"""TiMidity++ patch sets (GUS .pat instruments, e.g. Debian's freepats) as a timbre source beside the soundfonts.

A patch set is named by its TiMidity++ configuration file (freepats: /etc/timidity/freepats.cfg). Unlike a General
MIDI soundfont it may lack programs (freepats has no viola and no contrabass): `PatchSet.programs` lists the ones it
has, and synth.py draws another source for a part whose program is missing. Each part is rendered by the `timidity`
program from a one-part MIDI file, mono at the corpus rate, with --preserve-silence so that sample 0 is MIDI time 0
(by default TiMidity++ drops the silence before the first note, which would shift audio against the labels).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pretty_midi
import soundfile as sf

from instrument_id.errors import InstrumentIdError
from train.synth_perform import SAMPLE_RATE_HZ

PATCH_SET_SUFFIX = ".cfg"
INSTALL_HINT = "install TiMidity++ and a patch set (Debian/Ubuntu: apt-get install timidity freepats)"
RENDER_TIMEOUT_SECONDS = 600


@dataclass(frozen=True)
class PatchSet:
    """A TiMidity++ configuration and the melodic programs (0-based, bank 0) it maps to patches."""

    path: Path
    programs: frozenset[int]


def timidity_binary() -> str:
    """The path of the `timidity` program, or an error saying how to install it."""
    found = shutil.which("timidity")
    if found is None:
        raise InstrumentIdError(f"the timidity program is not on PATH; {INSTALL_HINT}")
    return found


def bank0_programs(text: str, path: Path) -> frozenset[int]:
    """0-based programs of the `bank 0` section(s) of a TiMidity++ configuration's text."""
    programs, section = set(), None
    for number, raw in enumerate(text.splitlines(), start=1):
        words = raw.split("#", 1)[0].split()
        if not words:
            continue
        if words[0] in ("bank", "drumset"):
            if len(words) < 2 or not words[1].isdigit():
                raise InstrumentIdError(f"{path}:{number}: '{raw.strip()}' names no bank number")
            section = (words[0], int(words[1]))
        elif words[0].isdigit() and section == ("bank", 0):
            if len(words) < 2:
                raise InstrumentIdError(f"{path}:{number}: program {words[0]} names no patch file")
            program = int(words[0])
            if not 0 <= program <= 127:
                raise InstrumentIdError(f"{path}:{number}: program {program} is outside 0..127")
            programs.add(program)
    return frozenset(programs)


def check_patch_set(path: str | os.PathLike) -> PatchSet:
    """The patch set a readable TiMidity++ .cfg maps (at least one bank-0 program), once timidity is installed."""
    path = Path(path)
    if path.suffix.lower() != PATCH_SET_SUFFIX:
        raise InstrumentIdError(f"{path}: not a TiMidity++ configuration, expected a {PATCH_SET_SUFFIX} file")
    if not path.is_file():
        raise InstrumentIdError(f"{path}: TiMidity++ configuration does not exist; {INSTALL_HINT}")
    try:
        text = path.read_text(encoding="utf-8", errors="strict")
    except (OSError, UnicodeDecodeError) as exc:
        raise InstrumentIdError(f"{path}: cannot read this TiMidity++ configuration ({exc})") from None
    programs = bank0_programs(text, path)
    if not programs:
        raise InstrumentIdError(f"{path}: maps no melodic program (no '<program> <patch>' line under 'bank 0')")
    timidity_binary()
    return PatchSet(path.resolve(), programs)


def synthesize_timidity(midi: pretty_midi.PrettyMIDI, patch_set: PatchSet, num_samples: int,
                        reverb: bool) -> np.ndarray:
    """(num_samples,) float32 mono: every part of midi through one `timidity` run (its chorus off; its Freeverb on
    when reverb is set, as FluidSynth's plate in some pieces)."""
    missing = sorted({inst.program for inst in midi.instruments} - patch_set.programs)
    if missing:
        raise InstrumentIdError(f"{patch_set.path}: no patch for General MIDI program(s) {[p + 1 for p in missing]}")
    with tempfile.TemporaryDirectory(prefix="instrument-id-timidity-") as tmp:
        midi_path, wav_path = Path(tmp) / "part.mid", Path(tmp) / "part.wav"
        midi.write(str(midi_path))
        command = [timidity_binary(), "-c", str(patch_set.path), "-Ow", "--output-mono", "-s", str(SAMPLE_RATE_HZ),
                   "--preserve-silence", "-EFchorus=d", f"-EFreverb={'f' if reverb else 'd'}",
                   "-o", str(wav_path), str(midi_path)]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=RENDER_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            raise InstrumentIdError(f"timidity took over {RENDER_TIMEOUT_SECONDS} s on one part") from None
        if done.returncode != 0 or not wav_path.is_file():
            tail = " | ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
            raise InstrumentIdError(f"timidity failed on {patch_set.path} (exit {done.returncode}): {tail}")
        y, rate = sf.read(wav_path, dtype="float32", always_2d=True)
    if rate != SAMPLE_RATE_HZ:
        raise InstrumentIdError(f"timidity wrote {rate} Hz, asked for {SAMPLE_RATE_HZ}")
    out = np.zeros(num_samples, dtype=np.float32)
    take = min(num_samples, len(y))
    out[:take] = y[:take, 0]  # the release past num_samples is cut, as FluidSynth's is
    return out
