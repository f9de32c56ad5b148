"""Render a performance with FluidSynth (all parts at once, or each part on its own pass) and write 16-bit WAV.

A timbre source is a General MIDI soundfont (.sf2/.sf3, FluidSynth), a TiMidity++ patch set (.cfg, e.g. freepats;
train/synth_timidity.py) or an SFZ library (a folder of .sfz instruments and programs.csv, sfizz;
train/synth_sfz.py); `synthesize` plays any of them.
"""

from __future__ import annotations

import ctypes
import functools
import os
from pathlib import Path
from types import ModuleType

import numpy as np
import pretty_midi
import soundfile as sf

from instrument_id.atomic import atomic_path
from instrument_id.errors import InstrumentIdError
from train.synth_perform import SAMPLE_RATE_HZ, midi_channel, midi_events
from train.synth_sfz import check_sfz_library, is_sfz_library, read_sfz_library, synthesize_sfz
from train.synth_timidity import PATCH_SET_SUFFIX, PatchSet, check_patch_set, synthesize_timidity

SOUNDFONT_SUFFIXES = (".sf2", ".sf3")
INSTALL_HINT = ("install libfluidsynth3 and pyfluidsynth (Debian/Ubuntu: apt-get install libfluidsynth3; "
                "macOS: brew install fluid-synth; then pip install pyfluidsynth)")
# FluidSynth's own reverb is an artificial plate: the recording's room comes from train/synth_room.py, so the plate
# only sometimes sits on top of it, as a studio's reverb would
SYNTH_REVERB_PROBABILITY = 0.3


def load_fluidsynth() -> ModuleType:
    """Import pyfluidsynth (which loads libfluidsynth) or explain how to install it."""
    try:
        import fluidsynth
    except (ImportError, OSError) as exc:
        raise InstrumentIdError(f"cannot load FluidSynth ({exc}); {INSTALL_HINT}") from None
    if not hasattr(fluidsynth, "Synth") or not hasattr(fluidsynth, "_fl"):
        raise InstrumentIdError(f"the 'fluidsynth' module found is not pyfluidsynth; {INSTALL_HINT}")
    return fluidsynth


def default_soundfont() -> Path:
    """The small General MIDI soundfont that pretty_midi ships."""
    return Path(os.path.dirname(pretty_midi.__file__)) / "TimGM6mb.sf2"


def check_soundfont(path: str | os.PathLike) -> Path:
    """Return path (resolved) if it is a readable .sf2/.sf3 SoundFont (RIFF 'sfbk'), a TiMidity++ patch set
    (.cfg mapping at least one program, timidity installed) or an SFZ library whose every instrument loads, else
    raise naming it."""
    path = Path(path)
    if is_sfz_library(path):
        return check_sfz_library(path.resolve()).path
    if path.suffix.lower() == PATCH_SET_SUFFIX:
        return patch_set(path.resolve()).path  # parsed once: planning and rendering read the same cached set
    if path.suffix.lower() not in SOUNDFONT_SUFFIXES:
        raise InstrumentIdError(f"{path}: not a timbre source, expected a .sf2/.sf3 soundfont, a TiMidity++ .cfg or an "
                                "SFZ library folder (.sfz files and programs.csv)")
    if not path.is_file():
        raise InstrumentIdError(f"{path}: soundfont file does not exist")
    try:
        with open(path, "rb") as handle:
            head = handle.read(12)
    except OSError as exc:
        raise InstrumentIdError(f"{path}: cannot read soundfont ({exc.strerror})") from None
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"sfbk":
        raise InstrumentIdError(f"{path}: not a SoundFont file (no RIFF 'sfbk' header)")
    return path.resolve()


@functools.lru_cache(maxsize=None)
def patch_set(path: Path) -> PatchSet:
    """The parsed patch set of a .cfg (parsed once per process and path; failures are not cached)."""
    return check_patch_set(path)


def source_programs(path: Path) -> frozenset[int] | None:
    """0-based programs a timbre source can play: None for a soundfont (General MIDI: all of them)."""
    if is_sfz_library(path):
        return check_sfz_library(Path(path)).programs
    return patch_set(Path(path)).programs if Path(path).suffix.lower() == PATCH_SET_SUFFIX else None


def fluidsynth_settings(rng: np.random.Generator) -> dict[str, float | int]:
    """One piece's FluidSynth settings: a seeded chorus, and a seeded plate reverb that is on in some pieces only."""
    reverb_on = bool(rng.random() < SYNTH_REVERB_PROBABILITY)
    return {"synth.reverb.active": int(reverb_on), "synth.reverb.room-size": rng.uniform(0.2, 0.9),
            "synth.reverb.damp": rng.uniform(0.1, 0.6), "synth.reverb.width": rng.uniform(0.3, 1.0),
            "synth.reverb.level": rng.uniform(0.4, 0.9), "synth.chorus.depth": rng.uniform(2.0, 10.0),
            "synth.chorus.level": rng.uniform(0.5, 2.0)}


def synthesize(midi: pretty_midi.PrettyMIDI, soundfont: Path, num_samples: int,
               settings: dict[str, float | int]) -> np.ndarray:
    """(num_samples,) float32 mono: all parts of midi through one fresh FluidSynth with the given settings (or, for a
    TiMidity++ .cfg, one timidity run, with its reverb on where the settings turn FluidSynth's on). soundfont is a
    source check_soundfont has passed (an SFZ library is not checked again here)."""
    if is_sfz_library(soundfont):
        return synthesize_sfz(midi, read_sfz_library(soundfont), num_samples)  # checked when the corpus was planned
    if soundfont.suffix.lower() == PATCH_SET_SUFFIX:
        return synthesize_timidity(midi, patch_set(soundfont), num_samples, bool(settings["synth.reverb.active"]))
    settings = {**settings, "synth.dynamic-sample-loading": 1}  # only the programs used are decoded: .sf3 loads fast
    fluidsynth = load_fluidsynth()
    # a fresh synth per pass: a reused one carries reverb state and block phase, so output would depend on order
    synth = fluidsynth.Synth(gain=0.4, samplerate=float(SAMPLE_RATE_HZ), **settings)
    try:
        sfid = synth.sfload(str(soundfont))
        if sfid < 0:
            raise InstrumentIdError(f"{soundfont}: FluidSynth could not load this soundfont")
        for index, inst in enumerate(midi.instruments):
            channel = midi_channel(index, inst)
            if synth.program_select(channel, sfid, 128 if inst.is_drum else 0, inst.program) < 0:
                raise InstrumentIdError(f"{soundfont}: no preset for General MIDI program {inst.program + 1}")
        # pyfluidsynth only wraps the int16 writer; the float one avoids clipping and double quantization
        write_float = fluidsynth._fl.fluid_synth_write_float
        write_float.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_int, ctypes.c_int,
                                ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
        left = np.zeros(num_samples, dtype=np.float32)
        right = np.zeros(num_samples, dtype=np.float32)
        position = 0
        for sample, _order, _seq, kind, channel, a, b in midi_events(midi) + [(num_samples, 0, 0, "end", 0, 0, 0)]:
            sample = min(sample, num_samples)
            if sample > position:
                write_float(synth.synth, sample - position, left.ctypes.data, position, 1,
                            right.ctypes.data, position, 1)
                position = sample
            if kind == "on":
                synth.noteon(channel, a, b)
            elif kind == "off":
                synth.noteoff(channel, a)
            elif kind == "cc":
                synth.cc(channel, a, b)
            elif kind == "bend":
                synth.pitch_bend(channel, a)
    finally:
        synth.delete()
    return 0.5 * (left + right)  # (num_samples,) mono, as MusicNet


def synthesize_parts(midi: pretty_midi.PrettyMIDI, soundfonts: list[Path], num_samples: int,
                     settings: dict[str, float | int]) -> np.ndarray:
    """(n_parts, num_samples) float32: each instrument of midi on its own FluidSynth pass, with its own soundfont."""
    if len(soundfonts) != len(midi.instruments):
        raise InstrumentIdError(f"got {len(soundfonts)} soundfonts for {len(midi.instruments)} parts")
    parts = np.zeros((len(midi.instruments), num_samples), dtype=np.float32)  # (n_parts, num_samples)
    for index, (inst, soundfont) in enumerate(zip(midi.instruments, soundfonts)):
        alone = pretty_midi.PrettyMIDI()
        alone.instruments.append(inst)
        parts[index] = synthesize(alone, soundfont, num_samples, settings)
    return parts


def normalize_peak(y: np.ndarray, peak_dbfs: float) -> np.ndarray:
    """(n,) y scaled so that its peak sits at peak_dbfs (silence stays silent)."""
    peak = float(np.max(np.abs(y), initial=0.0))
    return y if peak == 0.0 else (y * (10.0 ** (peak_dbfs / 20.0) / peak)).astype(np.float32)


def write_wav(path: str | os.PathLike, y: np.ndarray) -> None:
    """Write (n,) float audio as 44.1 kHz mono 16-bit PCM, atomically."""
    with atomic_path(path) as tmp:
        sf.write(tmp, y, SAMPLE_RATE_HZ, subtype="PCM_16", format="WAV")
