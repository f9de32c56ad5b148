"""Recording-level splits: official (MusicNet's test_data) and stratified (every instrument in every split)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from instrument_id.errors import InstrumentIdError
from instrument_id.instruments import NAME_TO_INDEX, NUM_INSTRUMENTS
from train.musicnet import Recording, list_recordings, read_labels
from train.splits import SPLITS, official_split, recordings_per_instrument, stratified_split


def recordings(n_train: int, n_test: int) -> list[Recording]:
    """Recording records (files need not exist: splitting looks only at ids and official splits)."""
    return [Recording(str(i), "train" if i < n_train else "test", Path(f"{i}.wav"), Path(f"{i}.csv"))
            for i in range(n_train + n_test)]


def musicnet_like_label_sets(n: int, seed: int) -> dict[str, set[int]]:
    """Piano and strings common, harpsichord in exactly 3 recordings, contrabass in 4, winds in a few ensembles."""
    rng = np.random.default_rng(seed)
    sets: dict[str, set[int]] = {}
    for i in range(n):
        kind = rng.random()
        if kind < 0.5:
            sets[str(i)] = {NAME_TO_INDEX["piano"]}
        elif kind < 0.8:
            sets[str(i)] = {NAME_TO_INDEX[name] for name in ("violin", "viola", "cello")}
        else:
            sets[str(i)] = {NAME_TO_INDEX[name] for name in ("horn", "bassoon", "clarinet")} | {NAME_TO_INDEX["piano"]}
    ids = rng.permutation(n)
    for name, holders in (("harpsichord", ids[:3]), ("contrabass", ids[3:7]), ("oboe", ids[7:12]), ("flute", ids[9:14])):
        for i in holders:
            sets[str(i)].add(NAME_TO_INDEX[name])
    return sets


def test_official_split_keeps_test_data_as_test_and_carves_valid_from_train():
    recs = recordings(20, 5)
    split = official_split(recs, valid_fraction=0.1, seed=3)
    assert set(split) == {r.id for r in recs}
    assert {rid for rid, s in split.items() if s == "test"} == {r.id for r in recs if r.official_split == "test"}
    valid = {rid for rid, s in split.items() if s == "valid"}
    assert len(valid) == 2 and all(int(rid) < 20 for rid in valid)
    assert official_split(recs, valid_fraction=0.1, seed=3) == split
    assert any(official_split(recs, valid_fraction=0.1, seed=s) != split for s in range(4, 10))


def test_official_split_needs_train_and_test_recordings():
    with pytest.raises(InstrumentIdError, match="test_data"):
        official_split(recordings(10, 0))


@pytest.mark.parametrize("seed", range(8))
def test_stratified_split_puts_every_instrument_in_every_split(seed):
    sets = musicnet_like_label_sets(80, seed)
    split = stratified_split(list(sets), sets, seed=seed)
    assert set(split) == set(sets) and set(split.values()) == set(SPLITS)
    counts = recordings_per_instrument(split, sets)
    for s in SPLITS:
        assert (counts[s] > 0).all(), f"{s} lacks instruments {np.flatnonzero(counts[s] == 0)}"
    sizes = {s: sum(v == s for v in split.values()) for s in SPLITS}
    assert 6 <= sizes["valid"] <= 18 and 6 <= sizes["test"] <= 18  # about 15 % of 80 each


def test_stratified_split_is_deterministic_per_seed():
    sets = musicnet_like_label_sets(60, 0)
    assert stratified_split(list(sets), sets, seed=1) == stratified_split(list(sets), sets, seed=1)
    assert any(stratified_split(list(sets), sets, seed=s) != stratified_split(list(sets), sets, seed=1) for s in range(2, 6))


def test_stratified_split_when_rare_instruments_share_their_only_recordings():
    everything = set(range(NUM_INSTRUMENTS))
    sets = {"a": everything, "b": everything, "c": everything, **{str(i): {0} for i in range(10)}}
    split = stratified_split(list(sets), sets, seed=0)
    assert sorted(split[r] for r in "abc") == ["test", "train", "valid"]


def test_stratified_split_names_instruments_in_too_few_recordings():
    sets = musicnet_like_label_sets(40, 0)
    for rid in list(sets)[:40]:
        sets[rid].discard(NAME_TO_INDEX["harpsichord"])
    sets["0"].add(NAME_TO_INDEX["harpsichord"])
    with pytest.raises(InstrumentIdError, match=r"harpsichord \(1\).*allow_missing"):
        stratified_split(list(sets), sets)
    split = stratified_split(list(sets), sets, allow_missing=True)
    counts = recordings_per_instrument(split, sets)
    assert all((counts[s][[NAME_TO_INDEX["piano"], NAME_TO_INDEX["flute"]]] > 0).all() for s in SPLITS)


def test_stratified_split_rejects_bad_fractions_and_missing_label_sets():
    sets = musicnet_like_label_sets(30, 0)
    with pytest.raises(InstrumentIdError, match="below 1"):
        stratified_split(list(sets), sets, valid_fraction=0.5, test_fraction=0.5)
    with pytest.raises(InstrumentIdError, match="no label set for recording"):
        stratified_split([*sets, "extra"], sets)


def test_stratified_split_on_a_corpus_read_from_disk(make_musicnet):
    programs = [1, 1, 1, 41, 41, 41, 43, 43, 43]
    root = make_musicnet([{"id": str(i), "split": "train" if i % 3 else "test", "seconds": 0.2,
                           "notes": [(0.0, 0.1, p, 60), (0.1, 0.2, 1, 64)]} for i, p in enumerate(programs)])
    recs = list_recordings(root)
    sets = {rec.id: read_labels(rec.labels_path).class_set() for rec in recs}
    split = stratified_split(recs, sets, allow_missing=True)
    counts = recordings_per_instrument(split, sets)
    for name in ("piano", "violin", "cello"):
        assert all(counts[s][NAME_TO_INDEX[name]] > 0 for s in SPLITS)


def test_stratified_split_reports_a_corpus_that_allows_no_full_split():
    # instruments 0, 1, 2 each sit in 3 of the recordings r1..r4: no assignment gives all three to every split
    sets = {"r1": {0, 1, 2}, "r2": {0, 1}, "r3": {0, 2}, "r4": {1, 2}}
    sets.update({f"x{i}-{k}": {i} for i in range(3, NUM_INSTRUMENTS) for k in range(3)})
    with pytest.raises(InstrumentIdError, match=r"found no split.*missing (piano|harpsichord|violin) in"):
        stratified_split(list(sets), sets)
    split = stratified_split(list(sets), sets, allow_missing=True)
    counts = recordings_per_instrument(split, sets)
    assert all((counts[s][3:] > 0).all() for s in SPLITS)  # the feasible instruments are still everywhere
