"""Several feature caches as one training set, and a separate cache as the valid split that selects the model.

`train --features A.npz B.npz --valid V.npz`: the train and test windows of A and B train and test as before; their
own valid windows join train, because the valid split is now V: every original window of V (a corpus rendered from
held-out real notes, say) chooses the early-stopping epoch and the decision thresholds. Without --valid, each cache's
valid split is kept. Caches must share the feature set and the audio settings; recording ids are prefixed by the
cache's position when there are several, so two corpora's recording 1000 stay apart.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from instrument_id.errors import InstrumentIdError
from model_zoo.featureset import FeatureSet, load_featureset

MERGED_KEYS = ("X", "Y", "split", "recording", "variant", "start_seconds")


def _describe(path: Path, features: FeatureSet) -> dict[str, Any]:
    """What one input cache was: its file, corpus, fingerprint and window counts per split."""
    splits, counts = np.unique(features.split, return_counts=True)
    return {"features": str(path), "corpus": features.config.get("corpus"),
            "corpus_fingerprint": features.config.get("corpus_fingerprint"),
            "timbre_sources": features.config.get("timbre_sources"),
            "windows": {str(s): int(c) for s, c in zip(splits, counts)}}


def _check_compatible(first: tuple[Path, FeatureSet], other: tuple[Path, FeatureSet]) -> None:
    (path0, f0), (path, f) = first, other
    if f.config["feature_set"] != f0.config["feature_set"]:
        raise InstrumentIdError(f"{path}: feature set {f.feature_set.label} differs from {path0}'s "
                                f"{f0.feature_set.label}; caches trained together must share it")
    if f.config["params"] != f0.config["params"]:
        differing = sorted(k for k in f0.config["params"] if f.config["params"].get(k) != f0.config["params"][k])
        raise InstrumentIdError(f"{path}: audio settings differ from {path0}'s ({', '.join(differing)}); "
                                "caches trained together must share them")


def merge_caches(paths: list[Path], valid_path: Path | None = None) -> FeatureSet:
    """One FeatureSet from the training caches (and the valid cache); a bad or mismatched file raises naming it."""
    if not paths:
        raise InstrumentIdError("no feature cache given")
    loaded = [(Path(p), load_featureset(p)) for p in paths]
    if len(loaded) == 1 and valid_path is None:
        return loaded[0][1]
    valid = (Path(valid_path), load_featureset(valid_path)) if valid_path is not None else None
    for other in loaded[1:] + ([valid] if valid else []):
        _check_compatible(loaded[0], other)
    parts: dict[str, list[np.ndarray]] = {key: [] for key in MERGED_KEYS}
    for index, (_path, f) in enumerate(loaded):
        split = np.where(f.split == "valid", "train", f.split) if valid else f.split
        prefix = f"{index}:" if len(loaded) > 1 else ""
        for key, values in (("X", f.X), ("Y", f.Y), ("split", split), ("variant", f.variant),
                            ("recording", np.char.add(prefix, f.recording.astype(str))),
                            ("start_seconds", f.start_seconds)):
            parts[key].append(values)
    if valid:
        f = valid[1]
        keep = f.variant == 0  # original windows only: augmented copies would not select anything new
        for key, values in (("X", f.X), ("Y", f.Y), ("split", np.full(len(f.X), "valid")), ("variant", f.variant),
                            ("recording", np.char.add("valid:", f.recording.astype(str))),
                            ("start_seconds", f.start_seconds)):
            parts[key].append(values[keep])
    config = {key: loaded[0][1].config[key] for key in ("params", "feature_set")}
    config["augment"] = [f.config.get("augment") for _p, f in loaded]
    config["caches"] = [_describe(p, f) for p, f in loaded]
    # what the model heard: every timbre source (soundfont, patch set, SFZ library) of the training corpora
    config["timbre_sources"] = sorted({s for _p, f in loaded for s in f.config.get("timbre_sources") or []})
    if valid:
        config["valid_from"] = _describe(*valid)
    # one fingerprint of what trained: evaluate compares it with a cache's to flag "same data as training"
    config["corpus_fingerprint"] = "+".join(str(f.config.get("corpus_fingerprint")) for _p, f in loaded)
    return FeatureSet(config=config, **{key: np.concatenate(values) for key, values in parts.items()})
