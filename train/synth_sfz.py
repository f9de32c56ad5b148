"""SFZ libraries as a timbre source beside the soundfonts and patch sets, played by sfizz (the `pysfizz` wheel).

A library is a folder holding .sfz instruments and `programs.csv`, which maps General MIDI programs to them:

    program,sfz,weight,source
    41,violin-sustained.sfz,0.6,Philharmonia
    41,violin-staccato.sfz,0.25,Philharmonia
    1,/opt/samples/UprightPianoKW.sfz,1,Upright Piano KW (freepats)

`sfz` is relative to the folder (or absolute); `weight` (default 1) is how often a part of that program plays that
instrument; `source` (optional) names the sample library it comes from, which trained models list; so articulations kept as their own instruments each sound in their share of the parts. Any free SFZ
library a user owns (VSCO-2, Sonatina, VCSL, Salamander) works once such a mapping is written beside it.
Every instrument is checked before anything renders: each sample it names must exist and decode, and sfizz must load
it with at least one region. A part is rendered from its MIDI events in sfizz blocks, mono at the corpus rate.

sfizz plays every instrument with its samples held whole in memory (`hint_ram_based=1`): by default it preloads
8,192 frames of each and streams the rest from a background thread, which an offline render outruns under load, so
notes fell silent while their labels said they sounded and no two renders agreed. An instrument that does not ask for
it is played from a copy (in the system's temporary folder) that does, its relative paths anchored at its folder.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import os
import re
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pretty_midi
import soundfile as sf

from instrument_id.errors import InstrumentIdError
from train.synth_perform import SAMPLE_RATE_HZ, midi_events

PROGRAMS_FILE = "programs.csv"
INSTALL_HINT = "install pysfizz (pip install pysfizz: a wheel that bundles the sfizz SFZ player)"
BLOCK_SAMPLES = 512
_OPCODE = re.compile(r"(\w+)=(.*?)(?=\s+\w+=|\s*<|\s*$)")  # key=value, a value may hold spaces (sample paths)
_RAM_BASED = re.compile(r"^[^/]*\bhint_ram_based=1\b", re.MULTILINE)  # on a line, before any // comment


@dataclass(frozen=True)
class SfzLibrary:
    """A checked SFZ library: its folder and, per 0-based program, the instruments (paths) and their weights."""

    path: Path
    instruments: dict[int, tuple[tuple[Path, float], ...]]
    sources: tuple[str, ...] = ()  # the sample libraries named in programs.csv's source column

    @property
    def programs(self) -> frozenset[int]:
        """0-based programs the library plays."""
        return frozenset(self.instruments)


def is_sfz_library(path: str | os.PathLike) -> bool:
    """Whether path names an SFZ library (a folder; checked by check_sfz_library)."""
    return Path(path).is_dir()


def load_pysfizz() -> Any:
    """The pysfizz module, or an error saying how to install it."""
    try:
        import pysfizz
    except ImportError as exc:
        raise InstrumentIdError(f"cannot load sfizz ({exc}); {INSTALL_HINT}") from None
    return pysfizz


def sample_paths(sfz: Path) -> list[Path]:
    """Every sample file an .sfz names (its `sample=` opcodes, after any `default_path=`), resolved."""
    try:
        text = sfz.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise InstrumentIdError(f"{sfz}: cannot read SFZ file ({exc.strerror})") from None
    default_path, found = "", []
    for line in text.splitlines():
        line = line.split("//", 1)[0]
        for key, value in _OPCODE.findall(line):
            value = value.strip()
            if key == "default_path":
                default_path = value.replace("\\", "/")
            elif key == "sample" and not value.startswith("*"):  # *sine, *noise: sfizz's generators
                found.append((sfz.parent / (default_path + value.replace("\\", "/"))).resolve())
    return found


def _anchored(text: str, folder: Path) -> str:
    """SFZ text whose relative `default_path=` and `#include` paths are made absolute from folder."""
    def default_path(match: re.Match) -> str:
        value = match[2].replace("\\", "/")
        return match[1] + (value if value.startswith("/") else f"{folder}/{value}")

    def include(match: re.Match) -> str:
        value = match[2].replace("\\", "/")
        return f'{match[1]}"{value if value.startswith("/") else f"{folder}/{value}"}"'

    text = re.sub(r"(\bdefault_path=)(\S*)", default_path, text)
    return re.sub(r'(#include\s+)"([^"]*)"', include, text)


@functools.lru_cache(maxsize=None)
def ram_loaded(sfz: Path) -> Path:
    """An .sfz that plays sfz with every sample held in memory: sfz itself if it says `hint_ram_based=1`, else a
    copy in the temporary folder that says so, its relative paths anchored at sfz's folder."""
    sfz = sfz.resolve()
    text = sfz.read_text(encoding="utf-8", errors="replace")
    if _RAM_BASED.search(text):
        return sfz
    folder = Path(tempfile.gettempdir()) / "instrument-id-sfz"
    folder.mkdir(exist_ok=True)
    text = f"<control>\nhint_ram_based=1\ndefault_path={sfz.parent}/\n" + _anchored(text, sfz.parent)
    copy = folder / f"{hashlib.sha1(text.encode()).hexdigest()[:16]}-{sfz.name}"
    if not copy.is_file():
        partial = copy.with_name(f"{copy.name}.{os.getpid()}.partial")
        partial.write_text(text, encoding="utf-8")
        os.replace(partial, copy)  # atomic: workers may write the same copy at once
    return copy


def check_sfz(sfz: Path) -> Path:
    """sfz (resolved) if every sample it names decodes and sfizz loads it with regions; else raise naming the file."""
    if not sfz.is_file():
        raise InstrumentIdError(f"{sfz}: SFZ file does not exist")
    samples = sample_paths(sfz)
    if not samples:
        raise InstrumentIdError(f"{sfz}: names no sample")
    for sample in dict.fromkeys(samples):
        if not sample.is_file():
            raise InstrumentIdError(f"{sfz}: sample {sample} does not exist")
        try:
            subtype = sf.info(str(sample)).subtype
        except (sf.LibsndfileError, RuntimeError, OSError) as exc:
            raise InstrumentIdError(f"{sfz}: sample {sample} cannot be read ({exc})") from None
        if subtype == "OPUS":  # libsndfile decodes it, sfizz plays it as silence: the part's labels would lie
            raise InstrumentIdError(f"{sfz}: sample {sample} is Ogg Opus, which sfizz cannot play; convert it to "
                                    "Ogg Vorbis, FLAC or WAV")
    pysfizz = load_pysfizz()
    in_memory = ram_loaded(sfz)
    synth = pysfizz._sfizz.Synth(SAMPLE_RATE_HZ, BLOCK_SAMPLES)
    if not synth.load_sfz_file(str(in_memory)) or synth.get_num_regions() == 0:
        raise InstrumentIdError(f"{sfz}: sfizz could not load this SFZ file (or it holds no region)")
    if in_memory != sfz.resolve():  # a copy: it must find every region the original has
        alone = pysfizz._sfizz.Synth(SAMPLE_RATE_HZ, BLOCK_SAMPLES)
        if not alone.load_sfz_file(str(sfz)) or alone.get_num_regions() != synth.get_num_regions():
            raise InstrumentIdError(f"{sfz}: sfizz could not load it with its samples held in memory; add the lines "
                                    "'<control>' and 'hint_ram_based=1' at its top")
    return sfz.resolve()


def _read_programs(folder: Path) -> tuple[dict[int, list[tuple[Path, float]]], list[str]]:
    mapping = folder / PROGRAMS_FILE
    if not mapping.is_file():
        raise InstrumentIdError(f"{folder}: an SFZ library needs {PROGRAMS_FILE} mapping General MIDI programs to its "
                                "instruments (columns program,sfz[,weight])")
    instruments: dict[int, list[tuple[Path, float]]] = {}
    sources: list[str] = []
    with open(mapping, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if not {"program", "sfz"} <= set(reader.fieldnames or []):
            raise InstrumentIdError(f"{mapping}: needs the columns program and sfz (and optionally weight)")
        for row in reader:
            where = f"{mapping} line {reader.line_num}"
            try:
                program, weight = int(row["program"]), float(row.get("weight") or 1.0)
            except (TypeError, ValueError):
                raise InstrumentIdError(f"{where}: program must be an integer 1..128 and weight a number") from None
            if not 1 <= program <= 128 or not (np.isfinite(weight) and weight > 0):
                raise InstrumentIdError(f"{where}: program must be 1..128 and weight above 0")
            sfz = Path(row["sfz"] or "")
            if sfz.suffix.lower() != ".sfz":
                raise InstrumentIdError(f"{where}: {sfz} is not an .sfz file")
            instruments.setdefault(program - 1, []).append((folder / sfz, weight))
            if (row.get("source") or "").strip():
                sources.append(row["source"].strip())
    if not instruments:
        raise InstrumentIdError(f"{mapping}: maps no program")
    return instruments, sorted(set(sources))


@functools.lru_cache(maxsize=None)
def check_sfz_library(path: Path) -> SfzLibrary:
    """The checked library at path (parsed and loaded once per process; failures are not cached)."""
    folder = Path(path).resolve()
    mapping, sources = _read_programs(folder)
    instruments = {program: tuple((check_sfz(sfz), weight) for sfz, weight in entries)
                   for program, entries in mapping.items()}
    return SfzLibrary(folder, instruments, tuple(sources))


@functools.lru_cache(maxsize=None)
def read_sfz_library(path: Path) -> SfzLibrary:
    """The library at path as its programs.csv maps it, its instruments not loaded: what the rendering workers of a
    corpus use, once `check_sfz_library` has checked it in the process that planned the corpus (loading every
    instrument with its samples in memory takes seconds per worker; an instrument that fails still raises when its
    part loads)."""
    folder = Path(path).resolve()
    mapping, sources = _read_programs(folder)
    instruments = {program: tuple((sfz.resolve(), weight) for sfz, weight in entries)
                   for program, entries in mapping.items()}
    return SfzLibrary(folder, instruments, tuple(sources))


def choose_instrument(library: SfzLibrary, inst: pretty_midi.Instrument) -> Path:
    """The .sfz that plays this part: a weighted draw seeded by the part's notes, so the corpus's other draws (and so
    the corpora of other sources) are unchanged by it."""
    entries = library.instruments.get(inst.program)
    if not entries:
        raise InstrumentIdError(f"{library.path}: no instrument for General MIDI program {inst.program + 1}")
    key = ",".join(f"{n.pitch}:{n.start:.4f}" for n in inst.notes[:64]).encode()
    rng = np.random.default_rng(zlib.crc32(key))
    weights = np.array([w for _sfz, w in entries])
    return entries[int(rng.choice(len(entries), p=weights / weights.sum()))][0]


def synthesize_sfz(midi: pretty_midi.PrettyMIDI, library: SfzLibrary, num_samples: int) -> np.ndarray:
    """(num_samples,) float32 mono: every part of midi through a fresh sfizz loaded with the instrument drawn for it."""
    pysfizz = load_pysfizz()
    out = np.zeros(num_samples, dtype=np.float32)
    for inst in midi.instruments:
        sfz = choose_instrument(library, inst)
        synth = pysfizz._sfizz.Synth(SAMPLE_RATE_HZ, BLOCK_SAMPLES)
        if not synth.load_sfz_file(str(ram_loaded(sfz))):
            raise InstrumentIdError(f"{sfz}: sfizz could not load this SFZ file")
        n_blocks = -(-num_samples // BLOCK_SAMPLES)
        left = np.zeros(n_blocks * BLOCK_SAMPLES, dtype=np.float32)
        right = np.zeros_like(left)
        alone = pretty_midi.PrettyMIDI()
        alone.instruments.append(inst)
        events, e = midi_events(alone), 0
        for block in range(n_blocks):
            start = block * BLOCK_SAMPLES
            while e < len(events) and events[e][0] < start + BLOCK_SAMPLES:
                sample, _order, _seq, kind, _channel, a, b = events[e]
                delay = max(0, sample - start)
                if kind == "on":
                    synth.note_on(delay, a, max(1, b))
                elif kind == "off":
                    synth.note_off(delay, a, 0)
                elif kind == "cc":
                    synth.cc(delay, a, b)
                else:
                    synth.pitch_wheel(delay, int(np.clip(a, -8192, 8192)))
                e += 1
            block_left, block_right = synth.render_block()
            left[start:start + BLOCK_SAMPLES] = block_left
            right[start:start + BLOCK_SAMPLES] = block_right
        out += 0.5 * (left[:num_samples] + right[:num_samples])  # (num_samples,) mono, as MusicNet
    return out
