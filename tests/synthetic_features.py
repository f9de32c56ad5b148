"""Tiny synthetic FeatureSets for model tests: each present instrument adds its own mean vector to the 26 features."""

from __future__ import annotations

from typing import Any

import numpy as np

from instrument_id.feature_sets import SEED26
from instrument_id.instruments import NUM_INSTRUMENTS
from instrument_id.params import FEATURE_NAMES, AudioParams
from model_zoo.featureset import FeatureSet

SPLIT_FRACTIONS = {"train": 0.6, "valid": 0.2, "test": 0.2}


def make_featureset(
    n_windows: int = 900,
    *,
    seed: int = 0,
    separation: float = 3.0,
    presence: float = 0.3,
    params: AudioParams | None = None,
) -> FeatureSet:
    """Windows with random multi-label Y; X = noise + separation * (sum of each present instrument's direction)."""
    rng = np.random.default_rng(seed)
    params = params or AudioParams()
    n_features = len(FEATURE_NAMES)
    directions = np.linalg.qr(rng.normal(size=(n_features, n_features)))[0][:NUM_INSTRUMENTS]  # (11, 26) orthonormal
    Y = (rng.random((n_windows, NUM_INSTRUMENTS)) < presence).astype(np.uint8)  # (n, 11)
    X = rng.normal(size=(n_windows, n_features)) + separation * (Y @ directions)  # (n, 26)
    X = X * rng.uniform(0.5, 20.0, size=n_features) + rng.normal(0, 5.0, size=n_features)  # unequal feature scales
    cut_train = int(n_windows * SPLIT_FRACTIONS["train"])
    cut_valid = cut_train + int(n_windows * SPLIT_FRACTIONS["valid"])
    split = np.array(["train"] * cut_train + ["valid"] * (cut_valid - cut_train) + ["test"] * (n_windows - cut_valid))
    config: dict[str, Any] = {
        "params": params.to_dict(), "feature_set": SEED26.to_dict(), "augment": 0, "split": "synthetic", "seed": seed,
        "corpus_fingerprint": f"synthetic-{seed}-{n_windows}",
    }
    return FeatureSet(
        X=X.astype(np.float32), Y=Y, split=split, recording=np.array([f"rec{i // 10}" for i in range(n_windows)]),
        variant=np.zeros(n_windows, dtype=np.int8), start_seconds=(np.arange(n_windows) % 10).astype(np.float32),
        config=config,
    )
