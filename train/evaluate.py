"""`instrument-id evaluate`: score model folders on a feature cache's splits or on a labelled folder of clips.

Every figure comes from train.metrics.multilabel_metrics on each model's own decisions at its stored thresholds.
All input is read and checked and every figure computed before train.report writes a file, so bad input changes
nothing on disk.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from instrument_id.errors import InstrumentIdError
from instrument_id.timing import median_ms
from instrument_id.output import print_json
from model_zoo.zoo import inside_model_zoo, refuse_model_zoo_path

# a folder holding any of these is taken for a model folder (and then must load), never for a folder of models
MODEL_FOLDER_FILES = ("manifest.json", "pipeline.json", "model.keras", "model.skops")
DEFAULT_TIMING_RUNS = 7


@dataclass
class Evaluation:
    """The JSON-ready figures plus the arrays the plots and the per-clip table need."""

    figures: dict[str, Any]
    curve_split: str  # "test" (feature cache) or "clips"
    Y: np.ndarray  # (n, 11) truth of curve_split
    probabilities: dict[str, np.ndarray]  # model label -> (n, 11)
    decisions: dict[str, np.ndarray]  # model label -> (n, 11) bool
    row_names: list[str] | None = None  # clip file names, clips only


def add_parser(parser: argparse.ArgumentParser) -> None:
    """Arguments of `instrument-id evaluate`."""
    parser.epilog = (
        "Writes report.md, report.json and PNG plots (precision-recall per instrument; with --features also the PCA "
        "explained variance) into REPORT_DIR, plus predictions.csv with --clips. Recordings kept for evaluation "
        "(e.g. ../shared/data/real-dev) must only ever be scored here, never trained or tuned on."
    )
    parser.add_argument("--model", required=True, nargs="+", type=Path, metavar="DIR",
                        help="a model folder, or a folder of model folders (every model in it is scored)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--features", type=Path, metavar="FILE", help="feature cache (.npz): score train (original windows), valid, test")
    source.add_argument("--clips", type=Path, metavar="DIR", help="folder of audio clips (any length, rate, channels) listed in --labels")
    parser.add_argument("--labels", type=Path, metavar="CSV",
                        help="with --clips: CSV with a 'file' column and one 0/1 column per instrument, e.g. violin(41)")
    parser.add_argument("--out", type=Path, default=None, metavar="REPORT_DIR",
                        help="report folder (default: report/ inside the first folder of models, or beside a model folder)")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    parser.add_argument("--timing-runs", type=int, default=DEFAULT_TIMING_RUNS, metavar="N",
                        help=f"timed repetitions; timings are medians (default {DEFAULT_TIMING_RUNS})")


def _is_model_folder(folder: Path) -> bool:
    return any((folder / name).exists() for name in MODEL_FOLDER_FILES)


def resolve_model_dirs(dirs: list[Path]) -> list[Path]:
    """Each DIR itself when it is a model folder, else the model folders inside it (train's order); no repeats."""
    from train.models import MODEL_NAMES

    order = {name: i for i, name in enumerate(MODEL_NAMES)}
    out: list[Path] = []
    for folder in dirs:
        if not folder.is_dir():
            raise InstrumentIdError(f"{folder}: no model folder here")
        found = [folder] if _is_model_folder(folder) else sorted(
            (p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".") and _is_model_folder(p)),
            key=lambda p: (order.get(p.name, len(order)), p.name),
        )
        if not found:
            raise InstrumentIdError(f"{folder}: neither a model folder (no manifest.json) nor a folder of model folders")
        out.extend(p for p in found if p.resolve() not in {q.resolve() for q in out})
    return out


def load_models(model_dirs: list[Path]) -> dict[str, Any]:
    """Verify and load every folder; keyed by folder name (the model's label), or by path when two share a name."""
    from model_zoo import open_model

    models = [open_model(path, "zoo") for path in model_dirs]
    labels = [m.label for m in models]
    return {(m.label if labels.count(m.label) == 1 else str(m.path)): m for m in models}


def scored_metrics(Y: np.ndarray, decisions: np.ndarray, probabilities: np.ndarray) -> dict[str, Any]:
    """multilabel_metrics with undefined figures as None (n/a), predicted-positive counts and no-instrument rows."""
    from instrument_id.instruments import column_names
    from train.metrics import multilabel_metrics

    decisions = np.asarray(decisions, dtype=bool)
    metrics = multilabel_metrics(Y, decisions, probabilities)
    predicted = decisions.sum(axis=0)  # (11,)
    for j, column in enumerate(column_names()):
        entry = metrics["per_instrument"][column]
        entry["predicted_positives"] = int(predicted[j])
        if entry["support"] == 0:  # recall and F1 need a positive; such instruments are outside the macro averages
            entry["recall"] = entry["f1"] = None
            if predicted[j] == 0:
                entry["precision"] = None
    none_rows = np.asarray(Y).sum(axis=1) == 0  # (n,) no instrument plays
    silent = ~decisions.any(axis=1)  # (n,) the model named no instrument
    n_none = int(none_rows.sum())
    nothing = float(silent[none_rows].mean()) if n_none else None
    metrics["no_instrument_rows"] = {
        "n": n_none, "predicted_nothing_fraction": nothing, "false_positive_rate": None if nothing is None else 1 - nothing,
    }
    single = np.asarray(Y).sum(axis=1) == 1  # (n,) exactly one instrument: did it score highest?
    top1 = np.argmax(probabilities, axis=1) == np.argmax(Y, axis=1)
    metrics["top1_accuracy_single_instrument_rows"] = float(top1[single].mean()) if single.any() else None
    metrics["hamming_accuracy_predict_nothing"] = float(1.0 - np.asarray(Y).mean())
    return metrics


def latency_clip(sample_rate_hz: int, window_samples: int) -> np.ndarray:
    """A seeded one-window clip (two partials over faint noise) -> (window_samples,) float32."""
    t = np.arange(window_samples) / sample_rate_hz
    noise = np.random.default_rng(0).normal(0.0, 0.01, window_samples)
    return (0.3 * np.sin(2 * np.pi * 440.0 * t) + 0.15 * np.sin(2 * np.pi * 880.0 * t) + noise).astype(np.float32)


def clip_latency_ms(model: Any, runs: int) -> dict[str, float]:
    """Median ms to name the instruments of one window-long clip: features, model, and both together."""
    from model_zoo.featurizers import featurize

    params, spec = model.params, model.feature_set
    clip = latency_clip(params.sample_rate_hz, params.window_samples)
    X = featurize(clip, params, spec)  # (1, width)
    return {
        "latency_ms_per_clip": median_ms(lambda: model.predict_features(featurize(clip, params, spec)), runs),
        "features_ms_per_clip": median_ms(lambda: featurize(clip, params, spec), runs),
        "model_ms_per_clip": median_ms(lambda: model.predict_features(X), runs),
    }


def _model_entry(model: Any) -> dict[str, Any]:
    from instrument_id.instruments import column_names

    return {
        "name": model.label, "model_kind": model.name, "kind": model.kind, "version": model.version,
        "path": str(model.path),
        "pca_components": model.params.pca_components, "feature_set": model.feature_set.to_dict(),
        "thresholds": dict(zip(column_names(), model.pipeline.thresholds.tolist())),
    }


def load_checked_features(path: Path) -> Any:
    """A feature cache with 26 finite features, 0/1 labels and non-empty splits; errors name the file."""
    from model_zoo.featureset import SPLITS, load_featureset

    try:
        features = load_featureset(path)
        for split in SPLITS:
            features.subset(split, originals_only=(split == "train"))
        if not np.isfinite(features.X).all():
            raise InstrumentIdError("features contain NaN or infinity")
        if not np.isin(features.Y, (0, 1)).all():
            raise InstrumentIdError("labels must be 0 or 1")
    except InstrumentIdError as exc:
        message = str(exc)
        raise InstrumentIdError(message if str(path) in message else f"{path}: {message}") from None
    return features


def check_same_audio_settings(path: Path, features: Any, models: dict[str, Any]) -> None:
    """Refuse features computed with other audio settings than a model's (the PCA size does not matter here)."""
    theirs = features.config.get("params", {})
    for model in models.values():
        ours = {k: v for k, v in model.params.to_dict().items() if k != "pca_components"}
        differ = [f"{k} {theirs.get(k)!r} vs the model's {v!r}" for k, v in ours.items() if theirs.get(k) != v]
        if differ:
            raise InstrumentIdError(f"{path}: computed with other audio settings than {model.path} ({'; '.join(differ)})")
        model.feature_set.check_same(features.feature_set, f"model {model.path}", f"feature cache {path}")


def pca_explained_variance(features: Any, chosen_components: int) -> dict[str, Any]:
    """Explained variance of PCA on the standardized train split (original windows) and what chosen_components keep."""
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    X, _ = features.subset("train", originals_only=True)
    ratio = PCA(svd_solver="full").fit(StandardScaler().fit_transform(X)).explained_variance_ratio_
    cumulative = np.cumsum(ratio)
    kept = float(cumulative[chosen_components - 1]) if chosen_components <= len(ratio) else None
    return {
        "fit_on": "standardized train split, original windows (variant 0)",
        "n_windows": int(len(X)),
        "chosen_components": int(chosen_components),
        "explained_variance_ratio": ratio.tolist(),
        "cumulative_explained_variance": cumulative.tolist(),
        "variance_kept_percent": None if kept is None else 100.0 * kept,
        "information_lost_percent": None if kept is None else 100.0 * (1.0 - kept),
    }


def evaluate_features(models: dict[str, Any], features: Any, features_path: Path, runs: int) -> Evaluation:
    """Every model on train (original windows), valid and test; timings on the test split and on one clip."""
    from tqdm import tqdm

    from model_zoo.featureset import SPLITS

    splits = {s: features.subset(s, originals_only=(s == "train")) for s in SPLITS}
    X_test, Y_test = splits["test"]
    entries, probabilities, decisions = {}, {}, {}
    for label, model in tqdm(models.items(), desc="evaluate", unit="model", disable=None):
        entry = _model_entry(model)
        entry["same_data_as_training"] = (
            model.manifest["training_data"].get("corpus_fingerprint") == features.config.get("corpus_fingerprint")
        )
        predictions = {split: model.predict_features(X) for split, (X, _) in splits.items()}  # split -> ((n, 11), (n, 11))
        entry["splits"] = {split: scored_metrics(splits[split][1], D, P) for split, (P, D) in predictions.items()}
        probabilities[label], decisions[label] = predictions["test"]
        entry["predict_test_split_ms"] = median_ms(lambda: model.predict_features(X_test), runs)
        entry.update(clip_latency_ms(model, runs))
        entries[label] = entry
    figures = {
        "source": {
            "kind": "features", "features": str(features_path),
            "corpus_fingerprint": features.config.get("corpus_fingerprint"),
            "n_windows": {s: int(len(Y)) for s, (_, Y) in splits.items()},
            "train_windows": "original windows only (variant 0), not their augmentations",
        },
        "timing_runs": runs,
        "models": entries,
        "pca": pca_explained_variance(features, features.params.pca_components),
    }
    return Evaluation(figures, "test", Y_test, probabilities, decisions)


def evaluate_clips(models: dict[str, Any], clips: Any, runs: int) -> Evaluation:
    """Every model on every labelled clip (its windows' highest probability per instrument)."""
    from instrument_id.instruments import column_names
    from model_zoo.model import clip_scores
    from train.clips import clip_window_features

    by_settings: dict[Any, list[np.ndarray]] = {}
    entries, probabilities, decisions = {}, {}, {}
    for label, model in models.items():
        # the PCA size does not change the features; the audio settings and the feature set do
        key = (dataclasses.replace(model.params, pca_components=0), model.feature_set)
        if key not in by_settings:
            by_settings[key] = clip_window_features(clips, model.params, model.feature_set)
        windows = by_settings[key]  # per clip (n_windows, width)
        counts = np.cumsum([len(w) for w in windows])[:-1]
        all_windows = np.concatenate(windows)  # (total windows, width)
        window_P, window_D = model.predict_features(all_windows)  # (total windows, 11) each
        per_clip = [clip_scores(p, d) for p, d in zip(np.split(window_P, counts), np.split(window_D, counts))]
        P, D = np.stack([p for p, _ in per_clip]), np.stack([d for _, d in per_clip])  # (n_clips, 11) each
        entry = _model_entry(model)
        entry["splits"] = {"clips": scored_metrics(clips.Y, D, P)}
        entry["predict_clip_windows_ms"] = median_ms(lambda: model.predict_features(all_windows), runs)
        entry.update(clip_latency_ms(model, runs))
        entries[label], probabilities[label], decisions[label] = entry, P, D
    positives = clips.Y.sum(axis=0)  # (11,)
    figures = {
        "source": {
            "kind": "clips", "clips": str(clips.paths[0].parent), "labels": str(clips.labels_csv),
            "n_clips": len(clips), "n_clips_no_instrument": int(clips.none_rows.sum()),
            "instruments_with_positives": [c for c, n in zip(column_names(), positives) if n > 0],
            "clip_rule": "Each instrument scores its highest window; shorter clips are zero-padded to one window",
        },
        "timing_runs": runs,
        "models": entries,
    }
    return Evaluation(figures, "clips", clips.Y, probabilities, decisions, [p.name for p in clips.paths])


def default_out_dir(first: Path) -> Path:
    """report/ inside a folder of models, or beside a single model folder (never inside it: that breaks its manifest);
    runs/report for the shipped models, so evaluate never writes into model_zoo/."""
    out = (first.parent if _is_model_folder(first) else first) / "report"
    if inside_model_zoo(out):
        return Path("runs") / "report"
    return out


def _check_out_dir(out: Path, model_dirs: list[Path]) -> None:
    if out.exists() and not out.is_dir():
        raise InstrumentIdError(f"{out}: exists and is not a folder")
    refuse_model_zoo_path(out)
    resolved = out.resolve()
    for path in model_dirs:
        if resolved == path.resolve() or path.resolve() in resolved.parents:
            raise InstrumentIdError(f"{out}: inside model folder {path}; its manifest would no longer verify")


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def run(args: argparse.Namespace) -> int:
    """Check all input, compute every figure, then write the report files (each atomically)."""
    from train.clips import read_labels
    from train.report import write_report

    if args.timing_runs < 1:
        raise InstrumentIdError(f"--timing-runs must be at least 1, got {args.timing_runs}")
    if (args.clips is None) != (args.labels is None):
        raise InstrumentIdError("--clips and --labels go together: a folder of clips and the CSV that labels them")
    model_dirs = resolve_model_dirs(args.model)
    out = args.out or default_out_dir(args.model[0])
    _check_out_dir(out, model_dirs)
    if args.features is not None:
        features = load_checked_features(args.features)
        models = load_models(model_dirs)
        check_same_audio_settings(args.features, features, models)
        evaluation = evaluate_features(models, features, args.features, args.timing_runs)
    else:
        clips = read_labels(args.labels, args.clips)
        models = load_models(model_dirs)
        evaluation = evaluate_clips(models, clips, args.timing_runs)
    written = write_report(out, evaluation)
    if args.json:
        print_json(evaluation.figures)
        return 0
    for label, entry in evaluation.figures["models"].items():
        scores = ", ".join(f"{split} {_fmt(m['macro_f1'])}" for split, m in entry["splits"].items())
        print(f"{label}: macro-F1 {scores}; one clip {entry['latency_ms_per_clip']:.2f} ms")
    print(f"report: {', '.join(str(p) for p in written)}")
    return 0
