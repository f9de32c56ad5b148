"""`instrument-id tune mlp|rf`: search hyperparameters on the fixed validation split, retrain the winner into the zoo.

Both searches fit on train and score on valid only (the MLP with keras-tuner, see train/tune_mlp.py; the RF with a
seeded ParameterSampler loop), so the two winners are chosen by the same split and the same objective family, macro
AUC-PR over the instruments present in valid. Test is read once, after selection, to report the retrained winners.
The RF search keeps the default model's max_leaf_nodes=256 cap so the winner stays shippable: a tree of at most 511
nodes takes roughly 45-90 KB in the skops file whatever the corpus size, so the size grows only with n_estimators
(700 trees measured 32 MB on the synthetic corpus); tuning.json records the winner's weights_bytes.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import average_precision_score
from sklearn.model_selection import ParameterSampler
from tqdm import tqdm

from instrument_id.errors import InstrumentIdError
from model_zoo import backends
from model_zoo.featureset import FeatureSet

TUNABLE = ("mlp", "rf")
DEFAULT_BUDGET = {"mlp": 10, "rf": 10}
DEFAULT_MAX_EPOCHS = 30
# the reference grid; min_samples_leaf=3, max_leaf_nodes=256 and class_weight stay as in train/models.py.
# With 16 PCA inputs, sqrt and log2 both mean 4 features per split, so max_features only matters for other widths.
RF_GRID: dict[str, list[Any]] = {
    "n_estimators": [100, 150, 200, 700],
    "max_features": ["sqrt", "log2"],
    "max_depth": [None, *range(10, 50)],
    "criterion": ["gini", "entropy"],
    "min_samples_split": [12, 16, 20],
}
RF_FIXED = ("max_leaf_nodes", "min_samples_leaf", "class_weight")


def macro_average_precision(Y: np.ndarray, P: np.ndarray) -> float:
    """Macro average precision (area under the PR curve) over the instruments present in Y; (n, 11) each."""
    present = np.flatnonzero(np.asarray(Y).sum(axis=0) > 0)
    if len(present) == 0:
        raise InstrumentIdError("no instrument is present in the validation split; nothing to score against")
    return float(average_precision_score(Y[:, present], P[:, present], average="macro"))


def pca_splits(features: FeatureSet) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(Z_train, Y_train, Z_valid, Y_valid): the pipeline fitted on train as train_model fits it, (n, 26) -> (n, k)."""
    from train.models import fit_pipeline

    X_train, Y_train = features.subset("train")
    X_valid, Y_valid = features.subset("valid")
    pipeline = fit_pipeline(X_train, features.params.pca_components)
    return pipeline.transform(X_train), Y_train, pipeline.transform(X_valid), Y_valid


def search_rf(Z_train: np.ndarray, Y_train: np.ndarray, Z_valid: np.ndarray, Y_valid: np.ndarray, *,
              n_iter: int, seed: int = 0) -> list[dict[str, Any]]:
    """Fit n_iter seeded samples of RF_GRID on train, score each by macro AP on valid; one record per trial."""
    from train.models import SKLEARN_MODELS

    grid_size = int(np.prod([len(values) for values in RF_GRID.values()]))
    candidates = list(ParameterSampler(RF_GRID, n_iter=min(n_iter, grid_size), random_state=seed))
    trials = []
    for index, params in enumerate(tqdm(candidates, desc="rf search", unit="trial", disable=None)):
        start = time.perf_counter()
        model = SKLEARN_MODELS["rf"](seed).set_params(**params).fit(Z_train, Y_train)
        fit_seconds = time.perf_counter() - start
        score = macro_average_precision(Y_valid, backends.sklearn_positive_proba(model, Z_valid))
        trials.append({"trial": index, "params": dict(sorted(params.items())), "objective": score,
                       "fit_seconds": fit_seconds})
    return trials


def best_trial(trials: list[dict[str, Any]]) -> dict[str, Any]:
    """The trial with the highest objective; the earliest among ties."""
    scored = [t for t in trials if t["objective"] is not None]
    if not scored:
        raise InstrumentIdError("no trial finished with a score")
    return max(scored, key=lambda t: (t["objective"], -t["trial"]))


def _search(features: FeatureSet, model: str, budget: int, max_epochs: int, seed: int) -> dict[str, Any]:
    """Run one side's search; its section of tuning.json without the winner."""
    Z_train, Y_train, Z_valid, Y_valid = pca_splits(features)
    start = time.perf_counter()
    if model == "mlp":
        from train.tune_mlp import OBJECTIVE_DIRECTION, OBJECTIVE_NAME, SEARCH_SPACE, search_mlp

        trials = search_mlp(Z_train, Y_train, Z_valid, Y_valid, max_trials=budget, max_epochs=max_epochs, seed=seed)
        method = "keras-tuner BayesianOptimization"
        objective = {"name": OBJECTIVE_NAME, "direction": OBJECTIVE_DIRECTION, "split": "valid",
                     "definition": "Keras AUC(curve='PR', multi_label=True), macro over instruments present in valid, "
                                   "at the epoch early stopping restores"}
        space: dict[str, Any] = {**SEARCH_SPACE, "max_epochs": max_epochs}
    else:
        trials = search_rf(Z_train, Y_train, Z_valid, Y_valid, n_iter=budget, seed=seed)
        method = "seeded ParameterSampler over the reference grid, fit on train, scored on valid (no CV)"
        objective = {"name": "valid_macro_ap", "direction": "max", "split": "valid",
                     "definition": "sklearn average_precision_score(average='macro') over instruments present in valid"}
        space = {**RF_GRID, "max_depth": "None or 10..49"}
    return {"model": model, "method": method, "objective": objective, "search_space": space, "budget": budget,
            "seed": seed, "search_seconds": time.perf_counter() - start, "trials": trials}


def _retrain(features: FeatureSet, section: dict[str, Any], out_dir: Path, max_epochs: int) -> dict[str, Any]:
    """Retrain the winner through train_model, save it with save_model_dir; the winner record with its metrics."""
    from instrument_id.instruments import column_names
    from model_zoo import save_model_dir
    from train.models import train_model
    from train.train_cli import split_metrics

    model, seed = section["model"], section["seed"]
    winner = best_trial(section["trials"])
    start = time.perf_counter()
    if model == "mlp":
        from train.mlp import MlpArch

        trained = train_model(features, "mlp", seed=seed, epochs=max_epochs, arch=MlpArch.from_dict(winner["params"]))
    else:
        trained = train_model(features, "rf", seed=seed, estimator_params=winner["params"])
    retrain_seconds = time.perf_counter() - start
    _, Y_valid = features.subset("valid")
    P_valid = trained.predict_proba_features(features.subset("valid")[0])  # (n_valid, 11)
    if model == "mlp":
        from train.tune_mlp import auc_pr_metric

        metric = auc_pr_metric(Y_valid)
        metric.update_state(Y_valid.astype(np.float32), P_valid)
        rescored = float(metric.result())
    else:
        rescored = macro_average_precision(Y_valid, P_valid)
    splits = split_metrics(trained, features)
    tuning = {"method": section["method"], "objective": section["objective"], "trial": winner["trial"],
              "value": winner["objective"]}
    metrics = {"splits": splits, "thresholds": dict(zip(column_names(), trained.pipeline.thresholds.tolist())),
               "threshold_source": "valid", "tuning": tuning}
    name = f"{model}-tuned"
    target = save_model_dir(out_dir / name, kind=trained.kind, name=name, model=trained.model,
                            pipeline=trained.pipeline, params=features.params, feature_set=features.feature_set,
                            metrics=metrics,
                            training_data=features.config, architecture=trained.architecture)
    weights_bytes = (target / backends.WEIGHTS_FILES[trained.kind]).stat().st_size
    summary = {split: {key: splits[split][key] for key in ("mAP", "macro_f1", "n_windows")} for split in ("valid", "test")}
    return {**winner, "objective_retrained": rescored, "model_dir": name, "weights_bytes": weights_bytes,
            "retrain_seconds": retrain_seconds, "metrics": summary,
            "architecture": {k: v for k, v in trained.architecture.items() if k != "positive_weights"}}


def tune(features: FeatureSet, model: str, out_dir: str | Path, *, budget: int | None = None,
         max_epochs: int = DEFAULT_MAX_EPOCHS, seed: int = 0, features_path: str = "") -> dict[str, Any]:
    """Search, retrain the winner into out_dir/<model>-tuned and update out_dir/tuning.json and tuning.md."""
    from train.models import check_featureset
    from train.tune_report import features_identity, update_report

    if model not in TUNABLE:
        raise InstrumentIdError(f"unknown model {model!r} to tune; choose one of {', '.join(TUNABLE)}")
    budget = DEFAULT_BUDGET[model] if budget is None else budget
    if budget < 1 or max_epochs < 1:
        raise InstrumentIdError(f"the budget and --max-epochs must be at least 1, got {budget} and {max_epochs}")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise InstrumentIdError(f"{out_dir}: exists and is not a folder")
    check_featureset(features)
    section = _search(features, model, budget, max_epochs, seed)
    section["fixed"] = _fixed_params(model, seed)
    section["features"] = {"path": features_path, **features_identity(features.config),
                           "windows": {s: int((features.split == s).sum()) for s in ("train", "valid", "test")}}
    section["winner"] = _retrain(features, section, out_dir, max_epochs)
    return update_report(out_dir, section)


def _fixed_params(model: str, seed: int) -> dict[str, Any]:
    """What the search does not vary."""
    if model == "mlp":
        from train.mlp import MlpFit

        fit = MlpFit()
        return {"batch_size": fit.batch_size, "early_stopping": f"val_loss, patience {fit.patience}, best epoch restored",
                "loss": "per-instrument weighted binary cross-entropy"}
    from train.models import SKLEARN_MODELS

    params = SKLEARN_MODELS["rf"](seed).get_params()
    return {key: params[key] for key in RF_FIXED}


def add_parser(parser: argparse.ArgumentParser) -> None:
    """Arguments of `instrument-id tune`."""
    parser.add_argument("model", help="mlp (keras-tuner) or rf (randomized search)")
    parser.add_argument("--features", required=True, type=Path, help="feature cache (.npz) from `instrument-id features`")
    parser.add_argument("--out", required=True, type=Path,
                        help="folder for tuning.json, tuning.md and the <model>-tuned model folder")
    parser.add_argument("--budget", "--max-trials", "--n-iter", dest="budget", type=int, default=None,
                        help=f"trials to run (mlp: --max-trials, default {DEFAULT_BUDGET['mlp']}; "
                             f"rf: --n-iter, default {DEFAULT_BUDGET['rf']})")
    parser.add_argument("--max-epochs", type=int, default=None,
                        help=f"MLP: epochs per trial and for the retrained winner (default {DEFAULT_MAX_EPOCHS})")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")


def run(args: argparse.Namespace) -> int:
    """Validate the arguments and the features, tune, print the report."""
    from model_zoo.featureset import load_featureset
    from train.models import check_featureset
    from train.tune_report import render_markdown

    if args.model not in TUNABLE:
        raise InstrumentIdError(f"unknown model {args.model!r} to tune; choose one of {', '.join(TUNABLE)}")
    if args.max_epochs is not None and args.model != "mlp":
        raise InstrumentIdError("--max-epochs applies to `tune mlp` only")
    try:
        features = load_featureset(args.features)
        check_featureset(features)
    except InstrumentIdError as exc:
        message = str(exc)
        raise InstrumentIdError(message if str(args.features) in message else f"{args.features}: {message}") from None
    report = tune(features, args.model, args.out, budget=args.budget, max_epochs=args.max_epochs or DEFAULT_MAX_EPOCHS,
                  seed=args.seed, features_path=str(args.features))
    print(render_markdown(report, only=args.model), end="")
    print(f"wrote {args.out / 'tuning.json'}, {args.out / 'tuning.md'} and {args.out / (args.model + '-tuned')}")
    return 0
