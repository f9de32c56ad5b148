"""A .tflite model behind the one Model interface, run by a TFLite interpreter only (no TensorFlow, no librosa).

Two kinds of file, told apart by their outputs: a feature model reads k pipeline values (numpy features and the
FeaturePipeline from the pipeline.json beside it run first), a raw-audio model reads one window of samples and
computes everything inside, its AudioParams stored in the file's metadata.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from instrument_id.errors import InstrumentIdError
from instrument_id.instruments import NUM_INSTRUMENTS, column_names
from instrument_id.feature_sets import FeatureSetSpec, stored_feature_set
from instrument_id.native_logs import native_logs_filtered
from instrument_id.params import AudioParams
from instrument_id.pipeline import FeaturePipeline
from model_zoo.featurizers import warm_up
from model_zoo.model import Model
from model_zoo.tflite_file import instrument_id_metadata, read_tflite_bytes

PIPELINE_FILE = "pipeline.json"  # written by model_zoo beside the weights: {"pipeline": ..., "params": ...}
PROBABILITIES = "probabilities"
DECISIONS = "decisions"
# import-time failures of a runtime wheel: missing, or built against another numpy (tflite_runtime under numpy 2
# raises AttributeError or RuntimeError while importing)
_RUNTIME_IMPORT_ERRORS = (ImportError, AttributeError, RuntimeError, OSError)


def interpreter_class() -> tuple[Any, str]:
    """(Interpreter class, package name): ai_edge_litert, else tflite_runtime, else TensorFlow's tf.lite."""
    try:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter, "ai_edge_litert"
    except _RUNTIME_IMPORT_ERRORS:
        pass
    try:
        from tflite_runtime.interpreter import Interpreter

        return Interpreter, "tflite_runtime"
    except _RUNTIME_IMPORT_ERRORS:
        pass
    try:
        from model_zoo.backends import quiet_tensorflow

        quiet_tensorflow()
        import tensorflow as tf

        return tf.lite.Interpreter, "tensorflow"
    except _RUNTIME_IMPORT_ERRORS:
        raise InstrumentIdError(
            "no TFLite interpreter installed: pip install 'instrument-id[edge]' (ai-edge-litert)"
        ) from None


def _open(path: Path, num_threads: int | None) -> tuple[bytes, Any, str]:
    """(file bytes, allocated interpreter, runtime package) of a .tflite file."""
    data = read_tflite_bytes(path)
    interpreter_type, runtime = interpreter_class()
    try:
        with native_logs_filtered():  # LiteRT announces its XNNPACK delegate on fd 2
            interpreter = interpreter_type(model_content=data, num_threads=num_threads)
            interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        raise InstrumentIdError(f"{path} is not a TFLite model ({str(exc).strip().splitlines()[0]})") from None
    return data, interpreter, runtime


def load_interpreter(path: str | Path, num_threads: int | None = None) -> Any:
    """An allocated TFLite interpreter for a .tflite file, from the first runtime package that imports."""
    return _open(Path(path), num_threads)[1]


def read_pipeline_json(path: Path, for_model: Path) -> tuple[FeaturePipeline, AudioParams, FeatureSetSpec]:
    """The FeaturePipeline, AudioParams and feature set stored in a model folder's pipeline.json (the zoo's reader)."""
    from model_zoo.zoo import read_pipeline_json as read_stored

    if not path.is_file():
        raise InstrumentIdError(
            f"{for_model} is a feature-level model (pipeline values in); it needs the {PIPELINE_FILE} of its model "
            f"folder beside it, and {path} is missing"
        )
    return read_stored(path)


def _io_details(interpreter: Any, path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """({input name: details}, {output name: details}) from the model's one signature, else its plain tensors."""
    signatures = interpreter.get_signature_list()
    if len(signatures) == 1:
        runner = interpreter.get_signature_runner(next(iter(signatures)))
        inputs, outputs = runner.get_input_details(), runner.get_output_details()
    else:
        inputs = {d["name"]: d for d in interpreter.get_input_details()}
        outputs = {d["name"]: d for d in interpreter.get_output_details()}
    if len(outputs) == 1:  # a lone output is the probabilities, whatever its name
        return inputs, {PROBABILITIES: next(iter(outputs.values()))}
    return inputs, outputs


class EdgeModel(Model):
    """A validated .tflite model (feature-level or raw-audio) with the settings to feed it."""

    kind = "tflite"
    runtime = "tflite"

    def __init__(self, path: str | Path, num_threads: int | None = None, name: str | None = None,
                 version: str | None = None) -> None:
        self.path = Path(path)
        self.name = name or self.path.stem
        self.tflite_file = self.path.name
        self.manifest: dict[str, Any] = {}  # a folder's, when opened through model_zoo.loader.open_model
        self.metrics: dict[str, Any] = {}
        data, self.interpreter, self.interpreter_package = _open(self.path, num_threads)
        try:
            self.metadata = instrument_id_metadata(data)
        except InstrumentIdError as exc:
            raise InstrumentIdError(f"{self.path}: {exc}") from None
        inputs, self._outputs = _io_details(self.interpreter, self.path)
        if len(inputs) != 1:
            raise InstrumentIdError(f"{self.path}: {len(inputs)} inputs; expected one (PCA values or audio)")
        self._input = next(iter(inputs.values()))
        shape = list(self._input.get("shape_signature", self._input["shape"]))
        if len(shape) != 2 or shape[1] < 1:
            raise InstrumentIdError(f"{self.path}: input shape {shape}; expected (batch, values)")
        self.input_width = int(shape[1])
        self.batch_size = None if shape[0] == -1 else int(shape[0])  # None: any batch size
        self._check_outputs()
        # a raw-audio graph decides inside (its decisions output); a feature graph reads pipeline values
        self.takes_audio = DECISIONS in self._outputs
        self.pipeline: FeaturePipeline | None = None
        self._load_settings()
        self.version = version or self.path.stem

    def _check_outputs(self) -> None:
        if PROBABILITIES not in self._outputs:
            raise InstrumentIdError(f"{self.path}: outputs {sorted(self._outputs)}; expected {PROBABILITIES!r}")
        for name, details in self._outputs.items():
            width = int(details["shape"][-1]) if len(details["shape"]) else 0
            if name in (PROBABILITIES, DECISIONS) and (len(details["shape"]) != 2 or width != NUM_INSTRUMENTS):
                raise InstrumentIdError(
                    f"{self.path}: output {name!r} has shape {list(details['shape'])}; "
                    f"expected (batch, {NUM_INSTRUMENTS}), one value per instrument"
                )

    def _load_settings(self) -> None:
        """AudioParams (and the pipeline, for feature models), checked against the input width and the metadata."""
        stored = None
        if self.metadata is not None:
            if self.metadata.get("labels", column_names()) != column_names():
                raise InstrumentIdError(f"{self.path}: instrument order differs from {column_names()}")
            try:
                stored = AudioParams.from_dict(self.metadata["params"]) if "params" in self.metadata else None
            except (InstrumentIdError, TypeError) as exc:
                raise InstrumentIdError(f"{self.path}: stored audio settings are invalid ({exc})") from None
        if not self.takes_audio:
            self.pipeline, self.params, self.feature_set = read_pipeline_json(self.path.with_name(PIPELINE_FILE),
                                                                              self.path)
            if self.input_width != self.pipeline.n_components:
                raise InstrumentIdError(
                    f"{self.path}: reads {self.input_width} values, but {self.path.with_name(PIPELINE_FILE)} gives "
                    f"{self.pipeline.n_components} PCA values"
                )
            if stored is not None and stored != self.params:
                raise InstrumentIdError(f"{self.path}: converted with other audio settings than {PIPELINE_FILE}")
            warm_up(self.params, self.feature_set)  # banks and networks now, not inside the first clip's timing
            return
        if stored is None:
            raise InstrumentIdError(
                f"{self.path}: reads {self.input_width} audio samples but stores no audio settings; "
                "convert it with `instrument-id convert --quant raw`"
            )
        self.params = stored
        self.feature_set = stored_feature_set(self.metadata)
        if self.input_width != self.params.window_samples:
            raise InstrumentIdError(
                f"{self.path}: reads {self.input_width} samples, expected {self.params.window_samples} "
                f"({self.params.window_seconds} s at {self.params.sample_rate_hz} Hz)"
            )

    def _set_input(self, block: np.ndarray) -> None:
        """Write one (batch, width) float32 block, quantized when the model takes integers."""
        dtype = np.dtype(self._input["dtype"])
        if np.issubdtype(dtype, np.integer):
            scale, zero_point = self._input["quantization"]
            limits = np.iinfo(dtype)
            block = np.clip(np.round(block / scale + zero_point), limits.min, limits.max)
        self.interpreter.set_tensor(self._input["index"], block.astype(dtype))

    def _get_output(self, name: str) -> np.ndarray:
        details = self._outputs[name]
        values = self.interpreter.get_tensor(details["index"])
        if np.issubdtype(values.dtype, np.integer):
            scale, zero_point = details["quantization"]
            return (values.astype(np.float32) - zero_point) * np.float32(scale)
        return values.astype(np.float32)

    def _resize(self, n_rows: int) -> None:
        if int(self._input["shape"][0]) != n_rows:
            self.interpreter.resize_tensor_input(self._input["index"], [n_rows, self.input_width])
            self.interpreter.allocate_tensors()
            self._input = {**self._input, "shape": np.array([n_rows, self.input_width])}

    def _invoke(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        """(n, width) float32 rows -> {output name: (n, 11)}, in one batch when the batch size is open."""
        chunk = len(rows) if self.batch_size is None else self.batch_size
        results: dict[str, list[np.ndarray]] = {name: [] for name in self._outputs}
        for start in range(0, len(rows), chunk):
            block = rows[start : start + chunk]  # (<= chunk, width)
            n_block = len(block)
            if self.batch_size is None:
                self._resize(n_block)
            elif n_block < chunk:
                block = np.pad(block, ((0, chunk - n_block), (0, 0)))
            self._set_input(block)
            try:
                self.interpreter.invoke()
            except RuntimeError as exc:
                raise InstrumentIdError(f"{self.path}: the interpreter failed ({exc})") from None
            for name in self._outputs:
                results[name].append(self._get_output(name)[:n_block])
        return {name: np.concatenate(parts) for name, parts in results.items()}

    def predict_rows(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(n, input_width) PCA values or audio windows -> ((n, 11) probabilities, (n, 11) bool decisions)."""
        rows = np.ascontiguousarray(rows, dtype=np.float32)
        if rows.ndim != 2 or rows.shape[1] != self.input_width or len(rows) == 0:
            raise InstrumentIdError(f"{self.path}: expected (n >= 1, {self.input_width}) inputs, got shape {rows.shape}")
        if not np.isfinite(rows).all():
            raise InstrumentIdError(f"{self.path}: inputs contain NaN or infinity")
        outputs = self._invoke(rows)
        probabilities = outputs[PROBABILITIES]  # (n, 11)
        if DECISIONS in outputs:
            return probabilities, outputs[DECISIONS] > 0.5
        return probabilities, self.pipeline.decide(probabilities)

    @property
    def input_kind(self) -> str:
        """'raw_audio' (reads audio windows, decides inside) or 'features' (reads pipeline values)."""
        return "raw_audio" if self.takes_audio else "features"

    def _score_inputs(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(n, k) pipeline values or (n, window_samples) audio -> ((n, 11) probabilities, (n, 11) bool decisions)."""
        return self.predict_rows(rows)
