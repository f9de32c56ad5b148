"""Feature sets as named, versioned definitions stored in every artefact: which values a model reads per window.

`seed26` is the 26 window means of instrument_id.features; `musicnn` (model_zoo.featurizers) is a pooled embedding
of the pretrained MTT_musicnn network. A model, a pipeline, a feature cache and a .tflite file each store the
FeatureSetSpec they were made with, and every consumer checks it against what it is given, naming both.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

from instrument_id.errors import InstrumentIdError
from instrument_id.params import FEATURE_NAMES

SPEC_KEYS = ("name", "version", "width", "settings")


@dataclass(frozen=True)
class FeatureSetSpec:
    """A feature set: its name, version, width (values per window) and the settings that define it (JSON text)."""

    name: str
    version: int
    width: int
    settings_json: str = "{}"  # canonical JSON (sorted keys), so the spec is hashable and compares by content

    def __post_init__(self) -> None:
        if not self.name or not isinstance(self.name, str):
            raise InstrumentIdError(f"a feature set needs a name, got {self.name!r}")
        if not isinstance(self.width, int) or self.width < 1:
            raise InstrumentIdError(f"feature set {self.name}: width must be a positive integer, got {self.width!r}")
        object.__setattr__(self, "settings_json", json.dumps(json.loads(self.settings_json), sort_keys=True))

    @property
    def settings(self) -> dict[str, Any]:
        """The defining settings as a dict (a fresh copy)."""
        return json.loads(self.settings_json)

    @property
    def columns(self) -> list[str]:
        """One name per value: the 26 feature names, else name0, name1, ..."""
        if self.name == SEED26.name:
            return list(FEATURE_NAMES)
        return [f"{self.name}{i}" for i in range(self.width)]

    @property
    def label(self) -> str:
        """Short human name, e.g. 'seed26 v1 (26 values)'."""
        return f"{self.name} v{self.version} ({self.width} values)"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of the spec."""
        return {"name": self.name, "version": self.version, "width": self.width, "settings": self.settings}

    @classmethod
    def from_dict(cls, data: Any) -> "FeatureSetSpec":
        """Rebuild a stored spec; a missing or unknown key is an error."""
        if not isinstance(data, dict) or sorted(data) != sorted(SPEC_KEYS):
            found = sorted(data) if isinstance(data, dict) else type(data).__name__
            raise InstrumentIdError(f"a stored feature set needs exactly the keys {list(SPEC_KEYS)}, found {found}")
        return cls(name=data["name"], version=int(data["version"]), width=int(data["width"]),
                   settings_json=json.dumps(data["settings"], sort_keys=True))

    def check_same(self, other: "FeatureSetSpec", what: str, other_what: str) -> None:
        """Refuse a mismatch, naming both sides (e.g. a model applied to another feature set's values)."""
        if self != other:
            raise InstrumentIdError(f"{what} was made with feature set {self.label}, but {other_what} uses "
                                    f"{other.label}; they cannot be combined")


SEED26 = FeatureSetSpec(name="seed26", version=1, width=len(FEATURE_NAMES))


def replace_settings(spec: FeatureSetSpec, **settings: Any) -> FeatureSetSpec:
    """A copy with some settings replaced."""
    return dataclasses.replace(spec, settings_json=json.dumps({**spec.settings, **settings}, sort_keys=True))


def stored_feature_set(stored: dict[str, Any]) -> FeatureSetSpec:
    """The feature set an artefact's JSON stores under 'feature_set'; artefacts written before feature sets existed
    (no such key) computed the 26 means, so they are seed26 v1."""
    if "feature_set" not in stored:
        return SEED26
    return FeatureSetSpec.from_dict(stored["feature_set"])
