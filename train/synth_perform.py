"""Perform a synthetic score: tempo drift, timing and velocity humanization, expression swells, vibrato, labels."""

from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np
import pretty_midi

from train.synth_ensembles import SPECS
from train.synth_score import Score, ScoreNote

SAMPLE_RATE_HZ = 44100  # MusicNet's rate; label times are samples at it
LABEL_HEADER = "start_time,end_time,instrument,note,start_beat,end_beat,note_value"
PITCH_BEND_PER_SEMITONE = 4096  # GM default bend range is +-2 semitones over +-8192
VIBRATO_UPDATE_HZ = 50.0
EXPRESSION_UPDATE_HZ = 10.0
_EVENT_ORDER = {"off": 0, "cc": 1, "bend": 1, "on": 2}  # at one instant: release, then controls, then attacks
ARTICULATIONS = (0.55, 0.85, 0.95)  # staccato, normal, legato: sounding fraction of the written duration


class LabelRow(NamedTuple):
    """One MusicNet label row; end_beat is the written duration in beats, as in MusicNet's files."""

    start_time: int
    end_time: int
    instrument: int
    note: int
    start_beat: float
    end_beat: float
    note_value: str


class Performance(NamedTuple):
    """A rendered-ready piece: the MIDI (one instrument per part, in part order), its labels and audio length."""

    midi: pretty_midi.PrettyMIDI
    labels: list[LabelRow]
    num_samples: int


def to_sample(seconds: float) -> int:
    """A time in seconds as a sample index at 44.1 kHz; labels and rendering share this rounding."""
    return int(round(seconds * SAMPLE_RATE_HZ))


def midi_channel(index: int, inst: pretty_midi.Instrument) -> int:
    """The MIDI channel of a piece's index-th part: channel 10 (index 9) is General MIDI percussion, for drums only."""
    if inst.is_drum:
        return 9
    return index if index < 9 else index + 1


def midi_events(midi: pretty_midi.PrettyMIDI) -> list[tuple[int, int, int, str, int, int, int]]:
    """Every MIDI event as (sample, order, sequence, kind, channel, a, b), in playing order."""
    events = []
    for index, inst in enumerate(midi.instruments):
        channel = midi_channel(index, inst)
        items = [(n.start, "on", n.pitch, n.velocity) for n in inst.notes]
        items += [(n.end, "off", n.pitch, 0) for n in inst.notes]
        items += [(c.time, "cc", c.number, c.value) for c in inst.control_changes]
        items += [(b.time, "bend", b.pitch, 0) for b in inst.pitch_bends]
        events += [(to_sample(t), _EVENT_ORDER[kind], len(events) + i, kind, channel, a, b)
                   for i, (t, kind, a, b) in enumerate(items)]
    events.sort()
    return events


def _tempo_map(rng: np.random.Generator, score: Score, lead_in_seconds: float) -> Callable[[float], float]:
    """A function beats -> seconds with slow tempo drift and a closing ritardando."""
    step_beats = 1.0 / 48.0
    grid = np.arange(0.0, score.total_beats + 16.0, step_beats)  # (g,) beats, past the end for held notes
    drift = 1.0 + rng.uniform(0.0, 0.06) * np.sin(2 * np.pi * grid / rng.uniform(8, 32) + rng.uniform(0, 2 * np.pi))
    ritardando_beats = 2.0 * score.beats_per_bar
    closing = np.clip((grid - (score.total_beats - ritardando_beats)) / ritardando_beats, 0.0, 1.0)
    bpm = score.tempo_bpm * drift * (1.0 - rng.uniform(0.05, 0.25) * closing)  # (g,)
    seconds = lead_in_seconds + np.concatenate([[0.0], np.cumsum(60.0 / bpm[:-1] * step_beats)])  # (g,)
    return lambda beats: float(np.interp(beats, grid, seconds))


def _expression(rng: np.random.Generator, inst: pretty_midi.Instrument) -> None:
    """CC11 swells over long notes (messa di voce) on a per-note base level."""
    for note in inst.notes:
        base = int(rng.integers(70, 100))
        length = note.end - note.start
        if length < 0.35 or rng.random() < 0.4:
            inst.control_changes.append(pretty_midi.ControlChange(11, base, note.start))
            continue
        amplitude = rng.uniform(10, 127 - base)
        times = np.arange(note.start, note.end, 1.0 / EXPRESSION_UPDATE_HZ)  # (k,) seconds
        values = base + amplitude * np.sin(np.pi * (times - note.start) / length)  # (k,)
        for time, value in zip(times, values):
            inst.control_changes.append(pretty_midi.ControlChange(11, int(np.clip(value, 0, 127)), float(time)))


def _vibrato(rng: np.random.Generator, inst: pretty_midi.Instrument, depth_cents: tuple[float, float]) -> None:
    """Pitch-bend vibrato on sustained notes: delayed onset, ramped depth, per-part rate."""
    rate_hz = rng.uniform(4.8, 6.5)
    part_depth_cents = rng.uniform(*depth_cents)
    for note in inst.notes:
        inst.pitch_bends.append(pretty_midi.PitchBend(0, note.start))
        onset = note.start + rng.uniform(0.1, 0.3)
        if note.end - onset < 0.15:
            continue
        depth = part_depth_cents * rng.uniform(0.7, 1.3)
        times = np.arange(onset, note.end, 1.0 / VIBRATO_UPDATE_HZ)  # (k,) seconds
        ramp = np.clip((times - onset) / 0.25, 0.0, 1.0)
        cents = depth * ramp * np.sin(2 * np.pi * rate_hz * (times - onset) + rng.uniform(0, 2 * np.pi))  # (k,)
        for time, value in zip(times, cents):
            bend = int(round(value / 100.0 * PITCH_BEND_PER_SEMITONE))
            inst.pitch_bends.append(pretty_midi.PitchBend(bend, float(time)))


def _separate_repeated_pitches(notes: list[pretty_midi.Note]) -> list[pretty_midi.Note]:
    """Notes of one channel where no pitch sounds twice at once (one note-off would end both): a note still sounding
    when its pitch starts again is shortened, and one doubled within 50 ms is merged into its twin."""
    notes = sorted(notes, key=lambda n: (n.start, n.pitch))
    following: dict[int, tuple[pretty_midi.Note, float]] = {}  # pitch -> (next note of it, latest end it may have)
    kept: list[pretty_midi.Note] = []
    for note in reversed(notes):
        twin, twin_latest_end = following.get(note.pitch, (None, np.inf))
        if twin is not None and twin.start - note.start < 0.05:
            twin.end = min(max(twin.end, note.end), twin_latest_end)
            continue
        latest_end = np.inf if twin is None else twin.start - 0.01
        note.end = min(note.end, latest_end)
        following[note.pitch] = (note, latest_end)
        kept.append(note)
    return kept[::-1]


def perform(rng: np.random.Generator, score: Score) -> Performance:
    """Turn a score into MIDI with human timing, dynamics, expression and vibrato, plus its MusicNet labels."""
    lead_in_seconds = float(rng.uniform(0.2, 1.0))
    beat_to_seconds = _tempo_map(rng, score, lead_in_seconds)
    midi = pretty_midi.PrettyMIDI(initial_tempo=score.tempo_bpm)
    reverb_send, chorus_send = int(rng.integers(10, 90)), int(rng.integers(0, 50))
    jitter_seconds = rng.uniform(0.004, 0.015)
    n_sections = len(score.sections)
    labels: list[LabelRow] = []
    for p, (name, role) in enumerate(score.ensemble.parts):
        spec = SPECS[name]
        inst = pretty_midi.Instrument(program=0 if spec.percussion else spec.program - 1, is_drum=spec.percussion,
                                      name=f"{name} ({role})")
        lag_seconds = rng.normal(0.0, 0.008)
        velocity_offset = rng.integers(-6, 7)
        articulation = rng.choice(ARTICULATIONS, size=n_sections, p=(0.2, 0.5, 0.3))
        if spec.keyboard or spec.plucked:
            articulation = np.maximum(articulation, 0.85)
        sources: dict[int, ScoreNote] = {}  # id(performed note) -> its written note
        for written_note in (n for n in score.notes if n.part == p):
            start = max(0.02, beat_to_seconds(written_note.start_beat) + lag_seconds + rng.normal(0, jitter_seconds))
            sounding_beats = written_note.duration_beats * articulation[written_note.section]
            end = max(start + 0.06, beat_to_seconds(written_note.start_beat + sounding_beats) + lag_seconds)
            velocity = int(np.clip(written_note.velocity + velocity_offset + rng.normal(0, 5), 1, 127))
            note = pretty_midi.Note(velocity, written_note.pitch, start, end)
            inst.notes.append(note)
            sources[id(note)] = written_note
        inst.notes = _separate_repeated_pitches(inst.notes)
        inst.control_changes += [pretty_midi.ControlChange(7, int(rng.integers(95, 120)), 0.0),
                                 pretty_midi.ControlChange(91, int(np.clip(reverb_send + rng.normal(0, 5), 0, 127)), 0.0),
                                 pretty_midi.ControlChange(93, int(np.clip(chorus_send + rng.normal(0, 5), 0, 127)), 0.0),
                                 pretty_midi.ControlChange(11, 100, 0.0)]
        if not (spec.keyboard or spec.plucked):  # a struck or plucked tone decays: no swell within a note
            _expression(rng, inst)
        if spec.vibrato_cents[1] > 0:
            _vibrato(rng, inst, spec.vibrato_cents)
        # MusicNet labels only its 11 instruments: another instrument is heard in the audio but gets no label
        # rows, so windows where only it sounds are negatives (and the strict reader never meets its program)
        for note in inst.notes if spec.labelled else ():
            source = sources[id(note)]
            labels.append(LabelRow(to_sample(note.start), to_sample(note.end), spec.program, note.pitch,
                                   source.start_beat, source.duration_beats, source.note_value))
        midi.instruments.append(inst)
    labels.sort(key=lambda r: (r.start_time, r.instrument, r.note, r.end_time))
    last_end_seconds = max(n.end for inst in midi.instruments for n in inst.notes)
    num_samples = to_sample(last_end_seconds + rng.uniform(1.5, 2.5))
    return Performance(midi, labels, num_samples)


def _beats_text(beats: float) -> str:
    """Beats as MusicNet writes them: a float, e.g. '4.0' or '0.333333'."""
    return repr(round(float(beats), 6))


def labels_csv_text(labels: list[LabelRow]) -> str:
    """The MusicNet label CSV for a performance, header included."""
    lines = [LABEL_HEADER]
    lines += [f"{r.start_time},{r.end_time},{r.instrument},{r.note},{_beats_text(r.start_beat)},"
              f"{_beats_text(r.end_beat)},{r.note_value}" for r in labels]
    return "\n".join(lines) + "\n"
