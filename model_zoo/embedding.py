"""The shipped musicnn embedding (model_zoo/embeddings/musicnn): manifest writer, verified loader, embed().

Every file is checked against manifest.json (size and sha256; no file missing, none extra) and the manifest against
its own checksum before anything is loaded. LiteRT runs the .tflite (no TensorFlow needed); Keras runs the .keras
(any frame count). Log-mel comes from instrument_id.logmel with the LogMelParams the manifest stores.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path
from typing import Any

import numpy as np

from instrument_id.errors import InstrumentIdError
from instrument_id.logmel import LogMelParams
from instrument_id.native_logs import native_logs_filtered
from model_zoo.zoo import file_digest

DEFAULT_EMBEDDING_DIR = Path(__file__).resolve().parent / "embeddings" / "musicnn"
MANIFEST_FILE = "manifest.json"
FORMAT = "instrument-id musicnn embedding 1"
MANIFEST_KEYS = ("format", "logmel_params", "outputs", "files_by_runtime", "tflite_input_frames", "tflite_window_seconds",
                 "taggram_labels", "source", "measured_max_error", "files", "content_sha256")
RUNTIMES = ("auto", "keras", "tflite")
REDO = "re-create it with `instrument-id convert-musicnn --wheel .cache/musicnn/musicnn-0.1.0-py3-none-any.whl`"


def content_sha256(manifest: dict[str, Any]) -> str:
    """Checksum of every manifest field but itself, so an edited manifest is caught."""
    body = {key: value for key, value in manifest.items() if key != "content_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode("utf-8")).hexdigest()


def write_manifest(folder: Path, fields: dict[str, Any]) -> dict[str, Any]:
    """Write folder/manifest.json: fields, then every file's size and sha256, then the manifest's own checksum."""
    files = {path.name: file_digest(path) for path in sorted(folder.iterdir()) if path.name != MANIFEST_FILE}
    manifest = {**fields, "files": files}
    manifest["content_sha256"] = content_sha256(manifest)
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


def _fail(path: Path, reason: str) -> InstrumentIdError:
    return InstrumentIdError(f"{path}: {reason}; {REDO}")


def verify_embedding_dir(folder: Path) -> dict[str, Any]:
    """The folder's manifest once it and every file check out; InstrumentIdError naming the first bad file."""
    folder = Path(folder)
    path = folder / MANIFEST_FILE
    if not path.is_file():
        raise _fail(path, "missing (no embedding folder here)")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _fail(path, f"not readable JSON ({exc})") from None
    if not isinstance(manifest, dict) or sorted(manifest) != sorted(MANIFEST_KEYS):
        raise _fail(path, f"expected keys {sorted(MANIFEST_KEYS)}")
    if manifest["format"] != FORMAT:
        raise _fail(path, f"format {manifest['format']!r} is not {FORMAT!r}")
    if manifest["content_sha256"] != content_sha256(manifest):
        raise _fail(path, "altered (its content checksum does not match)")
    listed = manifest["files"]
    present = {p.name for p in folder.iterdir()} - {MANIFEST_FILE}
    for name in sorted(present - set(listed)):
        raise _fail(folder / name, "extra file not in manifest.json (remove it)")
    for name, expected in sorted(listed.items()):
        file = folder / name
        if not file.is_file():
            raise _fail(file, "missing")
        actual = file_digest(file)
        if actual["size_bytes"] != expected["size_bytes"]:
            raise _fail(file, f"{actual['size_bytes']} bytes, manifest.json says {expected['size_bytes']} (truncated or replaced)")
        if actual["sha256"] != expected["sha256"]:
            raise _fail(file, "altered (sha256 differs from manifest.json)")
    return manifest


class Embedding:
    """A verified musicnn embedding: embed((n, frames, 96) log-mel) -> {output name: (n, width) float32}."""

    def __init__(self, folder: Path, manifest: dict[str, Any], runtime: str, num_threads: int) -> None:
        self.folder = folder
        self.path = folder
        self.manifest = manifest
        self.version: str = manifest["content_sha256"]  # names this exact conversion (every file's sha256 is in it)
        self.runtime = runtime
        self.logmel_params = LogMelParams.from_dict(manifest["logmel_params"])
        self.widths: dict[str, int] = dict(manifest["outputs"])
        self.output_names: tuple[str, ...] = tuple(self.widths)
        self.frames: int | None = manifest["tflite_input_frames"] if runtime == "tflite" else None  # None: any
        model_path = folder / manifest["files_by_runtime"][runtime]
        if runtime == "tflite":
            from ai_edge_litert.interpreter import Interpreter

            with native_logs_filtered():  # LiteRT announces its XNNPACK delegate on fd 2
                self._runner = Interpreter(model_path=str(model_path), num_threads=num_threads).get_signature_runner()
        else:
            import keras

            self._model = keras.saving.load_model(model_path, safe_mode=True, compile=False)

    def embed(self, logmel: np.ndarray) -> dict[str, np.ndarray]:
        """(n, frames, n_mels) log-mel (instrument_id.logmel.log_mel with self.logmel_params) -> {name: (n, width)}."""
        logmel = np.ascontiguousarray(logmel, dtype=np.float32)
        n_mels = self.logmel_params.n_mels
        if logmel.ndim != 3 or logmel.shape[2] != n_mels or logmel.shape[0] < 1:
            raise InstrumentIdError(f"embed needs log-mel shaped (n >= 1, frames, {n_mels}), got {logmel.shape}")
        if self.frames is not None and logmel.shape[1] != self.frames:
            raise InstrumentIdError(
                f"the TFLite embedding takes exactly {self.frames} frames ({self.manifest['tflite_window_seconds']} s "
                f"windows), got {logmel.shape[1]}; use runtime='keras' for other lengths"
            )
        if self.frames is None and logmel.shape[1] < 1:
            raise InstrumentIdError("embed needs at least one frame")
        raw = self._runner(logmel=logmel) if self.runtime == "tflite" else self._model(logmel, training=False)
        return {name: np.asarray(raw[name], dtype=np.float32) for name in self.output_names}  # (n, width) each


def frozen_function(model: Any, frames: int | None) -> tuple[Any, Any]:
    """(named tf.function, frozen concrete function) of a Keras model on (batch, frames, 96) log-mel, weights as constants.

    A Keras 3 model called inside a tf.function converts to resource-variable ops that the TFLite interpreter leaves
    uninitialized; freezing turns them into constants. The frozen function returns its outputs as a list in
    tf.nest's order (sorted keys), which the wrapper names again, so a .tflite signature keeps the names.
    """
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    spec = tf.TensorSpec([None, frames, 96], tf.float32, name="logmel")
    names = sorted(model.output_names)  # tf.nest flattens a dict by sorted key
    frozen = convert_variables_to_constants_v2(
        tf.function(lambda logmel: dict(model(logmel, training=False)), input_signature=[spec]).get_concrete_function()
    )
    return tf.function(lambda logmel: dict(zip(names, frozen(logmel))), input_signature=[spec]), frozen


def load_keras_network(path: str | Path = DEFAULT_EMBEDDING_DIR) -> tuple[Any, dict[str, Any]]:
    """(Keras model, manifest) of a verified embedding folder: what converters build graphs from."""
    embedding = load_embedding(path, runtime="keras")
    return embedding._model, embedding.manifest


def load_embedding(path: str | Path = DEFAULT_EMBEDDING_DIR, runtime: str = "auto", num_threads: int = 1) -> Embedding:
    """Verify the folder against its manifest and load it; runtime 'auto' is 'tflite' where LiteRT is installed."""
    if runtime not in RUNTIMES:
        raise InstrumentIdError(f"unknown runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}")
    if num_threads < 1:
        raise InstrumentIdError(f"num_threads must be at least 1, got {num_threads}")
    folder = Path(path)
    if not folder.is_dir():
        raise InstrumentIdError(f"{folder}: no embedding folder here; {REDO}")
    manifest = verify_embedding_dir(folder)
    if runtime == "auto":
        runtime = "tflite" if importlib.util.find_spec("ai_edge_litert") is not None else "keras"
    return Embedding(folder, manifest, runtime, num_threads)
