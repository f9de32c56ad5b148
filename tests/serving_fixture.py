"""Model folders for the serving tests, made once per test session by the real code: train (MLP and RF) and convert.

The features are the synthetic ones of synthetic_features.py, so the models are small and quick to train; what the
serving tests check (decoding, routing, logging, errors) does not depend on what the models learned.
"""

from __future__ import annotations

import base64
import importlib.util
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from instrument_id.cli import main
from synthetic_features import make_featureset

DONE_MARKER = "built.json"
# the fixture trains and converts with the real code, so the serving tests need the training install
needs_training = pytest.mark.skipif(
    any(importlib.util.find_spec(name) is None for name in ("tensorflow", "sklearn", "skops")),
    reason="the serving tests build their models with `instrument-id train` (pip install 'instrument-id[train]')",
)


@dataclass(frozen=True)
class ServedFolders:
    mlp: Path
    rf: Path


def _build(root: Path) -> None:
    """Feature file -> `instrument-id train` (mlp, rf) -> tflite.convert (float32 and raw-audio variants)."""
    from tflite.convert import convert_model_dir

    features = root / "features.npz"
    make_featureset(300, separation=5.0).save(features)
    models = root / "models"
    for model, extra in (("mlp", ["--epochs", "3"]), ("rf", [])):
        command = ["train", "--features", str(features), "--model", model, "--out", str(models), "--quiet", *extra]
        assert main(command) == 0, command
    convert_model_dir(models / "mlp", "none")
    convert_model_dir(models / "mlp", "raw")
    (root / DONE_MARKER).write_text(json.dumps({"mlp": str(models / "mlp"), "rf": str(models / "rf")}))


def served_folders(tmp_path_factory: Any) -> ServedFolders:
    """The session's model folders, built on first use (shared by every serving test module)."""
    root = tmp_path_factory.getbasetemp() / "serving_models"
    if not (root / DONE_MARKER).is_file():
        root.mkdir(exist_ok=True)
        _build(root)
    paths = json.loads((root / DONE_MARKER).read_text())
    return ServedFolders(mlp=Path(paths["mlp"]), rf=Path(paths["rf"]))


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> ServedFolders:
    """The session's model folders (a fixture: a test module imports it, with app and client, to use them)."""
    return served_folders(tmp_path_factory)


@pytest.fixture
def app(folders, tmp_path):
    """The app serving both folders, with a prediction log of its own in the test's temporary folder."""
    from serving.app import create_app

    return create_app(app_config(folders, tmp_path / "log.sqlite"))


@pytest.fixture
def client(app):
    """Flask's test client of app."""
    return app.test_client()


def app_config(folders: ServedFolders, log_db: Path, **overrides: Any) -> dict[str, Any]:
    """A config dict serving both folders (MLP on its float32 .tflite, RF through the zoo), A/B 50:50."""
    config = {
        "models": {
            "mlp": {"path": str(folders.mlp), "runtime": "tflite", "tflite_file": "model_float32.tflite"},
            "rf": {"path": str(folders.rf), "runtime": "zoo"},
        },
        "ab": {"arms": {"A": {"model": "mlp", "weight": 0.5}, "B": {"model": "rf", "weight": 0.5}}},
        "log_db": str(log_db),
    }
    config.update(overrides)
    return config


def music_clip(seconds: float, rate_hz: int = 44100, channels: int = 1, seed: int = 0) -> np.ndarray:
    """(samples, channels) float32: a few decaying harmonic notes plus a little noise, within -1..1."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(seconds * rate_hz))) / rate_hz  # (samples,)
    y = 0.01 * rng.standard_normal(len(t))
    for start in np.arange(0.0, seconds, 0.5):
        f0 = 110.0 * 2 ** (rng.integers(0, 36) / 12)
        inside = t >= start
        tau = t[inside] - start
        y[inside] += sum(0.2 / k * np.sin(2 * np.pi * k * f0 * tau) for k in range(1, 5)) * np.exp(-3 * tau)
    y = 0.8 * y / np.abs(y).max()
    return np.repeat(y[:, None], channels, axis=1).astype(np.float32)  # (samples, channels)


def encode(samples: np.ndarray, rate_hz: int, fmt: str, subtype: str | None = None) -> bytes:
    """(samples, channels) float32 -> the bytes of a WAV/FLAC/OGG file."""
    buffer = io.BytesIO()
    sf.write(buffer, samples, rate_hz, format=fmt, subtype=subtype)
    return buffer.getvalue()


def pcm_json(samples: np.ndarray, rate_hz: int, fmt: str) -> dict[str, Any]:
    """(samples, channels) float32 in -1..1 -> the JSON body {"pcm_base64", "sample_rate", "channels", "format"}."""
    pcm = (np.round(samples * 32767).astype("<i2") if fmt == "s16le" else samples.astype("<f4")).tobytes()
    return {"pcm_base64": base64.b64encode(pcm).decode(), "sample_rate": rate_hz, "channels": samples.shape[1], "format": fmt}
