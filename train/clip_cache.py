"""`features --clips DIR --labels CSV`: a feature cache from any labelled folder of recordings.

The folder and CSV are those `evaluate --clips` reads (train/clips.py): a `file` column and one 0/1 column per
instrument. Each clip is a recording; every window of a clip carries the clip's labels (a clip labelled violin is
violin throughout, as a user labels a take). Clips are split by clip: stratified (each instrument present in train,
valid and test where it has three clips), or all into one split (`--split train`: clips that only train, beside a
corpus cache; `--split valid`: clips that select). `train` takes the cache alone or beside others.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from instrument_id.errors import InstrumentIdError
from instrument_id.feature_sets import FeatureSetSpec
from instrument_id.params import AudioParams
from model_zoo.featureset import SPLITS, FeatureSet
from train.clips import LabelledClips, clip_window_features, read_labels
from train.musicnet import update_with_edges
from train.splits import stratified_split
from train.windows import window_start_seconds

CLIP_SPLITS = ("stratified", *SPLITS)


def clips_fingerprint(clips: LabelledClips) -> str:
    """A sha256 of the labels file and each clip's name, size and first and last 64 KiB (as corpus_fingerprint)."""
    digest = hashlib.sha256(b"clips-fingerprint-v1\n")
    digest.update(hashlib.sha256(clips.labels_csv.read_bytes()).digest())
    for path in clips.paths:
        digest.update(f"{path.name}\n".encode())
        update_with_edges(digest, path)
    return digest.hexdigest()


def clip_split(clips: LabelledClips, split: str, seed: int) -> list[str]:
    """Each clip's split: all in one, or stratified by clip (instruments with fewer than 3 clips allowed)."""
    if split not in CLIP_SPLITS:
        raise InstrumentIdError(f"--split for --clips must be one of {', '.join(CLIP_SPLITS)}, got {split!r}")
    names = [p.name for p in clips.paths]
    if split != "stratified":
        return [split] * len(names)
    label_sets = {name: set(np.flatnonzero(row).tolist()) for name, row in zip(names, clips.Y)}
    assignment = stratified_split(names, label_sets, seed=seed, allow_missing=True)
    return [assignment[name] for name in names]


def build_clip_cache(clips_dir: str | Path, labels_csv: str | Path, params: AudioParams, spec: FeatureSetSpec,
                     split: str = "stratified", seed: int = 0) -> FeatureSet:
    """The feature cache of a labelled clip folder; a bad labels row or a missing clip raises naming it."""
    clips = read_labels(labels_csv, clips_dir)
    splits = clip_split(clips, split, seed)
    per_clip = clip_window_features(clips, params, spec)  # per clip (n_windows, width)
    counts = [len(x) for x in per_clip]
    config = {"params": params.to_dict(), "feature_set": spec.to_dict(), "augment": 0, "split": split, "seed": seed,
              "corpus_fingerprint": clips_fingerprint(clips), "corpus": str(Path(clips_dir).resolve()),
              "labels": str(Path(labels_csv).resolve())}
    return FeatureSet(
        X=np.concatenate(per_clip).astype(np.float32),  # (n_windows_total, width)
        Y=np.repeat(clips.Y, counts, axis=0),  # (n_windows_total, 11) each window carries its clip's labels
        split=np.repeat(np.array(splits), counts),
        recording=np.repeat(np.array([p.name for p in clips.paths]), counts),
        variant=np.zeros(sum(counts), dtype=np.int8),
        start_seconds=np.concatenate([window_start_seconds(n, params) for n in counts]).astype(np.float32),
        config=config,
    )
