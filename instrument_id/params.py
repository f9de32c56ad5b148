"""The one source of truth for audio and feature settings, stored in every artefact."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from instrument_id.errors import InstrumentIdError

FEATURE_NAMES: tuple[str, ...] = (
    "chroma_stft", "rms", "spectral_centroid", "spectral_bandwidth", "rolloff", "zero_crossing_rate",
    *(f"mfcc{i}" for i in range(1, 21)),
)


ANALYSIS_HOP_SECONDS = 0.5  # analyze, listen and /v2/analyze: a timeline row every half second unless asked


@dataclass(frozen=True)
class AudioParams:
    """Every audio setting; pass it explicitly, store it with every model, rebuild from what was stored."""

    sample_rate_hz: int = 22050
    window_seconds: float = 2.0
    hop_seconds: float = 1.0
    n_fft: int = 2048
    stft_hop_samples: int = 512
    n_mels: int = 128
    n_mfcc: int = 20
    n_chroma: int = 12
    chroma_tuning: float = 0.0  # fixed A440 so every feature is a mean of per-frame values
    rolloff_percent: float = 0.85
    top_db: float = 80.0
    min_presence_seconds: float = 0.1
    pca_components: int = 16

    def __post_init__(self) -> None:
        if not 1.0 <= self.window_seconds <= 12.0:
            raise InstrumentIdError(f"window_seconds must be between 1 and 12 s, got {self.window_seconds}")
        if self.hop_seconds <= 0:
            raise InstrumentIdError(f"hop_seconds must be positive, got {self.hop_seconds}")
        if self.n_mfcc != 20:
            raise InstrumentIdError(f"the 26 features need n_mfcc=20, got {self.n_mfcc}")
        if self.pca_components < 0:  # 0: no PCA; the upper bound is the feature set's width, checked when fitting
            raise InstrumentIdError(f"pca_components must be 0 (no PCA) or positive, got {self.pca_components}")

    @property
    def window_samples(self) -> int:
        """Samples in one analysis window at sample_rate_hz."""
        return int(round(self.window_seconds * self.sample_rate_hz))

    @property
    def hop_samples(self) -> int:
        """Samples between window starts at sample_rate_hz."""
        return int(round(self.hop_seconds * self.sample_rate_hz))

    @property
    def n_frames(self) -> int:
        """STFT frames per window (centered, as librosa)."""
        return 1 + self.window_samples // self.stft_hop_samples

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "AudioParams":
        """Rebuild from a stored dict; unknown and missing keys are errors (today's defaults never fill a gap)."""
        return cls(**checked_fields(cls, data, "audio"))


def checked_fields(cls: type, data: dict[str, Any], what: str) -> dict[str, Any]:
    """data once it names exactly the dataclass's fields: unknown and missing keys are errors naming them."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown, missing = sorted(set(data) - known), sorted(known - set(data))
    if unknown:
        raise InstrumentIdError(f"unknown {what} settings {unknown}; this artefact needs a newer instrument-id")
    if missing:
        raise InstrumentIdError(f"{what} settings {missing} are missing from the stored parameters; "
                                "the artefact is incomplete or from another version: re-create it")
    return data
