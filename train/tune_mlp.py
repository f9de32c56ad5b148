"""keras-tuner search over the MLP's depth, widths, dropout and learning rate, scored on the validation split.

BayesianOptimization rather than Hyperband: the budget is a number of trials (--max-trials maps onto it exactly),
while Hyperband's trial count follows from max_epochs and its reduction factor, and it ranks candidates after a few
epochs, which on a validation split of about a hundred windows is mostly noise. Each trial here costs seconds, so a
Gaussian process that learns from every finished trial makes more of a small budget than early culling would.

Each trial trains exactly as train_model does (same seed, loss, batch size, early stopping on validation AUC-PR that
restores the best epoch), and its score is the validation AUC-PR of those restored weights, so the retrained winner
is the model that was scored.
"""

from __future__ import annotations

import tempfile
import time
from typing import Any

import numpy as np
from tqdm import tqdm

from model_zoo.backends import quiet_tensorflow

quiet_tensorflow()
import keras  # noqa: E402  (after quieting TensorFlow's start-up log)
import keras_tuner as kt  # noqa: E402
import tensorflow as tf  # noqa: E402

from train.mlp import (  # noqa: E402
    MlpArch, MlpFit, WeightedBinaryCrossentropy, auc_pr_metric, build_mlp, early_stopping, positive_weights, seed_everything,
)

OBJECTIVE_NAME = "val_auc_pr"
OBJECTIVE_DIRECTION = "max"
MAX_HIDDEN_LAYERS = 4
UNITS_RANGE = (32, 512, 32)  # min, max, step
DROPOUT_RANGE = (0.0, 0.5, 0.05)
LEARNING_RATE_RANGE = (1e-4, 1e-2)  # sampled on a log scale
SEARCH_SPACE = {
    "n_layers": [1, MAX_HIDDEN_LAYERS],
    "units_per_layer": list(UNITS_RANGE),
    "dropout": list(DROPOUT_RANGE),
    "learning_rate_log": list(LEARNING_RATE_RANGE),
}


def arch_from_values(values: dict[str, Any]) -> MlpArch:
    """keras-tuner hyperparameter values -> MlpArch; widths of layers beyond n_layers (left from other trials) are ignored."""
    n_layers = int(values["n_layers"])
    return MlpArch(hidden_units=tuple(int(values[f"units_{i}"]) for i in range(n_layers)),
                   dropout=float(values["dropout"]), learning_rate=float(values["learning_rate"]))


def _declare(hp: kt.HyperParameters) -> MlpArch:
    """Declare the search space on hp and return the architecture of its current values."""
    n_layers = hp.Int("n_layers", 1, MAX_HIDDEN_LAYERS)
    for i in range(n_layers):
        hp.Int(f"units_{i}", *UNITS_RANGE[:2], step=UNITS_RANGE[2])
    hp.Float("dropout", *DROPOUT_RANGE[:2], step=DROPOUT_RANGE[2])
    hp.Float("learning_rate", *LEARNING_RATE_RANGE, sampling="log")
    return arch_from_values(hp.values)


def search_mlp(
    Z_train: np.ndarray,
    Y_train: np.ndarray,
    Z_valid: np.ndarray,
    Y_valid: np.ndarray,
    *,
    max_trials: int,
    max_epochs: int,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Run the search on (n, k) PCA values; one record per trial: params, objective (valid AUC-PR), epochs, seconds."""
    fit = MlpFit(epochs=max_epochs)
    weights = positive_weights(Y_train).tolist()
    Z_train, Z_valid = Z_train.astype(np.float32), Z_valid.astype(np.float32)
    Y_train, Y_valid = Y_train.astype(np.float32), Y_valid.astype(np.float32)

    def build(hp: kt.HyperParameters) -> keras.Model:
        arch = _declare(hp)
        model = build_mlp(Z_train.shape[1], arch)
        model.compile(optimizer=keras.optimizers.Adam(learning_rate=arch.learning_rate),
                      loss=WeightedBinaryCrossentropy(weights), metrics=[auc_pr_metric(Y_valid)])
        return model

    records: dict[str, dict[str, Any]] = {}
    progress = tqdm(total=max_trials, desc="mlp search", unit="trial", disable=None)

    class Tuner(kt.BayesianOptimization):
        def run_trial(self, trial: kt.engine.trial.Trial, *args: Any, **kwargs: Any) -> dict[str, float]:
            start = time.perf_counter()
            seed_everything(seed)  # every candidate starts from the same seeded state as train_model's fit
            model = self.hypermodel.build(trial.hyperparameters)
            stop = early_stopping(fit.patience)
            history = model.fit(Z_train, Y_train, validation_data=(Z_valid, Y_valid), epochs=fit.epochs,
                                batch_size=fit.batch_size, callbacks=[stop], verbose=0).history
            best = int(np.argmax(history[OBJECTIVE_NAME]))  # the epoch EarlyStopping restores
            records[trial.trial_id] = {"best_epoch": best + 1, "epochs_trained": len(history["val_loss"]),
                                       "fit_seconds": time.perf_counter() - start}
            progress.update(1)
            return {OBJECTIVE_NAME: float(history[OBJECTIVE_NAME][best]), "val_loss": float(history["val_loss"][best])}

    # keras-tuner takes seed 0 for "no seed" (`seed or random.randint(...)`), so it gets seed + 1
    with tempfile.TemporaryDirectory(prefix="instrument-id-tuner-") as work_dir:
        tuner = Tuner(
            hypermodel=build, objective=kt.Objective(OBJECTIVE_NAME, direction=OBJECTIVE_DIRECTION),
            max_trials=max_trials, seed=seed % (2**31 - 1) + 1, directory=work_dir, project_name="mlp", overwrite=True,
        )
        # every trial compiles a new model, so TensorFlow's "excessive retracing" warning is expected here
        tf_logger, level = tf.get_logger(), tf.get_logger().level
        tf_logger.setLevel("ERROR")
        try:
            tuner.search(verbose=0)
        finally:
            tf_logger.setLevel(level)
            progress.close()
        trials = [tuner.oracle.trials[trial_id] for trial_id in sorted(tuner.oracle.trials)]
    out = []
    for index, trial in enumerate(trials):
        arch = arch_from_values(trial.hyperparameters.values)
        out.append({
            "trial": index, "params": arch.to_dict(), "objective": None if trial.score is None else float(trial.score),
            "status": str(trial.status), **records.get(trial.trial_id, {}),
        })
    return out
