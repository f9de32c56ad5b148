"""The one place a model is opened: a model folder (verified against its manifest) or a lone .tflite file.

`open_model` answers a `model_zoo.model.Model` whatever runs it: the folder's Keras / scikit-learn weights through
the zoo's loader, or one of its listed .tflite files on the edge runtime (no TensorFlow, no scikit-learn). The
shipped models and the file each command opens by default are named here once.
"""

from __future__ import annotations

import threading
from pathlib import Path

from instrument_id.errors import InstrumentIdError
from model_zoo.model import Model

SHIPPED_MODELS_DIR = Path(__file__).resolve().parent / "models"
SHIPPED_MODELS = ("mlp", "rf", "musicnn")  # the seed MLP, the RandomForest baseline, the real-audio embedding model
DEFAULT_MODEL = "mlp"  # what analyze, listen and predict open without --model
FLOAT_TFLITE_FILE = "model_float32.tflite"
RAW_AUDIO_TFLITE_FILE = "model_raw_audio.tflite"
RUNTIMES = ("auto", "tflite", "zoo")

_ZOO_CACHE: dict[tuple[str, str], Model] = {}  # (folder, manifest checksum) -> loaded model: skops loads take seconds
_ZOO_CACHE_LOCK = threading.Lock()


def shipped_model_dir(name: str = DEFAULT_MODEL) -> Path:
    """The folder of a shipped model (model_zoo/models/NAME)."""
    if name not in SHIPPED_MODELS:
        raise InstrumentIdError(f"unknown shipped model {name!r}; choose one of {', '.join(SHIPPED_MODELS)}")
    return SHIPPED_MODELS_DIR / name


def default_raw_audio_model() -> Path:
    """The one-file edge model `predict` opens without --model."""
    return shipped_model_dir() / RAW_AUDIO_TFLITE_FILE


def _auto_tflite_file(files: dict) -> str | None:
    """The .tflite file runtime 'auto' runs: the float32 feature model, else the raw-audio graph, else none."""
    return next((name for name in (FLOAT_TFLITE_FILE, RAW_AUDIO_TFLITE_FILE) if name in files), None)


def _open_zoo(path: Path, manifest: dict) -> Model:
    """The zoo's verified loader, cached per folder and manifest checksum (a changed folder loads afresh)."""
    from model_zoo.zoo import load_model

    key = (str(path.resolve()), manifest["content_sha256"])
    with _ZOO_CACHE_LOCK:
        if key not in _ZOO_CACHE:
            model = load_model(path)
            if hasattr(model.model, "n_jobs"):  # a parallelism hint, not a weight: window batches gain nothing
                model.model.n_jobs = 1
            _ZOO_CACHE[key] = model
        return _ZOO_CACHE[key]


def _open_folder_tflite(path: Path, manifest: dict, tflite_file: str, num_threads: int | None) -> Model:
    """A listed .tflite file of a verified folder, checked against the folder's settings and named after it."""
    from instrument_id.params import AudioParams
    from model_zoo.tflite_model import EdgeModel
    from model_zoo.zoo import PIPELINE_FILE, manifest_feature_set, read_metrics, read_pipeline_json

    tflite_path = path / tflite_file
    if tflite_file not in manifest["files"]:
        raise InstrumentIdError(f"{tflite_path}: not listed in {path / 'manifest.json'}; create it with "
                                f"`instrument-id convert --model {path} --quant ...` or use runtime \"zoo\"")
    edge = EdgeModel(tflite_path, num_threads=num_threads, name=manifest["name"], version=manifest["version"])
    if edge.params != AudioParams.from_dict(manifest["params"]) or edge.feature_set != manifest_feature_set(manifest):
        raise InstrumentIdError(f"{tflite_path}: converted with other audio settings or another feature set "
                                "than its folder's manifest")
    edge.manifest, edge.metrics = manifest, read_metrics(path)
    if edge.takes_audio:  # the graph decides inside with these thresholds; the folder's copy says which they are
        edge.pipeline = read_pipeline_json(path / PIPELINE_FILE)[0]
    return edge


def open_model(path: str | Path, runtime: str = "auto", tflite_file: str | None = None,
               num_threads: int | None = 1) -> Model:
    """Open a model folder or a .tflite file. For a folder, runtime 'zoo' loads its weights, 'tflite' runs its
    tflite_file (default model_float32.tflite), 'auto' a listed .tflite file when there is one, else the weights.
    Every file is checked against the folder's manifest first; filter banks and networks are built before return."""
    from model_zoo.featurizers import warm_up
    from model_zoo.zoo import verify_model_dir

    path = Path(path)
    if runtime not in RUNTIMES:
        raise InstrumentIdError(f"unknown runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}")
    if path.suffix == ".tflite" and not path.is_dir():
        from model_zoo.tflite_model import EdgeModel

        if not path.is_file():
            raise InstrumentIdError(f"{path}: no such .tflite file")
        return EdgeModel(path, num_threads=num_threads)
    if not path.is_dir():
        shipped = " (a shipped model, not built yet: run `bash scripts/main.sh --ship`)" \
            if path.parent == SHIPPED_MODELS_DIR else ""
        raise InstrumentIdError(f"{path}: no model folder here{shipped}; pass --model DIR, a folder from "
                                "`instrument-id train`")
    manifest = verify_model_dir(path)
    if runtime == "tflite" or (runtime == "auto" and (tflite_file or _auto_tflite_file(manifest["files"]))):
        model = _open_folder_tflite(path, manifest, tflite_file or (
            FLOAT_TFLITE_FILE if runtime == "tflite" else _auto_tflite_file(manifest["files"])), num_threads)
    else:
        model = _open_zoo(path, manifest)
    if not model.takes_audio:  # a raw-audio graph computes its features inside
        warm_up(model.params, model.feature_set)  # banks built, kernels compiled, networks loaded (before a fork)
    return model
