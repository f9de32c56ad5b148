"""Model back ends behind one call, (n, k) PCA values -> (n, 11) probabilities, and their safe file formats.

Keras models are stored as `model.keras` (loaded with safe_mode, no custom objects), scikit-learn models as
`model.skops` (loaded with an explicit trusted-type list, never pickle). TensorFlow and skops are imported inside
the functions that need them so `import model_zoo` stays light.
"""

from __future__ import annotations

import os
import weakref
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from instrument_id import native_logs
from instrument_id.errors import InstrumentIdError
from instrument_id.instruments import NUM_INSTRUMENTS
from model_zoo.fast_forest import FastForest

KERAS_FILE = "model.keras"
SKLEARN_FILE = "model.skops"
WEIGHTS_FILES = {"keras": KERAS_FILE, "sklearn": SKLEARN_FILE}
# types skops does not trust by default but that the models in train/models.py need; anything else is refused
KNOWN_SKOPS_TYPES = frozenset({"sklearn.tree._tree.Tree"})


def quiet_tensorflow() -> None:
    """Silence TensorFlow's C++ logging unless the user asked for it (--verbose, or TF_CPP_MIN_LOG_LEVEL)."""
    os.environ.setdefault(native_logs.TF_LOG_LEVEL_VARIABLE, native_logs.tf_log_level())


FAST_FOREST_MAX_ROWS = 128  # measured: the numpy walk wins below ~200 rows (0.2 ms vs ~10 ms for one), sklearn above
_FAST_FORESTS: "weakref.WeakKeyDictionary[Any, FastForest]" = weakref.WeakKeyDictionary()


def sklearn_positive_proba(model: Any, Z: np.ndarray) -> np.ndarray:
    """A multi-output scikit-learn classifier's list of (n, n_classes) outputs -> (n, 11) P(label = 1)."""
    if len(Z) <= FAST_FOREST_MAX_ROWS and FastForest.supports(model) and model.n_outputs_ == NUM_INSTRUMENTS:
        if model not in _FAST_FORESTS:
            _FAST_FORESTS[model] = FastForest(model)
        return _FAST_FORESTS[model].predict_positive(Z)
    raw = model.predict_proba(Z)
    classes = model.classes_
    if isinstance(raw, np.ndarray):  # a single-output model: one (n, n_classes) array
        raw, classes = [raw], [classes]
    if len(raw) != NUM_INSTRUMENTS:
        raise InstrumentIdError(f"model has {len(raw)} outputs, expected {NUM_INSTRUMENTS}")
    columns = []
    for proba, output_classes in zip(raw, classes):  # proba (n, n_classes_j)
        labels = np.asarray(output_classes).tolist()
        # a label seen with one class only in training has no column for class 1
        columns.append(proba[:, labels.index(1)] if 1 in labels else np.zeros(len(Z)))
    return np.stack(columns, axis=1).astype(np.float32)  # (n, 11)


def keras_proba(model: Any, Z: np.ndarray) -> np.ndarray:
    """A Keras model's sigmoid outputs for (n, k) inputs -> (n, 11) float32, inference mode (no dropout)."""
    Z = np.asarray(Z, dtype=np.float32)
    if len(Z) == 0:
        return np.zeros((0, NUM_INSTRUMENTS), dtype=np.float32)
    return np.asarray(model(Z, training=False), dtype=np.float32)  # (n, 11)


def predict_proba(kind: str, model: Any, Z: np.ndarray) -> np.ndarray:
    """(n, k) PCA values -> (n, 11) probabilities for a model of either kind."""
    if kind == "keras":
        return keras_proba(model, Z)
    if kind == "sklearn":
        return sklearn_positive_proba(model, Z)
    raise InstrumentIdError(f"unknown model kind {kind!r}; expected one of {sorted(WEIGHTS_FILES)}")


def model_input_width(kind: str, model: Any) -> int:
    """How many PCA values the model reads."""
    if kind == "keras":
        return int(model.inputs[0].shape[-1])
    return int(model.n_features_in_)


def save_weights(kind: str, model: Any, path: Path) -> None:
    """Write the model in its safe format; a Keras model is saved as a bare inference copy (no loss, no optimizer)."""
    if kind == "keras":
        inference = type(model).from_config(model.get_config())  # the same layers, uncompiled
        inference.set_weights(model.get_weights())
        inference.save(path)
    elif kind == "sklearn":
        import skops.io

        skops.io.dump(model, path, compression=zipfile.ZIP_DEFLATED)
    else:
        raise InstrumentIdError(f"unknown model kind {kind!r}; expected one of {sorted(WEIGHTS_FILES)}")


def load_weights(kind: str, path: Path) -> Any:
    """Load a model file of the given kind safely; unreadable files raise InstrumentIdError naming them."""
    if kind == "keras":
        quiet_tensorflow()
        import keras

        try:
            return keras.saving.load_model(path, compile=False, safe_mode=True)
        except (ValueError, OSError, KeyError, TypeError, zipfile.BadZipFile) as exc:
            raise InstrumentIdError(f"{path}: cannot load the Keras model ({exc})") from None
    if kind == "sklearn":
        import skops.io

        try:
            untrusted = skops.io.get_untrusted_types(file=path)
            unknown = sorted(set(untrusted) - KNOWN_SKOPS_TYPES)
            if unknown:
                raise InstrumentIdError(f"{path}: refusing to load unexpected types {unknown}")
            model = skops.io.load(path, trusted=untrusted)
        except (ValueError, OSError, KeyError, TypeError, zipfile.BadZipFile) as exc:
            raise InstrumentIdError(f"{path}: cannot load the scikit-learn model ({exc})") from None
        if "n_jobs" in model.get_params():
            # inference is one clip or one batch at a time: fanning 100 trees out to worker threads cost ~30 ms
            # of dispatch per call, against ~2 ms for the trees themselves
            model.set_params(n_jobs=1)
        return model
    raise InstrumentIdError(f"unknown model kind {kind!r}; expected one of {sorted(WEIGHTS_FILES)}")
