"""Write an SFZ instrument for a set of single-note recordings: key ranges around each note, velocity layers from
the dynamics, and a round-robin among the recordings that share a key and layer.

Each recording sounds at its own pitch (pitch_keycenter) and covers the keys half-way to its neighbours in the same
layer; the lowest and highest reach to the ends of the keyboard, so a part never plays a key with no sound (its label
would then mark a silent note). Layers split the velocity range half-way between the dynamics present. With
`amp_veltrack=0` the level comes from the recording itself (a library recorded at its dynamics, pp quieter than ff).

Two choices keep a render reproducible. `hint_ram_based=1` makes sfizz load each sample whole at load time: by
default it preloads 8,192 frames and streams the rest from a background thread, which an offline render outruns
under load (notes fell silent while their labels said they sounded). Takes alternate by `seq_position` (a counter
in each fresh synth) rather than `lorand`, whose random draws come from a generator that lives across sfizz
instances in a process, so they would depend on what else that worker rendered before.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

# nominal MIDI velocity of each written dynamic
DYNAMIC_VELOCITY = {"molto-pianissimo": 12, "pianissimo": 24, "piano": 44, "mezzo-piano": 60, "mezzo-forte": 76,
                    "forte": 96, "fortissimo": 116}


@dataclass(frozen=True)
class NoteSample:
    """One recorded note: its file, MIDI pitch and nominal velocity."""

    path: Path
    pitch: int
    velocity: int


def _split_points(values: list[int], low: int, high: int) -> list[tuple[int, int]]:
    """Sorted distinct values -> (lo, hi) ranges covering low..high, each boundary half-way between neighbours."""
    ranges = []
    for i, value in enumerate(values):
        lo = low if i == 0 else (values[i - 1] + value) // 2 + 1
        hi = high if i == len(values) - 1 else (value + values[i + 1]) // 2
        ranges.append((lo, hi))
    return ranges


def sfz_text(samples: list[NoteSample], title: str, amp_veltrack: float = 0.0, release_seconds: float = 0.25) -> str:
    """The .sfz text playing these samples (absolute paths), one <group> per velocity layer."""
    if not samples:
        raise ValueError(f"{title}: no samples")
    by_velocity: dict[int, list[NoteSample]] = defaultdict(list)
    for s in samples:
        by_velocity[s.velocity].append(s)
    velocities = sorted(by_velocity)
    lines = [f"// {title}: {len(samples)} recorded notes, written by instrument-id (train/sfz_write.py)",
             "<control>", "hint_ram_based=1", "<global>", f"amp_veltrack={amp_veltrack:g} ampeg_release={release_seconds:g} loop_mode=no_loop"]
    for velocity, (lovel, hivel) in zip(velocities, _split_points(velocities, 1, 127)):
        lines += ["", f"<group> lovel={lovel} hivel={hivel}"]
        by_pitch: dict[int, list[NoteSample]] = defaultdict(list)
        for s in by_velocity[velocity]:
            by_pitch[s.pitch].append(s)
        pitches = sorted(by_pitch)
        for pitch, (lokey, hikey) in zip(pitches, _split_points(pitches, 0, 127)):
            takes = sorted(by_pitch[pitch], key=lambda s: s.path.name)
            for k, take in enumerate(takes):
                turn = f" seq_length={len(takes)} seq_position={k + 1}" if len(takes) > 1 else ""
                lines.append(f"<region> lokey={lokey} hikey={hikey} pitch_keycenter={pitch}{turn} "
                             f"sample={take.path.resolve()}")
    return "\n".join(lines) + "\n"
