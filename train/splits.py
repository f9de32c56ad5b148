"""Recording-level train/valid/test splits: every window of a recording lands in the split of its recording."""

from __future__ import annotations

import logging
from typing import Iterable, Mapping, Sequence

import numpy as np

from instrument_id.errors import InstrumentIdError
from instrument_id.instruments import INSTRUMENTS, NUM_INSTRUMENTS
from train.musicnet import Recording

SPLITS = ("train", "valid", "test")
MIN_RECORDINGS_PER_INSTRUMENT = 3  # one each for train, valid and test
ATTEMPTS = 32  # reseeded tries before the stratified split gives up

log = logging.getLogger(__name__)


def _check_fraction(name: str, value: float) -> None:
    if not 0.0 < value < 1.0:
        raise InstrumentIdError(f"{name} must be between 0 and 1 (exclusive), got {value}")


def official_split(recordings: Sequence[Recording], valid_fraction: float = 0.1, seed: int = 0) -> dict[str, str]:
    """MusicNet's test_data is test; valid_fraction of the train_data recordings (chosen by seed) is valid."""
    _check_fraction("valid_fraction", valid_fraction)
    train_ids = sorted(r.id for r in recordings if r.official_split == "train")
    test_ids = sorted(r.id for r in recordings if r.official_split == "test")
    if len(train_ids) < 2 or not test_ids:
        raise InstrumentIdError(
            f"the official split needs >= 2 train_data and >= 1 test_data recordings, found {len(train_ids)} and {len(test_ids)}")
    n_valid = min(max(1, int(round(valid_fraction * len(train_ids)))), len(train_ids) - 1)
    valid_ids = set(np.random.default_rng(seed).permutation(train_ids)[:n_valid].tolist())
    assignment = {rid: ("valid" if rid in valid_ids else "train") for rid in train_ids}
    assignment.update({rid: "test" for rid in test_ids})
    return dict(sorted(assignment.items()))


def recordings_per_instrument(assignment: Mapping[str, str], label_sets: Mapping[str, Iterable[int]]) -> dict[str, np.ndarray]:
    """{split: (11,) int64 number of its recordings in which each instrument plays}."""
    counts = {split: np.zeros(NUM_INSTRUMENTS, dtype=np.int64) for split in SPLITS}
    for rid, split in assignment.items():
        for index in label_sets[rid]:
            counts[split][index] += 1
    return counts


def _check_label_sets(ids: list[str], label_sets: Mapping[str, Iterable[int]]) -> dict[str, frozenset[int]]:
    missing = [rid for rid in ids if rid not in label_sets]
    if missing:
        raise InstrumentIdError(f"no label set for recording(s) {', '.join(missing[:10])}")
    sets = {rid: frozenset(int(i) for i in label_sets[rid]) for rid in ids}
    bad = sorted({i for s in sets.values() for i in s if not 0 <= i < NUM_INSTRUMENTS})
    if bad:
        raise InstrumentIdError(f"class indices {bad} are outside 0..{NUM_INSTRUMENTS - 1}")
    return sets


def _place_each_instrument(ids: list[str], sets: dict[str, frozenset[int]], needed: set[int], counts: np.ndarray,
                           rng: np.random.Generator, greedy: bool) -> dict[str, str]:
    """Rarest instrument first, give each split one recording of every needed instrument.

    greedy: prefer the recording that brings the split the most instruments it lacks; otherwise any feasible one
    (the retries use this to escape a greedy dead end)."""
    assignment: dict[str, str] = {}
    present = {split: set() for split in SPLITS}
    unplaced = counts.copy()  # (11,) recordings of each instrument not yet assigned
    for inst in sorted(needed, key=lambda i: (counts[i], i)):
        for split in ("test", "valid", "train"):
            if inst in present[split]:
                continue
            candidates = [rid for rid in rng.permutation(ids).tolist() if rid not in assignment and inst in sets[rid]]
            if not candidates:
                break

            def score(rid: str) -> tuple[bool, float]:
                # feasible: every instrument of rid keeps enough unplaced recordings for the splits still lacking it
                feasible = all(
                    unplaced[m] - 1 >= sum(m not in present[s] for s in SPLITS if s != split)
                    for m in sets[rid] if m in needed)
                return feasible, sum(m not in present[split] for m in sets[rid]) if greedy else rng.random()

            chosen = max(candidates, key=score)  # first best in shuffled order: ties broken by the seed
            assignment[chosen] = split
            present[split] |= sets[chosen]
            unplaced[list(sets[chosen])] -= 1
    return assignment


def _stratify_rest(ids: list[str], sets: dict[str, frozenset[int]], assignment: dict[str, str],
                   fractions: dict[str, float], rng: np.random.Generator) -> None:
    """Iterative stratification (Sechidis et al. 2011) of the unassigned recordings, rarest instrument first."""
    counts = np.zeros(NUM_INSTRUMENTS)
    for rid in ids:
        counts[list(sets[rid])] += 1
    want_total = {s: fractions[s] * len(ids) for s in SPLITS}
    want_label = {s: fractions[s] * counts for s in SPLITS}  # (11,) recordings each split should hold
    for rid, split in assignment.items():
        want_total[split] -= 1
        want_label[split][list(sets[rid])] -= 1
    rest = [rid for rid in rng.permutation(ids).tolist() if rid not in assignment]

    def choose(keys: list[tuple[float, float]]) -> str:
        best = max(keys)
        return SPLITS[rng.choice([k for k, key in enumerate(keys) if key == best])]

    while rest:
        left = np.zeros(NUM_INSTRUMENTS)
        for rid in rest:
            left[list(sets[rid])] += 1
        if left.any():
            inst = int(np.argmin(np.where(left > 0, left, np.inf)))
            batch = [rid for rid in rest if inst in sets[rid]]
        else:
            inst, batch = -1, list(rest)  # recordings without any labelled instrument
        for rid in batch:
            split = choose([(want_label[s][inst] if inst >= 0 else 0.0, want_total[s]) for s in SPLITS])
            assignment[rid] = split
            want_total[split] -= 1
            want_label[split][list(sets[rid])] -= 1
        rest = [rid for rid in rest if rid not in assignment]


def stratified_split(recordings: Sequence[Recording | str], label_sets: Mapping[str, Iterable[int]],
                     valid_fraction: float = 0.15, test_fraction: float = 0.15, seed: int = 0,
                     allow_missing: bool = False) -> dict[str, str]:
    """A seeded recording-level split in which every instrument in >= 3 recordings is in train, valid and test.

    allow_missing=True accepts instruments in fewer than 3 recordings and, should no try place every instrument
    everywhere, returns the split that misses the fewest (logged); otherwise both raise, naming the instruments."""
    _check_fraction("valid_fraction", valid_fraction)
    _check_fraction("test_fraction", test_fraction)
    if valid_fraction + test_fraction >= 1.0:
        raise InstrumentIdError(f"valid_fraction + test_fraction must be below 1, got {valid_fraction + test_fraction}")
    ids = sorted({r if isinstance(r, str) else r.id for r in recordings})
    if len(ids) < 3:
        raise InstrumentIdError(f"a train/valid/test split needs >= 3 recordings, got {len(ids)}")
    sets = _check_label_sets(ids, label_sets)
    counts = np.zeros(NUM_INSTRUMENTS, dtype=np.int64)
    for rid in ids:
        counts[list(sets[rid])] += 1
    rare = [f"{INSTRUMENTS[i].name} ({counts[i]})" for i in range(NUM_INSTRUMENTS) if 0 < counts[i] < MIN_RECORDINGS_PER_INSTRUMENT]  # an absent instrument is no split problem
    if rare and not allow_missing:
        raise InstrumentIdError(
            f"instrument(s) in fewer than {MIN_RECORDINGS_PER_INSTRUMENT} recordings cannot be in train, valid and test: "
            f"{', '.join(rare)}; pass allow_missing=True to split anyway")
    needed = {i for i in range(NUM_INSTRUMENTS) if counts[i] >= MIN_RECORDINGS_PER_INSTRUMENT}
    fractions = {"train": 1.0 - valid_fraction - test_fraction, "valid": valid_fraction, "test": test_fraction}
    best: tuple[list[str], dict[str, str]] | None = None
    for attempt in range(ATTEMPTS):
        rng = np.random.default_rng([seed, attempt])
        assignment = _place_each_instrument(ids, sets, needed, counts, rng, greedy=attempt < ATTEMPTS // 2)
        _stratify_rest(ids, sets, assignment, fractions, rng)
        per_split = recordings_per_instrument(assignment, sets)
        lacking = [f"{INSTRUMENTS[i].name} in {s}" for s in SPLITS for i in sorted(needed) if per_split[s][i] == 0]
        if best is None or len(lacking) < len(best[0]):
            best = (lacking, assignment)
        if not lacking:
            break
    lacking, assignment = best
    if lacking:
        message = (f"found no split with every instrument in train, valid and test in {ATTEMPTS} tries "
                   f"(the corpus may not allow one): missing {', '.join(lacking)}")
        if not allow_missing:
            raise InstrumentIdError(f"{message}; pass allow_missing=True to accept it")
        log.warning("%s", message)
    return dict(sorted(assignment.items()))
