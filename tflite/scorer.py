"""A model folder as a timeline scorer: its float32 .tflite on the edge runtime when it has one, else the zoo's loader.

Both are checked file by file against the folder's manifest first. The edge path needs neither TensorFlow nor
scikit-learn, so `analyze` and `listen` run in the edge install on a converted MLP folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from instrument_id.errors import InstrumentIdError
from instrument_id.instruments import NUM_INSTRUMENTS
from instrument_id.feature_sets import FeatureSetSpec
from instrument_id.params import AudioParams
from instrument_id.pipeline import FeaturePipeline

TFLITE_FILE = "model_float32.tflite"
RUNTIMES = ("auto", "tflite", "zoo")
DEFAULT_MODEL_DIR = Path(__file__).resolve().parents[1] / "model_zoo" / "models" / "mlp"


@dataclass
class LoadedScorer:
    """A verified model folder ready to score (n, 26) features, with what identifies it in a report."""

    path: Path
    runtime: str  # "tflite" or "zoo"
    name: str
    version: str
    kind: str
    params: AudioParams
    feature_set: FeatureSetSpec
    pipeline: FeaturePipeline
    backend: Any  # tflite.runtime.EdgeModel or model_zoo.ZooModel

    def predict_proba_features(self, X: np.ndarray) -> np.ndarray:
        """(n, 26) features -> (n, 11) probabilities."""
        if len(X) == 0:
            return np.zeros((0, NUM_INSTRUMENTS), np.float32)
        if self.runtime == "tflite":
            return self.backend.predict_rows(self.pipeline.transform(X))[0]  # (n, 26) -> (n, k) -> (n, 11)
        return self.backend.predict_proba_features(X)

    def describe(self) -> dict[str, Any]:
        """JSON-ready identity of the model."""
        return {"path": str(self.path), "name": self.name, "version": self.version, "kind": self.kind,
                "runtime": self.runtime, "tflite_file": TFLITE_FILE if self.runtime == "tflite" else None}


def load_scorer(model_dir: str | Path, runtime: str = "auto") -> LoadedScorer:
    """Verify a model folder and load it: runtime 'tflite' (its model_float32.tflite), 'zoo', or 'auto' (tflite
    when the manifest lists that file)."""
    from model_zoo import verify_model_dir

    path = Path(model_dir)
    if runtime not in RUNTIMES:
        raise InstrumentIdError(f"unknown runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}")
    if not path.exists():
        hint = " (the default model, not installed yet)" if path == DEFAULT_MODEL_DIR else ""
        raise InstrumentIdError(f"{path}: no model folder here{hint}; pass --model DIR, a folder from `instrument-id train`")
    manifest = verify_model_dir(path)
    has_tflite = TFLITE_FILE in manifest["files"]
    if runtime == "tflite" and not has_tflite:
        raise InstrumentIdError(f"{path / TFLITE_FILE}: not in the folder's manifest; create it with "
                                f"`instrument-id convert --model {path} --quant float32`")
    if runtime == "tflite" or (runtime == "auto" and has_tflite):
        from tflite.runtime import EdgeModel, read_pipeline_json

        pipeline, params, feature_set = read_pipeline_json(path / "pipeline.json", path / TFLITE_FILE)
        if params != AudioParams.from_dict(manifest["params"]):
            raise InstrumentIdError(f"{path / 'pipeline.json'}: audio settings differ from the manifest's")
        edge = EdgeModel(path / TFLITE_FILE, num_threads=1)  # one window batch at a time: threads only add overhead
        if edge.kind != "features" or edge.params != params:
            raise InstrumentIdError(f"{path / TFLITE_FILE}: not the feature-level model of this folder")
        return LoadedScorer(path=path, runtime="tflite", name=manifest["name"], version=manifest["version"],
                            kind=manifest["kind"], params=params, feature_set=feature_set, pipeline=pipeline,
                            backend=edge)
    from model_zoo import load_model

    zoo = load_model(path)
    if hasattr(zoo.model, "n_jobs"):  # a parallelism hint, not a weight: batches of 256 windows gain nothing from it
        zoo.model.n_jobs = 1
    from model_zoo.featurizers import warm_up

    warm_up(zoo.params, zoo.feature_set)  # build the filter banks now, not inside the first block's timing
    return LoadedScorer(path=path, runtime="zoo", name=zoo.name, version=zoo.version, kind=zoo.kind,
                        params=zoo.params, feature_set=zoo.feature_set, pipeline=zoo.pipeline, backend=zoo)
