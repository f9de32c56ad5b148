"""Render a performance with FluidSynth, place it in a synthetic room, normalize and write 16-bit WAV."""

from __future__ import annotations

import ctypes
import os
from pathlib import Path
from types import ModuleType

import numpy as np
import pretty_midi
import soundfile as sf
from scipy import signal

from instrument_id.atomic import atomic_path
from instrument_id.errors import InstrumentIdError
from train.synth_perform import SAMPLE_RATE_HZ, to_sample

SOUNDFONT_SUFFIXES = (".sf2", ".sf3")
INSTALL_HINT = ("install libfluidsynth3 and pyfluidsynth (Debian/Ubuntu: apt-get install libfluidsynth3; "
                "macOS: brew install fluid-synth; then pip install pyfluidsynth)")
# room -> ((min, max) RT60 seconds, (min, max) wet gain)
ROOMS: dict[str, tuple[tuple[float, float], tuple[float, float]]] = {
    "dry": ((0.15, 0.35), (0.0, 0.1)),
    "studio": ((0.3, 0.6), (0.1, 0.25)),
    "chamber": ((0.6, 1.1), (0.15, 0.35)),
    "hall": ((1.4, 2.2), (0.2, 0.45)),
    "church": ((2.5, 3.5), (0.25, 0.5)),
}
_EVENT_ORDER = {"off": 0, "cc": 1, "bend": 1, "on": 2}  # at one instant: release, then controls, then attacks


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
    """Return path if it is a readable .sf2/.sf3 SoundFont (RIFF 'sfbk'), else raise naming it."""
    path = Path(path)
    if path.suffix.lower() not in SOUNDFONT_SUFFIXES:
        raise InstrumentIdError(f"{path}: not a soundfont, expected a .sf2 or .sf3 file")
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


def _events(midi: pretty_midi.PrettyMIDI) -> list[tuple[int, int, int, str, int, int, int]]:
    """Every MIDI event as (sample, order, sequence, kind, channel, a, b), in playing order."""
    events = []
    for index, inst in enumerate(midi.instruments):
        channel = index if index < 9 else index + 1  # channel 10 (index 9) is GM percussion
        items = [(n.start, "on", n.pitch, n.velocity) for n in inst.notes]
        items += [(n.end, "off", n.pitch, 0) for n in inst.notes]
        items += [(c.time, "cc", c.number, c.value) for c in inst.control_changes]
        items += [(b.time, "bend", b.pitch, 0) for b in inst.pitch_bends]
        events += [(to_sample(t), _EVENT_ORDER[kind], len(events) + i, kind, channel, a, b)
                   for i, (t, kind, a, b) in enumerate(items)]
    events.sort()
    return events


def synthesize(midi: pretty_midi.PrettyMIDI, soundfont: Path, num_samples: int,
               rng: np.random.Generator) -> np.ndarray:
    """(num_samples,) float32 mono: all parts through one fresh FluidSynth, with a seeded reverb and chorus."""
    fluidsynth = load_fluidsynth()
    settings = {"synth.reverb.room-size": rng.uniform(0.2, 0.9), "synth.reverb.damp": rng.uniform(0.1, 0.6),
                "synth.reverb.width": rng.uniform(0.3, 1.0), "synth.reverb.level": rng.uniform(0.4, 0.9),
                "synth.chorus.depth": rng.uniform(2.0, 10.0), "synth.chorus.level": rng.uniform(0.5, 2.0),
                "synth.dynamic-sample-loading": 1}  # only the programs used are decoded: .sf3 loads fast
    # a fresh synth per piece: a reused one carries reverb state and block phase, so output would depend on order
    synth = fluidsynth.Synth(gain=0.4, samplerate=float(SAMPLE_RATE_HZ), **settings)
    try:
        sfid = synth.sfload(str(soundfont))
        if sfid < 0:
            raise InstrumentIdError(f"{soundfont}: FluidSynth could not load this soundfont")
        for index, inst in enumerate(midi.instruments):
            channel = index if index < 9 else index + 1
            if synth.program_select(channel, sfid, 0, inst.program) < 0:
                raise InstrumentIdError(f"{soundfont}: no preset for General MIDI program {inst.program + 1}")
        # pyfluidsynth only wraps the int16 writer; the float one avoids clipping and double quantization
        write_float = fluidsynth._fl.fluid_synth_write_float
        write_float.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_int, ctypes.c_int,
                                ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
        left = np.zeros(num_samples, dtype=np.float32)
        right = np.zeros(num_samples, dtype=np.float32)
        position = 0
        for sample, _order, _seq, kind, channel, a, b in _events(midi) + [(num_samples, 0, 0, "end", 0, 0, 0)]:
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


def room_impulse_response(rng: np.random.Generator, rt60_seconds: float) -> np.ndarray:
    """(k,) float32 unit-energy impulse response: predelay, early reflections, then a darkened exponential tail."""
    length = int(min(1.2 * rt60_seconds, 4.0) * SAMPLE_RATE_HZ)
    t = np.arange(length) / SAMPLE_RATE_HZ  # (k,) seconds
    tail = rng.standard_normal(length) * 10.0 ** (-3.0 * t / rt60_seconds)  # -60 dB at rt60
    air = rng.uniform(0.2, 0.8)  # one-pole low-pass: walls and air absorb the highs
    tail = signal.lfilter([1.0 - air], [1.0, -air], tail)
    predelay = int(rng.uniform(0.005, 0.03) * SAMPLE_RATE_HZ)
    tail[:predelay] = 0.0
    response = np.zeros(length)
    response[0] = 1.0
    for delay_seconds in rng.uniform(0.004, 0.06, size=6):
        response[int(delay_seconds * SAMPLE_RATE_HZ)] += rng.uniform(0.2, 0.6) * 10.0 ** (-3.0 * delay_seconds / rt60_seconds)
    response[1:] = 0.5 * response[1:] + tail[1:] / np.sqrt(np.sum(tail**2))
    return (response / np.sqrt(np.sum(response**2))).astype(np.float32)


def apply_room(rng: np.random.Generator, y: np.ndarray) -> tuple[np.ndarray, str]:
    """(n,) float32 y heard in a seeded room (dry signal plus a convolved tail); also returns the room's name."""
    name = str(rng.choice(list(ROOMS)))
    (rt60_low, rt60_high), (wet_low, wet_high) = ROOMS[name]
    response = room_impulse_response(rng, rng.uniform(rt60_low, rt60_high))
    wet = signal.fftconvolve(y, response)[: len(y)]  # (n,)
    return (y + rng.uniform(wet_low, wet_high) * wet).astype(np.float32), name


def normalize_peak(y: np.ndarray, peak_dbfs: float) -> np.ndarray:
    """(n,) y scaled so that its peak sits at peak_dbfs (silence stays silent)."""
    peak = float(np.max(np.abs(y), initial=0.0))
    return y if peak == 0.0 else (y * (10.0 ** (peak_dbfs / 20.0) / peak)).astype(np.float32)


def write_wav(path: str | os.PathLike, y: np.ndarray) -> None:
    """Write (n,) float audio as 44.1 kHz mono 16-bit PCM, atomically."""
    with atomic_path(path) as tmp:
        sf.write(tmp, y, SAMPLE_RATE_HZ, subtype="PCM_16", format="WAV")
