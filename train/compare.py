"""`instrument-id compare`: did a change help on the same labelled clips, and by more than the clips' luck?

Reads the predictions.csv of two `instrument-id evaluate --clips` reports (before, after) and, per model, gives
macro-F1, mAP and the share of no-instrument clips answered with nothing before and after, and a paired bootstrap of
their change: clips are resampled with replacement (the same clips for both sides) and the 2.5 / 97.5 percentiles
of the change are its 95% interval. Macro-F1 and mAP average the instruments present in the resample, as evaluate
does on the whole set. Models pair up by label, their folder's name; a report from before evaluate used folder
names (when model_zoo/models/musicnn was labelled 'mlp') is relabelled from the paths in its report.json.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import average_precision_score
from tqdm import tqdm

from instrument_id.errors import InstrumentIdError
from instrument_id.instruments import NUM_INSTRUMENTS, column_names
from instrument_id.output import publish

FIGURES = ("macro_f1", "mAP", "quiet_share")


def folder_labels(predictions_csv: Path) -> dict[str, str]:
    """{label in predictions.csv: its model folder's name} for a report written when evaluate labelled models by the
    name they were trained as (model_zoo/models/musicnn was 'mlp'), from the report.json beside it; {} otherwise.
    Two folders of one name keep their paths, as evaluate labels them today."""
    report_json = predictions_csv.with_name("report.json")
    if not report_json.is_file():
        return {}
    try:
        models = json.loads(report_json.read_text(encoding="utf-8"))["models"]
        if any("model_kind" in entry for entry in models.values()):  # labelled by folder already
            return {}
        paths = {label: str(entry["path"]) for label, entry in models.items()}
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise InstrumentIdError(f"{report_json}: not the report.json of instrument-id evaluate ({exc})") from None
    names = [Path(p).name for p in paths.values()]
    return {label: Path(p).name if names.count(Path(p).name) == 1 else p for label, p in paths.items()}


def read_predictions(path: Path) -> tuple[list[str], np.ndarray, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """(clip files, Y (n, 11), {model label: (probabilities (n, 11), decisions (n, 11) bool)}) from a report's
    predictions.csv (or the report folder holding it), labels as evaluate gives them today (folder names, see
    folder_labels); a damaged file is refused naming it and the row."""
    path = path / "predictions.csv" if path.is_dir() else path
    if not path.is_file():
        raise InstrumentIdError(f"{path}: no such file; give a report folder of `instrument-id evaluate --clips`")
    names = column_names()
    index = {name: j for j, name in enumerate(names)}
    files: list[str] = []
    truth: dict[str, np.ndarray] = {}
    models: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in ("file", "model", "true", "predicted", *names) if c not in (reader.fieldnames or [])]
        if missing:
            raise InstrumentIdError(f"{path}: not a predictions.csv of instrument-id evaluate (no columns {missing})")
        for line, row in enumerate(reader, start=2):
            try:
                y = np.zeros(NUM_INSTRUMENTS, dtype=np.int64)
                y[[index[n] for n in row["true"].split()]] = 1
                d = np.zeros(NUM_INSTRUMENTS, dtype=bool)
                d[[index[n] for n in row["predicted"].split()]] = True
                p = np.array([float(row[n]) for n in names])
            except (KeyError, ValueError) as exc:
                raise InstrumentIdError(f"{path}, line {line}: bad instrument or probability ({exc})") from None
            if row["file"] not in truth:
                files.append(row["file"])
                truth[row["file"]] = y
            elif not np.array_equal(truth[row["file"]], y):
                raise InstrumentIdError(f"{path}, line {line}: {row['file']} has two different truths")
            models.setdefault(row["model"], {})[row["file"]] = (p, d)
    if not files:
        raise InstrumentIdError(f"{path}: holds no predictions")
    out = {}
    relabel = folder_labels(path)
    for label, by_file in models.items():
        if set(by_file) != set(files):
            raise InstrumentIdError(f"{path}: model {label} lacks predictions for {sorted(set(files) - set(by_file))[:3]}")
        out[relabel.get(label, label)] = (np.stack([by_file[f][0] for f in files]),
                                          np.stack([by_file[f][1] for f in files]))
    return files, np.stack([truth[f] for f in files]), out


def figures(Y: np.ndarray, P: np.ndarray, D: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """(R, 3) macro-F1, mAP and quiet share for R resamples given as clip counts weights (R, n)."""
    tp = weights @ (D & (Y == 1))  # (R, 11)
    fp, fn = weights @ (D & (Y == 0)), weights @ (~D & (Y == 1))
    present = (weights @ Y) > 0  # (R, 11)
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(2 * tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), 0.0)
    macro_f1 = (f1 * present).sum(axis=1) / np.maximum(present.sum(axis=1), 1)
    ap = np.array([[average_precision_score(Y[:, j], P[:, j], sample_weight=w) if present[r, j] else np.nan
                    for j in range(NUM_INSTRUMENTS)] for r, w in enumerate(weights)])  # (R, 11)
    none = Y.sum(axis=1) == 0
    quiet = weights @ (none & ~D.any(axis=1)) / np.maximum(weights @ none, 1)  # (R,)
    return np.stack([macro_f1, np.nanmean(ap, axis=1), quiet], axis=1)


def paired_bootstrap(Y: np.ndarray, before: tuple[np.ndarray, np.ndarray], after: tuple[np.ndarray, np.ndarray],
                     resamples: int, seed: int) -> dict[str, dict[str, float]]:
    """{figure: before, after, change and its 95% interval} over the same resampled clips for both sides."""
    n = len(Y)
    weights = np.random.default_rng(seed).multinomial(n, np.full(n, 1.0 / n), size=resamples)  # (R, n) counts
    whole = np.ones((1, n), dtype=np.int64)
    point_before, point_after = figures(Y, *before, whole)[0], figures(Y, *after, whole)[0]
    change = np.concatenate([figures(Y, *after, chunk) - figures(Y, *before, chunk)
                             for chunk in tqdm(np.array_split(weights, max(1, resamples // 100)), desc="bootstrap", disable=None,
                                               unit="x100", leave=False)])  # (R, 3)
    low, high = np.nanpercentile(change, [2.5, 97.5], axis=0)
    return {name: {"before": float(point_before[k]), "after": float(point_after[k]),
                   "change": float(point_after[k] - point_before[k]), "change_low_95": float(low[k]),
                   "change_high_95": float(high[k])} for k, name in enumerate(FIGURES)}


def compare(before: Path, after: Path, pairs: list[tuple[str, str]] | None, resamples: int, seed: int) -> dict[str, Any]:
    """The comparison of every model pair (by default every label the two reports share)."""
    files_b, Y_b, models_b = read_predictions(before)
    files_a, Y_a, models_a = read_predictions(after)
    if files_b != files_a or not np.array_equal(Y_b, Y_a):
        differ = next((f"{x} vs {y}" for x, y in zip(files_b, files_a) if x != y), f"{len(files_b)} vs {len(files_a)} clips")
        raise InstrumentIdError(f"{before} and {after} score different clips or labels ({differ}); compare needs the same")
    pairs = pairs or [(label, label) for label in models_b if label in models_a]
    if not pairs:
        raise InstrumentIdError(f"the reports share no model label ({sorted(models_b)} vs {sorted(models_a)}); "
                                "name the pairs with --pair BEFORE=AFTER")
    for label_b, label_a in pairs:
        if label_b not in models_b or label_a not in models_a:
            raise InstrumentIdError(f"--pair {label_b}={label_a}: before has {sorted(models_b)}, after {sorted(models_a)}")
    return {"before": str(before), "after": str(after), "n_clips": len(files_b), "resamples": resamples, "seed": seed,
            "models": [{"before_model": b, "after_model": a,
                        **paired_bootstrap(Y_b, models_b[b], models_a[a], resamples, seed)} for b, a in pairs]}


def markdown(result: dict[str, Any]) -> str:
    """The comparison as a Markdown table."""
    lines = [f"# {result['before']} -> {result['after']} ({result['n_clips']} clips, paired bootstrap x{result['resamples']})",
             "", "| model | figure | before | after | change | 95% interval |", "|---|---|---|---|---|---|"]
    for entry in result["models"]:
        label = entry["before_model"] if entry["before_model"] == entry["after_model"] else \
            f"{entry['before_model']} -> {entry['after_model']}"
        lines += [f"| {label} | {name} | {entry[name]['before']:.3f} | {entry[name]['after']:.3f} | "
                  f"{entry[name]['change']:+.3f} | {entry[name]['change_low_95']:+.3f}..{entry[name]['change_high_95']:+.3f} |"
                  for name in FIGURES]
    return "\n".join(lines) + "\n"


def add_parser(parser: argparse.ArgumentParser) -> None:
    """Arguments of `instrument-id compare`."""
    parser.add_argument("before", type=Path, help="report folder (or its predictions.csv) of evaluate --clips, before")
    parser.add_argument("after", type=Path, help="the same after the change, on the same clips")
    parser.add_argument("--pair", action="append", metavar="BEFORE=AFTER",
                        help="compare these model labels (repeatable); default: every label both reports hold")
    parser.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples (default 2000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="also write compare.json and compare.md into this folder")
    parser.add_argument("--json", action="store_true", help="print one JSON object of the figures")


def run(args: argparse.Namespace) -> int:
    """Compare, print the table (or the JSON), write it where --out says."""
    if args.resamples < 100:
        raise InstrumentIdError(f"--resamples {args.resamples}: use at least 100 for a 95% interval")
    pairs = None
    if args.pair:
        bad = [p for p in args.pair if p.count("=") != 1]
        if bad:
            raise InstrumentIdError(f"--pair {bad[0]}: write BEFORE_LABEL=AFTER_LABEL")
        pairs = [tuple(p.split("=")) for p in args.pair]
    result = compare(args.before, args.after, pairs, args.resamples, args.seed)
    publish(result, markdown(result), args.out, "compare", args.json)
    return 0
