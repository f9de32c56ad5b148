"""Synthetic scores for an ensemble: sections, keys, chord progressions and melodic lines, in beats."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from instrument_id.errors import InstrumentIdError

from train.synth_ensembles import SPECS, Ensemble, InstrumentSpec

NOTE_VALUE_NAMES: dict[float, str] = {
    4.0: "Whole", 3.0: "Dotted Half", 2.0: "Half", 1.5: "Dotted Quarter", 1.0: "Quarter", 0.75: "Dotted Eighth",
    0.5: "Eighth", 0.25: "Sixteenth", 1 / 3: "Triplet",
}
TRIPLET = 1 / 3
# note value (beats) -> weight, per role; dotted values are followed by their complement, triplets come in threes
RHYTHM_WEIGHTS: dict[str, dict[float, float]] = {
    "melody": {2.0: 1, 1.5: 1, 1.0: 3, 0.75: 0.7, 0.5: 3, 0.25: 1.5, TRIPLET: 0.4},
    "solo": {1.0: 1.5, 0.5: 3, 0.25: 3, 1.5: 0.5, TRIPLET: 0.5},
    "counter": {2.0: 2, 1.5: 1, 1.0: 3, 0.5: 2},
    "inner": {4.0: 1, 3.0: 1, 2.0: 3, 1.0: 2, 0.5: 0.5},
    "bass": {4.0: 0.5, 3.0: 0.5, 2.0: 2, 1.0: 3, 0.5: 1},
}
MAJOR, MINOR = (0, 2, 4, 5, 7, 9, 11), (0, 2, 3, 5, 7, 8, 10)
# Markov chain over scale degrees (0 = tonic); a phrase ends on a V-I cadence
PROGRESSION: dict[int, tuple[int, ...]] = {0: (3, 4, 5, 1, 3, 4), 1: (4, 4, 6), 2: (5, 3), 3: (4, 0, 1), 4: (0, 0, 5),
                                           5: (1, 3, 2), 6: (0,)}
ACTIVE_PROBABILITY = {"melody": 0.85, "solo": 1.0, "keys": 1.0, "accomp": 0.85, "counter": 0.65, "inner": 0.7,
                      "bass": 0.75}
# A "sparse <role>" part is written like <role> but plays in few sections: the labelled part of a distractor
# ensemble, so that most sections hold only unlabelled instruments (_plan_activity still gives it one section).
SPARSE_PREFIX = "sparse "
ACTIVE_PROBABILITY |= {SPARSE_PREFIX + role: 0.3 for role in ("melody", "accomp", "counter", "inner", "bass")}
DYNAMIC_VELOCITIES = (38, 52, 66, 80, 96, 110)  # pp p mp mf f ff


@dataclass(frozen=True)
class ScoreNote:
    """One written note: which part plays it, its pitch and its place in beats, with a written dynamic."""

    part: int
    pitch: int
    start_beat: float
    duration_beats: float
    velocity: int
    section: int

    @property
    def note_value(self) -> str:
        """MusicNet's name for the written duration, e.g. 'Dotted Quarter'."""
        for beats, name in NOTE_VALUE_NAMES.items():
            if abs(beats - self.duration_beats) < 1e-6:
                return name
        return "Unknown"


@dataclass
class Score:
    """A whole piece in beats: ensemble, key, tempo, meter, sections and notes."""

    ensemble: Ensemble
    tonic: int  # pitch class, 0 = C
    minor: bool
    tempo_bpm: float
    beats_per_bar: int
    sections: list[tuple[int, int]]  # (first bar, end bar) of each section
    notes: list[ScoreNote] = field(default_factory=list)

    @property
    def total_beats(self) -> float:
        """Length of the written music in beats."""
        return float(self.sections[-1][1] * self.beats_per_bar)


def _chord_pitch_classes(tonic: int, minor: bool, degree: int) -> tuple[int, ...]:
    """Root, third and fifth of the triad on a scale degree; the minor dominant gets its leading tone."""
    scale = MINOR if minor else MAJOR
    pcs = [(tonic + scale[(degree + k) % 7]) % 12 for k in (0, 2, 4)]
    if minor and degree == 4:
        pcs[1] = (tonic + 11) % 12
    return tuple(pcs)


def written_role(role: str) -> str:
    """The role a part's notes are written in: a sparse part writes like its plain role."""
    return role.removeprefix(SPARSE_PREFIX)


def _register(spec: InstrumentSpec, role: str) -> tuple[int, int]:
    """The part of an instrument's range a role writes in."""
    low, high = spec.low_pitch, spec.high_pitch
    span = high - low
    bounds = {"melody": (0.3, 1.0), "solo": (0.0, 0.9), "counter": (0.15, 0.8), "inner": (0.1, 0.7),
              "bass": (0.0, 0.55)}[role]
    return low + int(bounds[0] * span), low + int(bounds[1] * span)


def _on_grid(position_beats: float, step_beats: float) -> bool:
    """Whether a position falls on a grid of step_beats (tolerant of triplet rounding)."""
    ratio = position_beats / step_beats
    return abs(ratio - round(ratio)) < 1e-6


def _fill_bar(rng: np.random.Generator, weights: dict[float, float], bar_beats: int) -> list[float]:
    """Durations (beats) that exactly fill one bar, drawn from a role's note-value weights."""
    durations: list[float] = []
    position = 0.0
    while position < bar_beats - 1e-6:
        remaining = bar_beats - position
        options = [v for v in weights if v <= remaining + 1e-6 and _on_grid(position, 1.0 if v == TRIPLET else min(v, 1.0))]
        options = [v for v in options if v not in (1.5, 0.75) or v * 4 / 3 <= remaining + 1e-6]
        if not options:
            durations.append(0.5 if _on_grid(position, 0.5) and remaining > 0.5 - 1e-6 else 0.25)
            position += durations[-1]
            continue
        p = np.array([weights[v] for v in options])
        value = options[rng.choice(len(options), p=p / p.sum())]
        group = [value] * 3 if value == TRIPLET else [value, value / 3] if value in (1.5, 0.75) else [value]
        durations.extend(group)
        position += sum(group)
    return durations


def _nearest_chord_tone(pitch: int, chord: tuple[int, ...], low: int, high: int) -> int:
    """The chord tone in [low, high] closest to pitch."""
    candidates = [p for p in range(low, high + 1) if p % 12 in chord]
    return min(candidates, key=lambda p: (abs(p - pitch), p)) if candidates else int(np.clip(pitch, low, high))


class _Line:
    """A melodic random walk on the scale, drawn to chord tones on strong beats, reflected at the register edges."""

    def __init__(self, rng: np.random.Generator, scale_pitches: np.ndarray, leap_probability: float):
        self.rng, self.scale, self.leap_probability = rng, scale_pitches, leap_probability
        self.pitch = int(scale_pitches[len(scale_pitches) // 2 + rng.integers(-3, 4)])
        self.direction = 1

    def next(self, chord: tuple[int, ...], strong: bool) -> int:
        """The next pitch of the line."""
        low, high = int(self.scale[0]), int(self.scale[-1])
        roll = self.rng.random()
        if strong and roll < 0.55:
            self.pitch = _nearest_chord_tone(self.pitch + self.direction, chord, low, high)
            return self.pitch
        if roll < 0.55 + self.leap_probability:  # arpeggio: jump to a chord tone a third to a sixth away
            target = self.pitch + self.direction * int(self.rng.integers(3, 10))
            self.pitch = _nearest_chord_tone(target, chord, low, high)
        else:
            if self.rng.random() < 0.3:
                self.direction = -self.direction
            index = int(np.searchsorted(self.scale, self.pitch)) + self.direction * (1 + (self.rng.random() < 0.25))
            self.pitch = int(self.scale[int(np.clip(index, 0, len(self.scale) - 1))])
        if self.pitch <= low + 2 or self.pitch >= high - 2:
            self.direction = 1 if self.pitch <= low + 2 else -1
        return self.pitch


def _scale_pitches(tonic: int, minor: bool, low: int, high: int) -> np.ndarray:
    """(n,) ascending MIDI pitches of the key inside [low, high]."""
    pcs = {(tonic + step) % 12 for step in (MINOR if minor else MAJOR)}
    return np.array([p for p in range(low, high + 1) if p % 12 in pcs])


def _keyboard_bar(rng: np.random.Generator, pattern: str, chord: tuple[int, ...], bar_beats: int,
                  spec: InstrumentSpec) -> list[tuple[int, float, float]]:
    """Accompaniment figures for one bar as (pitch, offset_beats, duration_beats): bass plus chords or broken chords."""
    bass = _nearest_chord_tone(max(spec.low_pitch, 36) + 7, chord[:1], max(spec.low_pitch, 33), 52)
    triad = sorted(_nearest_chord_tone(62 + 4 * k, (pc,), 55, 79) for k, pc in enumerate(chord))
    if pattern == "block":
        step = 2 if bar_beats % 2 == 0 else 1
        events = [(bass, 0.0, float(bar_beats))]
        events += [(p, float(b), float(step)) for b in range(0, bar_beats, step) for p in triad]
        return events
    if pattern == "waltz" and bar_beats == 3:
        return [(bass, 0.0, 1.0)] + [(p, float(b), 1.0) for b in (1, 2) for p in triad]
    if pattern == "alberti":
        low = sorted(_nearest_chord_tone(bass + 12 + 4 * k, (pc,), bass + 7, bass + 24) for k, pc in enumerate(chord))
        order = (low[0], low[2], low[1], low[2])
        return [(order[i % 4], i * 0.5, 0.5) for i in range(bar_beats * 2)]
    # broken chord rising over an octave and a half, in eighths or sixteenths
    value = 0.25 if rng.random() < 0.4 else 0.5
    tones = [bass] + [_nearest_chord_tone(bass + 4 * k, chord, bass + 3, bass + 28) for k in range(1, 6)]
    count = int(round(bar_beats / value))
    return [(tones[i % len(tones)], i * value, value) for i in range(count)]


def _bar_events(rng: np.random.Generator, role: str, line: _Line, chord: tuple[int, ...], bar_beats: int,
                phrase_end: bool, rest_probability: float) -> list[tuple[int, float, float]]:
    """One bar of a melodic part as (pitch, offset_beats, duration_beats); rests are gaps."""
    if phrase_end and role != "solo":
        durations = [float(bar_beats)] if rng.random() < 0.5 else _fill_bar(rng, {1.0: 1, 2.0: 1}, bar_beats)
    else:
        durations = _fill_bar(rng, RHYTHM_WEIGHTS[role], bar_beats)
    events, offset = [], 0.0
    for duration in durations:
        strong = _on_grid(offset, 1.0)
        pitch = line.next(chord, strong)
        if role in ("inner", "bass") and strong:
            pitch = line.pitch = _nearest_chord_tone(pitch, chord[:1] if role == "bass" and offset == 0 else chord,
                                                     int(line.scale[0]), int(line.scale[-1]))
        if rng.random() >= rest_probability or offset == 0.0:
            events.append((pitch, offset, duration))
        offset += duration
    return events


def _plan_sections(rng: np.random.Generator, bars: int, bar_seconds: float) -> list[tuple[int, int]]:
    """Split the bars into sections of roughly 3-10 s so that parts can enter and leave between them."""
    sections, start = [], 0
    max_bars = max(1, int(10.0 / bar_seconds))
    min_bars = min(max_bars, max(1, int(np.ceil(3.0 / bar_seconds))))
    while start < bars:
        length = int(rng.integers(min_bars, max_bars + 1))
        end = bars if bars - (start + length) < min_bars else start + length
        sections.append((start, end))
        start = end
    return sections


def _plan_activity(rng: np.random.Generator, roles: list[str], n_sections: int) -> np.ndarray:
    """(sections, parts) bool: who plays in each section; every part plays somewhere, no section is silent."""
    active = rng.random((n_sections, len(roles))) < np.array([ACTIVE_PROBABILITY[r] for r in roles])
    for s in range(n_sections):
        if not active[s].any():
            active[s, rng.integers(len(roles))] = True
    for p in range(len(roles)):
        if not active[:, p].any():
            active[rng.integers(n_sections), p] = True
    return active


def compose(rng: np.random.Generator, ensemble: Ensemble, duration_seconds: float) -> Score:
    """Write a piece of about duration_seconds for an ensemble: sections, harmony, lines and dynamics."""
    if not ensemble.parts:
        raise InstrumentIdError(f"ensemble {ensemble.name!r} has no parts to compose for (train/synth_nonmusic.py renders it)")
    beats_per_bar = int(rng.choice([3, 4, 4, 2]))
    tempo_bpm = float(rng.uniform(60, 160))
    bar_seconds = beats_per_bar * 60.0 / tempo_bpm
    bars = max(2, int(round(duration_seconds / bar_seconds)))
    score = Score(ensemble, int(rng.integers(12)), bool(rng.random() < 0.4), tempo_bpm, beats_per_bar,
                  _plan_sections(rng, bars, bar_seconds))
    chords, degree = [], 0
    for s_start, s_end in score.sections:
        for bar in range(s_start, s_end):
            degree = 4 if bar == s_end - 2 else 0 if bar == s_end - 1 else int(rng.choice(PROGRESSION[degree]))
            chords.append(_chord_pitch_classes(score.tonic, score.minor, degree))
    roles = [role for _name, role in ensemble.parts]
    active = _plan_activity(rng, roles, len(score.sections))
    levels = rng.integers(0, len(DYNAMIC_VELOCITIES), size=len(score.sections) + 1)
    for p, (name, part_role) in enumerate(ensemble.parts):
        spec, role = SPECS[name], written_role(part_role)
        melodic_role = "melody" if role == "keys" else role
        low, high = (60, min(spec.high_pitch, 96)) if spec.keyboard else _register(spec, melodic_role)
        line = _Line(rng, _scale_pitches(score.tonic, score.minor, low, high), 0.35 if role == "solo" else 0.15)
        for s, (s_start, s_end) in enumerate(score.sections):
            if not active[s, p]:
                continue
            pattern = str(rng.choice(["block", "waltz", "alberti", "broken"]))
            rest_probability = float(rng.uniform(0.0, 0.15))
            for bar in range(s_start, s_end):
                events = []
                if role in ("keys", "accomp"):
                    events = _keyboard_bar(rng, pattern, chords[bar], beats_per_bar, spec)
                if role != "accomp":
                    events += _bar_events(rng, melodic_role, line, chords[bar], beats_per_bar, bar == s_end - 1,
                                          rest_probability)
                fraction = (bar - s_start) / max(1, s_end - s_start)  # hairpin toward the next section's dynamic
                level = (1 - fraction) * DYNAMIC_VELOCITIES[levels[s]] + fraction * DYNAMIC_VELOCITIES[levels[s + 1]]
                for pitch, offset, duration in events:
                    accent = 6 if offset == 0 else 0 if _on_grid(offset, 1.0) else -4
                    velocity = int(np.clip(level + accent - (8 if role == "accomp" else 0), 1, 127))
                    score.notes.append(ScoreNote(p, int(pitch), bar * beats_per_bar + offset, duration, velocity, s))
    return score
