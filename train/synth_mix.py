"""One recording's mix: each part rendered on its own FluidSynth pass, placed in the room, then balanced.

Balance and labels: each part, as heard at the microphone, is first brought to one loudness (RMS over the samples
where its notes sound), then given a drawn gain of MIN_PART_GAIN_DB..0 dB. So every part stays within 12 dB of
the loudest one while it plays, loud enough to be heard in the mix, and its label rows stay true; no label is ever
dropped or added by mixing. In a "dominant" balance one part leads at 0 dB and the others sit 6-12 dB under it,
the solo-with-accompaniment balance real recordings often have; in an "even" one all parts sit within 6 dB.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pretty_midi

from train.synth_perform import Performance, to_sample
from train.synth_render import fluidsynth_settings, synthesize_parts
from train.synth_room import Room, apply_room, draw_room

MIN_PART_GAIN_DB = -12.0  # the quietest part, relative to the loudest, while each plays: still clearly audible
EVEN_GAIN_DB = (-6.0, 0.0)
DOMINATED_GAIN_DB = (MIN_PART_GAIN_DB, -6.0)  # the others, under a dominant part at 0 dB
DOMINANT_PROBABILITY = 0.4


@dataclass(frozen=True)
class Mix:
    """What a mix did: the room, the balance kind, each part's gain and soundfont, in part order."""

    room: Room
    balance: str  # "solo", "even" or "dominant"
    part_names: tuple[str, ...]
    gains_db: tuple[float, ...]
    soundfonts: tuple[str, ...]  # file names

    def describe(self) -> str:
        """e.g. 'mix dominant violin +0.0 dB / piano -8.2 dB'; each part's soundfont is named when they differ."""
        several_fonts = len(set(self.soundfonts)) > 1
        parts = [f"{name}{'@' + font if several_fonts else ''} {gain:+.1f} dB"
                 for name, gain, font in zip(self.part_names, self.gains_db, self.soundfonts)]
        return f"mix {self.balance} " + " / ".join(parts)


def draw_balance(rng: np.random.Generator, n_parts: int) -> tuple[str, np.ndarray]:
    """The balance kind and (n_parts,) gains in dB, the loudest at 0 dB, none under MIN_PART_GAIN_DB."""
    if n_parts == 1:
        return "solo", np.zeros(1)
    if rng.random() < DOMINANT_PROBABILITY:
        gains = rng.uniform(*DOMINATED_GAIN_DB, size=n_parts)
        gains[rng.integers(n_parts)] = 0.0
        return "dominant", gains
    gains = rng.uniform(*EVEN_GAIN_DB, size=n_parts)
    return "even", gains - gains.max()


def sounding_masks(midi: pretty_midi.PrettyMIDI, num_samples: int) -> np.ndarray:
    """(n_parts, num_samples) bool: where each part has a note sounding (the samples its label rows cover)."""
    masks = np.zeros((len(midi.instruments), num_samples), dtype=bool)
    for index, inst in enumerate(midi.instruments):
        for note in inst.notes:
            masks[index, to_sample(note.start):to_sample(note.end)] = True
    return masks


def balance_parts(parts: np.ndarray, masks: np.ndarray, gains_db: np.ndarray) -> np.ndarray:
    """(n_parts, n) parts -> (n,) float32 sum, each part at unit RMS where it sounds, times its gain."""
    mixed = np.zeros(parts.shape[1], dtype=np.float64)  # (n,)
    for part, mask, gain_db in zip(parts, masks, gains_db):
        active = part[mask] if mask.any() else part
        rms = float(np.sqrt(np.mean(np.square(active, dtype=np.float64))))
        if rms > 0.0:
            mixed += part * (10.0 ** (gain_db / 20.0) / rms)
    return mixed.astype(np.float32)


def render_mix(rng: np.random.Generator, performance: Performance, soundfonts: list[Path]) -> tuple[np.ndarray, Mix]:
    """(num_samples,) float32 mix of the performance in a seeded room at a seeded balance, and what was drawn."""
    midi, n = performance.midi, performance.num_samples
    dry = synthesize_parts(midi, soundfonts, n, fluidsynth_settings(rng))  # (n_parts, n)
    room = draw_room(rng, len(midi.instruments))
    wet = apply_room(room, dry)  # (n_parts, n)
    balance, gains_db = draw_balance(rng, len(midi.instruments))
    y = balance_parts(wet, sounding_masks(midi, n), gains_db)  # (n,)
    names = tuple(inst.name.split(" (")[0] for inst in midi.instruments)  # "violin (melody)" -> "violin"
    return y, Mix(room, balance, names, tuple(float(g) for g in gains_db), tuple(Path(f).name for f in soundfonts))
