"""The 11 MusicNet instruments as General MIDI programs, in the one order used everywhere."""

from __future__ import annotations

from typing import NamedTuple


class Instrument(NamedTuple):
    name: str
    program: int  # General MIDI program number, 1-based as MusicNet writes it

    @property
    def column(self) -> str:
        """The label-column name, e.g. 'violin(41)'."""
        return f"{self.name}({self.program})"


INSTRUMENTS: tuple[Instrument, ...] = (
    Instrument("piano", 1),
    Instrument("harpsichord", 7),
    Instrument("violin", 41),
    Instrument("viola", 42),
    Instrument("cello", 43),
    Instrument("contrabass", 44),
    Instrument("horn", 61),
    Instrument("oboe", 69),
    Instrument("bassoon", 71),
    Instrument("clarinet", 72),
    Instrument("flute", 74),
)
NUM_INSTRUMENTS = len(INSTRUMENTS)
PROGRAM_TO_INDEX: dict[int, int] = {inst.program: i for i, inst in enumerate(INSTRUMENTS)}
NAME_TO_INDEX: dict[str, int] = {inst.name: i for i, inst in enumerate(INSTRUMENTS)}


def column_names() -> list[str]:
    """Label columns in class order: ['piano(1)', 'harpsichord(7)', ...]."""
    return [inst.column for inst in INSTRUMENTS]
