"""The feature cache file: features, labels, splits and the configuration that made them, in one .npz."""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from instrument_id.atomic import atomic_path
from instrument_id.errors import InstrumentIdError
from instrument_id.instruments import NUM_INSTRUMENTS
from instrument_id.feature_sets import FeatureSetSpec
from instrument_id.params import AudioParams

SPLITS = ("train", "valid", "test")
FORMAT_VERSION = 2  # 2: the feature set is stored in the config


@dataclass
class FeatureSet:
    """Rows are windows. X (n, width) float32 values of config's feature set; Y (n, 11) uint8; split (n,) one of SPLITS; recording (n,) str id;
    variant (n,) int8, 0 for the original window and 1..k for its augmentations (train split only);
    start_seconds (n,) float32 window start inside its recording; config holds params, feature_set, augment, split, fingerprint."""

    X: np.ndarray
    Y: np.ndarray
    split: np.ndarray
    recording: np.ndarray
    variant: np.ndarray
    start_seconds: np.ndarray
    config: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.X)
        if "feature_set" not in self.config:
            raise InstrumentIdError("a feature cache must store the feature set that made it (config['feature_set'])")
        width = self.feature_set.width
        if self.X.ndim != 2 or self.X.shape[1] != width:
            raise InstrumentIdError(f"features must have shape (n, {width}) for {self.feature_set.label}, got {self.X.shape}")
        if self.Y.shape != (n, NUM_INSTRUMENTS):
            raise InstrumentIdError(f"labels must have shape ({n}, {NUM_INSTRUMENTS}), got {self.Y.shape}")
        for name in ("split", "recording", "variant", "start_seconds"):
            if len(getattr(self, name)) != n:
                raise InstrumentIdError(f"{name} has {len(getattr(self, name))} rows, features have {n}")
        bad = sorted(set(np.unique(self.split)) - set(SPLITS))
        if bad:
            raise InstrumentIdError(f"unknown split names {bad}; expected {SPLITS}")

    @property
    def params(self) -> AudioParams:
        """The AudioParams these features were computed with."""
        return AudioParams.from_dict(self.config["params"])

    @property
    def feature_set(self) -> FeatureSetSpec:
        """The feature set these values belong to."""
        return FeatureSetSpec.from_dict(self.config["feature_set"])

    def subset(self, split: str, originals_only: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(X, Y) of one split; raises when it is empty."""
        mask = self.split == split
        if originals_only:
            mask &= self.variant == 0
        if not mask.any():
            raise InstrumentIdError(f"the {split} split is empty")
        return self.X[mask], self.Y[mask]

    def save(self, path: str | Path) -> None:
        """Write atomically as an uncompressed .npz with the config as JSON (no pickles)."""
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as handle:
                np.savez(
                    handle, X=self.X.astype(np.float32), Y=self.Y.astype(np.uint8), split=self.split.astype(str),
                    recording=self.recording.astype(str), variant=self.variant.astype(np.int8),
                    start_seconds=self.start_seconds.astype(np.float32),
                    config=np.array(json.dumps({"format_version": FORMAT_VERSION, **self.config}, sort_keys=True)),
                )


def load_featureset(path: str | Path) -> FeatureSet:
    """Read a feature cache; a missing, truncated or foreign file raises InstrumentIdError naming it."""
    path = Path(path)
    if not path.is_file():
        raise InstrumentIdError(f"{path}: feature file not found")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in ("X", "Y", "split", "recording", "variant", "start_seconds", "config")}
    except (zipfile.BadZipFile, KeyError, ValueError, OSError, EOFError) as exc:
        raise InstrumentIdError(f"{path}: not a valid instrument-id feature file ({exc})") from None
    config = json.loads(str(arrays.pop("config")))
    if config.pop("format_version", None) != FORMAT_VERSION:
        raise InstrumentIdError(f"{path}: feature file format is not version {FORMAT_VERSION}; recompute it")
    return FeatureSet(config=config, **arrays)
