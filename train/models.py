"""Train any of the models on one pipeline: standardize -> PCA on the train split, fit, thresholds from valid.

Every model reads the same PCA values and predicts the same 11 probabilities; decision thresholds are chosen per
instrument on the validation split only, never on test. TensorFlow is imported only when the MLP is trained.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
from sklearn.decomposition import PCA
from sklearn.dummy import DummyClassifier
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.multioutput import MultiOutputClassifier
from sklearn.naive_bayes import GaussianNB
from sklearn.neighbors import KNeighborsClassifier
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier

from instrument_id.errors import InstrumentIdError
from instrument_id.instruments import INSTRUMENTS, NUM_INSTRUMENTS
from instrument_id.pipeline import FeaturePipeline
from model_zoo import backends
from model_zoo.featureset import SPLITS, FeatureSet
from model_zoo.zoo import ZooModel

THRESHOLD_GRID = np.linspace(0.05, 0.95, 19)
FALLBACK_THRESHOLD = 0.5
NEAR_CONSTANT_STD = 1e-6  # a training column with a smaller standard deviation is taken as constant

# name -> seed -> unfitted estimator. The RF is capped at 256 leaves per tree so its skops file stays about 9 MB
# (measured: 100 trees x 511 nodes x 11 outputs, deflated) whatever the corpus size; unbounded trees on 10k noisy
# windows gave 45 MB. No class weights for the RF: the per-instrument thresholds already handle imbalance, and on
# the validation split of a 33-minute, 3-soundfont corpus macro-F1 was 0.517 without them, 0.479 with
# class_weight="balanced_subsample" (which made it call 4 instruments per window where 2.4 play).
SKLEARN_MODELS: dict[str, Callable[[int], Any]] = {
    "rf": lambda seed: RandomForestClassifier(
        n_estimators=100, min_samples_leaf=3, max_leaf_nodes=256,
        n_jobs=-1, random_state=seed,
    ),
    "dt": lambda seed: DecisionTreeClassifier(min_samples_leaf=3, class_weight="balanced", random_state=seed),
    "lr": lambda seed: MultiOutputClassifier(
        LogisticRegression(class_weight="balanced", max_iter=2000, random_state=seed)
    ),
    "knn": lambda seed: KNeighborsClassifier(n_neighbors=15),
    "gnb": lambda seed: MultiOutputClassifier(GaussianNB()),
    "dummy": lambda seed: DummyClassifier(strategy="prior", random_state=seed),
}
MODEL_NAMES: tuple[str, ...] = ("mlp", *SKLEARN_MODELS)


@dataclass(eq=False)
class TrainedModel(ZooModel):
    """A just-fitted model (thresholds chosen on valid) and a JSON-ready description of how it was made; it answers
    every call of model_zoo's Model interface before it is saved."""

    architecture: dict[str, Any] = field(default_factory=dict)
    runtime: str = "trained"


def check_model_name(name: str) -> None:
    """Refuse a model name that is not one of MODEL_NAMES, listing the valid ones."""
    if name not in MODEL_NAMES:
        raise InstrumentIdError(f"unknown model {name!r}; choose one of {', '.join(MODEL_NAMES)}")


def check_featureset(features: FeatureSet) -> None:
    """Refuse features of the wrong width, an empty split, non-finite values, or a label never positive in train."""
    for split in SPLITS:
        features.subset(split)
    if not np.isfinite(features.X).all():
        raise InstrumentIdError("features contain NaN or infinity")
    if not np.isin(features.Y, (0, 1)).all():
        raise InstrumentIdError("labels must be 0 or 1")
    _, Y_train = features.subset("train")
    positives = Y_train.sum(axis=0)  # (11,)
    never = [INSTRUMENTS[j].column for j in np.flatnonzero(positives == 0)]
    if never:
        raise InstrumentIdError(f"no training windows contain {', '.join(never)}; cannot learn to recognize it")
    always = [INSTRUMENTS[j].column for j in np.flatnonzero(positives == len(Y_train))]
    if always:
        raise InstrumentIdError(f"every training window contains {', '.join(always)}; nothing to learn against")


def fit_pipeline(X_train: np.ndarray, n_components: int, verbose: bool = False) -> FeaturePipeline:
    """Fit StandardScaler -> PCA(n_components) on training features (0: no PCA); thresholds start at 0.5."""
    width = X_train.shape[1]
    if not 0 <= n_components <= width:
        raise InstrumentIdError(f"pca_components must be 0 (no PCA) .. {width} (the feature width), got {n_components}")
    scaler = StandardScaler().fit(X_train)
    # a column that is constant up to float noise (musicnn channels that never fire on the training audio: std
    # ~1e-11) is left unscaled, as StandardScaler does for an exactly constant one; dividing by its noise turns any
    # activation on new audio into values of 1e10 (measured: 360 of 1506 max_pool+mean_pool columns)
    scaler.scale_ = np.where(scaler.scale_ < NEAR_CONSTANT_STD, 1.0, scaler.scale_)
    if n_components == 0:
        pca_mean, pca_components = np.zeros(0), np.zeros((0, width))
    else:
        pca = PCA(n_components=n_components, svd_solver="full").fit(scaler.transform(X_train))
        pca_mean, pca_components = pca.mean_, pca.components_
        if verbose:
            cumulative = np.cumsum(pca.explained_variance_ratio_)
            print(f"PCA {n_components} components, cumulative explained variance: "
                  f"{', '.join(f'{c:.3f}' for c in cumulative)}")
    return FeaturePipeline(
        scaler_mean=scaler.mean_, scaler_scale=scaler.scale_, pca_mean=pca_mean, pca_components=pca_components,
        thresholds=np.full(NUM_INSTRUMENTS, FALLBACK_THRESHOLD),
    )


def predict_proba(model: Any, Z: np.ndarray) -> np.ndarray:
    """(n, k) PCA values -> (n, 11) P(instrument present) for a Keras or multi-output scikit-learn model."""
    kind = "sklearn" if hasattr(model, "predict_proba") else "keras"
    return backends.predict_proba(kind, model, Z)


def choose_thresholds(Y_valid: np.ndarray, P_valid: np.ndarray, grid: np.ndarray = THRESHOLD_GRID) -> np.ndarray:
    """Per instrument, the grid threshold with the best validation F1; FALLBACK_THRESHOLD without positives."""
    scores = np.stack(
        [f1_score(Y_valid, P_valid >= t, average=None, zero_division=0) for t in grid]
    )  # (len(grid), 11)
    thresholds = grid[np.argmax(scores, axis=0)]  # first (lowest) threshold among ties
    no_positives = Y_valid.sum(axis=0) == 0
    thresholds[no_positives] = FALLBACK_THRESHOLD
    return thresholds


def _json_params(estimator: Any) -> dict[str, Any]:
    """An estimator's hyperparameters as JSON values; nested estimators become their class names."""
    out: dict[str, Any] = {}
    for key, value in sorted(estimator.get_params(deep=True).items()):
        if value is None or isinstance(value, (bool, int, float, str)):
            out[key] = value
        elif isinstance(value, (np.integer, np.floating)):
            out[key] = value.item()
        else:
            out[key] = type(value).__name__
    return out


def train_model(
    features: FeatureSet,
    name: str,
    *,
    seed: int = 0,
    epochs: int | None = None,
    batch_size: int | None = None,
    arch: Any = None,
    estimator_params: dict[str, Any] | None = None,
    verbose: bool = False,
) -> TrainedModel:
    """Fit the pipeline and the named model on train, choose thresholds on valid; test is not read.
    estimator_params override a scikit-learn model's defaults (set_params); the MLP takes arch instead."""
    check_model_name(name)
    if estimator_params and name == "mlp":
        raise InstrumentIdError("estimator_params apply to the scikit-learn models; pass arch= for the MLP")
    check_featureset(features)
    X_train, Y_train = features.subset("train")
    X_valid, Y_valid = features.subset("valid")
    pipeline = fit_pipeline(X_train, features.params.pca_components, verbose=verbose)
    Z_train, Z_valid = pipeline.transform(X_train), pipeline.transform(X_valid)  # (n, 26) -> (n, k)
    if name == "mlp":
        from train.mlp import MlpArch, MlpFit, fit_mlp

        fit = MlpFit()
        fit = MlpFit(epochs=epochs or fit.epochs, batch_size=batch_size or fit.batch_size, patience=fit.patience)
        model, architecture = fit_mlp(
            Z_train, Y_train, Z_valid, Y_valid, arch=arch or MlpArch(), fit=fit, seed=seed, verbose=verbose
        )
        kind = "keras"
    else:
        model = SKLEARN_MODELS[name](seed).set_params(**(estimator_params or {})).fit(Z_train, Y_train)
        architecture = {"estimator": type(model).__name__, "params": _json_params(model), "seed": seed}
        kind = "sklearn"
    thresholds = choose_thresholds(Y_valid, backends.predict_proba(kind, model, Z_valid))
    return TrainedModel(name=name, kind=kind, model=model, pipeline=pipeline.with_thresholds(thresholds),
                        params=features.params, feature_set=features.feature_set, architecture=architecture)
