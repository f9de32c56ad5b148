"""The fitted feature pipeline (standardize -> PCA) and the per-instrument decision thresholds, in numpy only.

It runs on edge devices and in the server without scikit-learn; training fits it with scikit-learn and copies the
fitted arrays here, and a test holds `transform` against StandardScaler -> PCA.transform.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from instrument_id.errors import InstrumentIdError
from instrument_id.instruments import NUM_INSTRUMENTS


@dataclass(frozen=True)
class FeaturePipeline:
    """StandardScaler (mean, scale), then PCA (mean, components; empty arrays: no PCA), then one probability
    threshold per instrument. Its width (features in) comes from its arrays, i.e. from the feature set it was fit on."""

    scaler_mean: np.ndarray  # (width,)
    scaler_scale: np.ndarray  # (width,) sklearn's scale_, zero variances already replaced by 1
    pca_mean: np.ndarray  # (width,) mean of the standardized training features; (0,) without PCA
    pca_components: np.ndarray  # (k, width) rows are principal axes; (0, width) without PCA
    thresholds: np.ndarray  # (11,) a window is positive for instrument j when p_j >= thresholds[j]

    def __post_init__(self) -> None:
        for name in ("scaler_mean", "scaler_scale", "pca_mean", "pca_components", "thresholds"):
            object.__setattr__(self, name, np.asarray(getattr(self, name), dtype=np.float64))
        if self.scaler_mean.ndim != 1 or len(self.scaler_mean) < 1:
            raise InstrumentIdError(f"pipeline scaler_mean must have shape (width,), got {self.scaler_mean.shape}")
        width = self.width
        if self.scaler_scale.shape != (width,):
            raise InstrumentIdError(f"pipeline scaler_scale must have shape ({width},), got {self.scaler_scale.shape}")
        if self.has_pca:
            if self.pca_mean.shape != (width,):
                raise InstrumentIdError(f"pipeline pca_mean must have shape ({width},), got {self.pca_mean.shape}")
            k = self.pca_components.shape[0] if self.pca_components.ndim == 2 else 0
            if self.pca_components.ndim != 2 or self.pca_components.shape[1] != width or not 1 <= k <= width:
                raise InstrumentIdError(
                    f"pipeline pca_components must have shape (k, {width}) with 1 <= k <= {width}, "
                    f"got {self.pca_components.shape}"
                )
        if self.thresholds.shape != (NUM_INSTRUMENTS,):
            raise InstrumentIdError(
                f"pipeline thresholds must have shape ({NUM_INSTRUMENTS},), got {self.thresholds.shape}"
            )
        fitted = (self.scaler_mean, self.scaler_scale, self.pca_mean, self.pca_components)
        if not all(np.isfinite(array).all() for array in fitted):
            raise InstrumentIdError("pipeline arrays contain NaN or infinity")
        if (self.scaler_scale <= 0).any():
            raise InstrumentIdError("pipeline scaler_scale must be positive")

    @property
    def width(self) -> int:
        """Number of features the pipeline reads."""
        return int(self.scaler_mean.shape[0])

    @property
    def has_pca(self) -> bool:
        """False when the pipeline only standardizes (its PCA arrays are empty)."""
        return self.pca_components.size > 0 or self.pca_mean.size > 0

    @property
    def n_components(self) -> int:
        """Number of values the model reads: PCA components, or the width without PCA."""
        return int(self.pca_components.shape[0]) if self.has_pca else self.width

    def transform(self, X: np.ndarray) -> np.ndarray:
        """(n, width) features -> (n, k) float32 model inputs, as StandardScaler -> PCA.transform."""
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.width:
            width = X.shape[-1] if X.ndim >= 1 else 0
            raise InstrumentIdError(f"expected {self.width} features, got {width} (array shape {X.shape})")
        if not np.isfinite(X).all():
            raise InstrumentIdError("features contain NaN or infinity")
        standardized = (X - self.scaler_mean) / self.scaler_scale  # (n, width)
        if not self.has_pca:
            return standardized.astype(np.float32)  # (n, width)
        return ((standardized - self.pca_mean) @ self.pca_components.T).astype(np.float32)  # (n, k)

    def decide(self, probabilities: np.ndarray) -> np.ndarray:
        """(n, 11) probabilities -> (n, 11) bool, True where an instrument is judged present."""
        probabilities = np.asarray(probabilities)
        if probabilities.ndim != 2 or probabilities.shape[1] != NUM_INSTRUMENTS:
            raise InstrumentIdError(f"expected (n, {NUM_INSTRUMENTS}) probabilities, got shape {probabilities.shape}")
        return probabilities >= self.thresholds  # (n, 11)

    def with_thresholds(self, thresholds: np.ndarray) -> "FeaturePipeline":
        """A copy with new decision thresholds."""
        return FeaturePipeline(self.scaler_mean, self.scaler_scale, self.pca_mean, self.pca_components, thresholds)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON lists of every array."""
        return {
            "scaler_mean": self.scaler_mean.tolist(),
            "scaler_scale": self.scaler_scale.tolist(),
            "pca_mean": self.pca_mean.tolist(),
            "pca_components": self.pca_components.tolist(),
            "thresholds": self.thresholds.tolist(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "FeaturePipeline":
        """Rebuild from to_dict() output; missing or extra keys and wrong shapes raise InstrumentIdError."""
        expected = {"scaler_mean", "scaler_scale", "pca_mean", "pca_components", "thresholds"}
        if not isinstance(data, dict) or set(data) != expected:
            found = sorted(data) if isinstance(data, dict) else type(data).__name__
            raise InstrumentIdError(f"pipeline needs keys {sorted(expected)}, got {found}")
        try:
            arrays = {key: np.asarray(value, dtype=np.float64) for key, value in data.items()}
        except (TypeError, ValueError) as exc:
            raise InstrumentIdError(f"pipeline arrays are not numeric ({exc})") from None
        return cls(**arrays)
