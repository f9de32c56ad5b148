"""Model folders: write one atomically, verify every file against its manifest, load it into a predictor.

A model folder holds the weights (`model.keras` or `model.skops`), `pipeline.json` (the fitted FeaturePipeline, the
AudioParams and the feature set its inputs were computed with), `metrics.json` and `manifest.json`, which records the sha256 and size
of every other file plus a checksum of its own contents. Loading rebuilds AudioParams from what was stored.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from instrument_id.atomic import atomic_dir, write_text_atomic
from instrument_id.errors import InstrumentIdError
from instrument_id.instruments import column_names
from instrument_id.feature_sets import FeatureSetSpec, stored_feature_set
from instrument_id.params import AudioParams
from instrument_id.pipeline import FeaturePipeline
from model_zoo import backends
from model_zoo.model import Model

MANIFEST_FILE = "manifest.json"
PIPELINE_FILE = "pipeline.json"
METRICS_FILE = "metrics.json"
FORMAT_VERSION = 2  # 2 stores the feature set; 1 (the 26 means, before feature sets) still loads as seed26
READABLE_FORMATS = (1, 2)
MANIFEST_KEYS = (
    "format_version", "kind", "name", "version", "created_utc", "weights_file", "labels", "feature_names",
    "feature_set", "params", "training_data", "architecture", "files", "content_sha256",
)
FORMAT_1_KEYS = tuple(key for key in MANIFEST_KEYS if key != "feature_set")


def file_digest(path: Path) -> dict[str, Any]:
    """{'sha256': hex digest, 'size_bytes': n} of one file."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return {"sha256": digest.hexdigest(), "size_bytes": path.stat().st_size}


def _content_sha256(manifest: dict[str, Any]) -> str:
    """Checksum of every manifest field but itself, so an edited manifest is caught."""
    body = {key: value for key, value in manifest.items() if key != "content_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode("utf-8")).hexdigest()


def _dumps(data: Any) -> str:
    return json.dumps(data, indent=2) + "\n"  # insertion order: instruments stay in class order


def save_model_dir(
    out_dir: str | Path,
    *,
    kind: str,
    name: str,
    model: Any,
    pipeline: FeaturePipeline,
    params: AudioParams,
    feature_set: FeatureSetSpec,
    metrics: dict[str, Any],
    training_data: dict[str, Any],
    architecture: dict[str, Any],
) -> Path:
    """Write a complete model folder at out_dir atomically (an existing one is replaced only once the new is whole)."""
    if kind not in backends.WEIGHTS_FILES:
        raise InstrumentIdError(f"unknown model kind {kind!r}; expected one of {sorted(backends.WEIGHTS_FILES)}")
    _check_pipeline(pipeline, params, feature_set, "the pipeline")
    out_dir = Path(out_dir)
    weights_file = backends.WEIGHTS_FILES[kind]
    with atomic_dir(out_dir) as tmp:
        tmp.chmod(0o755)  # mkdtemp makes it owner-only; a server running as another user must read it
        backends.save_weights(kind, model, tmp / weights_file)
        (tmp / PIPELINE_FILE).write_text(_dumps({"pipeline": pipeline.to_dict(), "params": params.to_dict(),
                                                 "feature_set": feature_set.to_dict()}))
        (tmp / METRICS_FILE).write_text(_dumps(metrics))
        files = {path.name: file_digest(path) for path in sorted(tmp.iterdir())}
        manifest = {
            "format_version": FORMAT_VERSION,
            "kind": kind,
            "name": name,
            "version": files[weights_file]["sha256"][:12],
            "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "weights_file": weights_file,
            "labels": column_names(),
            "feature_names": feature_set.columns,
            "feature_set": feature_set.to_dict(),
            "params": params.to_dict(),
            "training_data": training_data,
            "architecture": architecture,
            "files": files,
        }
        manifest["content_sha256"] = _content_sha256(manifest)
        (tmp / MANIFEST_FILE).write_text(_dumps(manifest))
    return out_dir


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InstrumentIdError(f"{path}: not readable JSON ({exc})") from None


def _read_manifest(model_dir: Path) -> dict[str, Any]:
    """The manifest, checked for its own integrity (keys, checksum, class order, feature names)."""
    if not model_dir.is_dir():
        raise InstrumentIdError(f"{model_dir}: no model folder here")
    path = model_dir / MANIFEST_FILE
    if not path.is_file():
        raise InstrumentIdError(f"{path}: missing; this is not a model folder")
    manifest = _read_json(path)
    version = manifest.get("format_version") if isinstance(manifest, dict) else None
    if version not in READABLE_FORMATS:
        raise InstrumentIdError(f"{path}: model format {version} is not one of {READABLE_FORMATS}")
    keys = MANIFEST_KEYS if version == FORMAT_VERSION else FORMAT_1_KEYS
    if sorted(manifest) != sorted(keys):
        raise InstrumentIdError(f"{path}: expected keys {sorted(keys)}, found {sorted(manifest)}")
    if manifest["content_sha256"] != _content_sha256(manifest):
        raise InstrumentIdError(f"{path}: altered (its content checksum does not match)")
    if manifest["labels"] != column_names():
        raise InstrumentIdError(f"{path}: instrument order {manifest['labels']} differs from {column_names()}")
    try:
        feature_set = stored_feature_set(manifest)
    except InstrumentIdError as exc:
        raise InstrumentIdError(f"{path}: {exc}") from None
    if manifest["feature_names"] != feature_set.columns:
        raise InstrumentIdError(f"{path}: feature names differ from those of {feature_set.label}")
    return manifest


def manifest_feature_set(manifest: dict[str, Any]) -> FeatureSetSpec:
    """The feature set a verified manifest names (seed26 for format 1)."""
    return stored_feature_set(manifest)


def _check_pipeline(pipeline: FeaturePipeline, params: AudioParams, feature_set: FeatureSetSpec, where: str) -> None:
    """The pipeline reads the feature set's width and gives as many values as params' PCA size says."""
    if pipeline.width != feature_set.width:
        raise InstrumentIdError(f"{where} reads {pipeline.width} features but {feature_set.label} has {feature_set.width}")
    expected = params.pca_components or feature_set.width  # 0: no PCA
    if pipeline.n_components != expected:
        raise InstrumentIdError(f"{where} gives {pipeline.n_components} values but params say PCA "
                                f"{params.pca_components} ({expected} values)")


def verify_model_dir(path: str | Path, *, allow_extra: frozenset[str] = frozenset()) -> dict[str, Any]:
    """Check every file against the manifest (missing, extra, truncated, altered); return the manifest."""
    model_dir = Path(path)
    manifest = _read_manifest(model_dir)
    files: dict[str, dict[str, Any]] = manifest["files"]
    for name, expected in sorted(files.items()):
        file_path = model_dir / name
        if not file_path.is_file():
            raise InstrumentIdError(
                f"{file_path}: missing (manifest lists {expected['size_bytes']} bytes, sha256 {expected['sha256']})"
            )
        found = file_digest(file_path)
        if found["size_bytes"] != expected["size_bytes"]:
            raise InstrumentIdError(
                f"{file_path}: truncated or grown: expected {expected['size_bytes']} bytes, found {found['size_bytes']}"
            )
        if found["sha256"] != expected["sha256"]:
            raise InstrumentIdError(
                f"{file_path}: altered: expected sha256 {expected['sha256']}, found {found['sha256']}"
            )
    extra = sorted(p.name for p in model_dir.iterdir() if p.name not in files and p.name != MANIFEST_FILE)
    extra = [name for name in extra if name not in allow_extra]
    if extra:
        raise InstrumentIdError(f"{model_dir / extra[0]}: extra file not listed in the manifest (all extras: {extra})")
    weights = manifest["weights_file"]
    if manifest["kind"] not in backends.WEIGHTS_FILES or backends.WEIGHTS_FILES[manifest["kind"]] != weights:
        raise InstrumentIdError(f"{model_dir / MANIFEST_FILE}: kind {manifest['kind']!r} with weights {weights!r}")
    for required in (weights, PIPELINE_FILE, METRICS_FILE):
        if required not in files:
            raise InstrumentIdError(f"{model_dir / required}: not listed in the manifest")
    if manifest["version"] != files[weights]["sha256"][:12]:
        raise InstrumentIdError(f"{model_dir / MANIFEST_FILE}: version does not match the weights' sha256")
    return manifest


def add_file_to_manifest(model_dir: str | Path, filename: str) -> dict[str, Any]:
    """List a new file (e.g. model_float32.tflite) in a verified folder's manifest; rewrites the manifest atomically."""
    model_dir = Path(model_dir)
    if filename == MANIFEST_FILE or Path(filename).name != filename:
        raise InstrumentIdError(f"{filename!r}: only a plain file name inside the model folder can be added")
    file_path = model_dir / filename
    if not file_path.is_file():
        raise InstrumentIdError(f"{file_path}: no such file to add to the manifest")
    manifest = verify_model_dir(model_dir, allow_extra=frozenset({filename}))
    manifest["files"] = {**manifest["files"], filename: file_digest(file_path)}
    manifest["content_sha256"] = _content_sha256(manifest)
    write_text_atomic(model_dir / MANIFEST_FILE, _dumps(manifest))
    return manifest


def read_pipeline_json(path: Path) -> tuple[FeaturePipeline, AudioParams, FeatureSetSpec]:
    """A model folder's pipeline.json -> (pipeline, audio settings, feature set), checked against each other; the one
    reader of that file (the zoo's loader and the edge runtime's feature-level .tflite both use it)."""
    if not path.is_file():
        raise InstrumentIdError(f"{path}: missing; a feature-level model needs the {PIPELINE_FILE} of its model folder")
    stored = _read_json(path)
    if not isinstance(stored, dict) or not {"pipeline", "params"} <= set(stored) <= {"pipeline", "params", "feature_set"}:
        found = sorted(stored) if isinstance(stored, dict) else type(stored).__name__
        raise InstrumentIdError(f"{path}: expected keys ['feature_set', 'params', 'pipeline'], found {found}")
    try:
        params = AudioParams.from_dict(stored["params"])
        pipeline = FeaturePipeline.from_dict(stored["pipeline"])
        feature_set = stored_feature_set(stored)
    except (InstrumentIdError, TypeError) as exc:
        raise InstrumentIdError(f"{path}: {exc}") from None
    _check_pipeline(pipeline, params, feature_set, str(path))
    return pipeline, params, feature_set


@dataclass(eq=False)
class ZooModel(Model):
    """A Keras or scikit-learn model with its pipeline and settings: loaded from a verified folder (load_model), or
    just fitted (train.models.TrainedModel, path None)."""

    name: str
    kind: str  # "keras" or "sklearn"
    model: Any
    pipeline: FeaturePipeline
    params: AudioParams
    feature_set: FeatureSetSpec
    path: Path | None = None
    version: str = "unsaved"
    manifest: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    runtime: str = "zoo"

    def _score_inputs(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(n, k) pipeline values -> ((n, 11) probabilities, (n, 11) bool decisions at the stored thresholds)."""
        probabilities = backends.predict_proba(self.kind, self.model, rows)
        return probabilities, self.pipeline.decide(probabilities)

    def predict_proba_pca(self, Z: np.ndarray) -> np.ndarray:
        """(n, k) pipeline values -> (n, 11) probabilities."""
        return backends.predict_proba(self.kind, self.model, Z)


def read_metrics(model_dir: Path) -> dict[str, Any]:
    """A verified folder's metrics.json."""
    return _read_json(model_dir / METRICS_FILE)


def load_model(path: str | Path) -> ZooModel:
    """Verify a model folder and load it; any missing, altered or inconsistent file raises InstrumentIdError."""
    model_dir = Path(path)
    manifest = verify_model_dir(model_dir)
    pipeline, params, feature_set = read_pipeline_json(model_dir / PIPELINE_FILE)
    if params.to_dict() != manifest["params"]:
        raise InstrumentIdError(f"{model_dir / PIPELINE_FILE}: audio settings differ from the manifest's")
    if feature_set != manifest_feature_set(manifest):
        raise InstrumentIdError(f"{model_dir / PIPELINE_FILE}: feature set {feature_set.label} differs from the "
                                f"manifest's {manifest_feature_set(manifest).label}")
    metrics = read_metrics(model_dir)
    model = backends.load_weights(manifest["kind"], model_dir / manifest["weights_file"])
    width = backends.model_input_width(manifest["kind"], model)
    if width != pipeline.n_components:
        raise InstrumentIdError(
            f"{model_dir / manifest['weights_file']}: model reads {width} values, pipeline gives {pipeline.n_components}"
        )
    return ZooModel(
        path=model_dir, kind=manifest["kind"], name=manifest["name"], version=manifest["version"], params=params,
        feature_set=feature_set, pipeline=pipeline, manifest=manifest, metrics=metrics, model=model,
    )


MODEL_ZOO_DIR = Path(__file__).resolve().parent


def inside_model_zoo(path: str | Path) -> bool:
    """Whether path is model_zoo/ or inside it (which holds only shipped, verified artefacts)."""
    resolved = Path(path).resolve()
    return resolved == MODEL_ZOO_DIR or MODEL_ZOO_DIR in resolved.parents


def refuse_model_zoo_path(path: str | Path) -> None:
    """Refuse a report or scratch folder inside model_zoo/: reports go to runs/, shipping goes through main.sh --ship."""
    if inside_model_zoo(path):
        raise InstrumentIdError(f"{path}: inside model_zoo/, which holds only shipped artefacts; write reports elsewhere")
