"""`instrument-id feature-study`: which musicnn output and which head, and leave-one-soundfont-out, on a feature cache.

Two measurements, synthetic audio only (real recordings are never read here):
- outputs x heads: for each musicnn output combination held in the cache (a cache made with
  --feature-set musicnn:taggram+penultimate+mean_pool+max_pool holds them all), fit each head on train, choose
  thresholds on valid, and report valid mAP (the selection figure: no threshold is tuned on it) and test macro-F1.
- leave-one-soundfont-out: for each soundfont of the corpus (read from musicnet_metadata.csv's source column, which
  names every soundfont a recording's parts use), fit on the train windows of the recordings that never use it,
  choose thresholds on their valid windows, and score every original window of the recordings rendered with it
  alone. A recording that mixes it with other soundfonts is in neither set, so the held-out timbres are never
  heard in training. The matrix says how a model does on timbres it never heard.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from instrument_id.errors import InstrumentIdError
from instrument_id.feature_sets import FeatureSetSpec
from instrument_id.output import publish
from model_zoo.featureset import FeatureSet, load_featureset
from train.metrics import multilabel_metrics
from train.feature_cache import SYNTH_SOURCE
from train.synth import FONT_SEPARATOR, NO_INSTRUMENT_SOURCE

DEFAULT_HEADS = ("lr", "mlp")
DEFAULT_COMBINATIONS = ("taggram", "penultimate", "mean_pool", "max_pool", "max_pool+mean_pool",
                        "penultimate+max_pool", "taggram+penultimate+mean_pool+max_pool")


def output_columns(spec: FeatureSetSpec) -> dict[str, slice]:
    """{musicnn output: its columns in the cache}, in the order the spec concatenates them."""
    from model_zoo.embedding import load_embedding

    if spec.name != "musicnn":
        raise InstrumentIdError(f"output combinations need a musicnn cache, this one holds {spec.label}")
    widths = load_embedding().widths
    columns, start = {}, 0
    for name in spec.settings["outputs"]:
        columns[name] = slice(start, start + widths[name])
        start += widths[name]
    if start != spec.width:
        raise InstrumentIdError(f"the cache's {spec.label} is {spec.width} wide, its outputs add up to {start}")
    return columns


def select_outputs(features: FeatureSet, outputs: tuple[str, ...]) -> FeatureSet:
    """The cache restricted to some of its musicnn outputs, as the feature set musicnn:a+b would have made it."""
    from model_zoo.featurizers import musicnn_spec

    columns = output_columns(features.feature_set)
    missing = [name for name in outputs if name not in columns]
    if missing:
        raise InstrumentIdError(f"the cache holds musicnn outputs {list(columns)}, not {missing}")
    spec = musicnn_spec(outputs)
    if spec.settings["model_sha256"] != features.feature_set.settings["model_sha256"]:
        raise InstrumentIdError("the cache was made with another musicnn conversion than the shipped one; recompute it")
    X = np.concatenate([features.X[:, columns[name]] for name in outputs], axis=1)
    config = {**features.config, "feature_set": spec.to_dict()}
    return FeatureSet(X=X, Y=features.Y, split=features.split, recording=features.recording, variant=features.variant,
                      start_seconds=features.start_seconds, config=config)


def _scores(model: Any, features: FeatureSet, mask: np.ndarray) -> dict[str, Any]:
    probabilities, decisions = model.predict_features(features.X[mask])
    return multilabel_metrics(features.Y[mask], decisions, probabilities)


def decision_scores(Y: np.ndarray, probabilities: np.ndarray, decisions: np.ndarray) -> dict[str, Any]:
    """Macro-F1, mAP and the share of no-instrument windows answered with nothing (None without such windows)."""
    scores = multilabel_metrics(Y, decisions, probabilities)
    quiet = Y.sum(axis=1) == 0  # (n,) windows of no instrument
    answered_nothing = ~np.asarray(decisions, dtype=bool).any(axis=1)  # (n,)
    return {"macro_f1": scores["macro_f1"], "mAP": scores["mAP"],
            "quiet_share_no_instrument": float(answered_nothing[quiet].mean()) if quiet.any() else None}


def held_out_scores(model: Any, features: FeatureSet, mask: np.ndarray) -> dict[str, Any]:
    """decision_scores of the masked windows, from one pass of the model."""
    probabilities, decisions = model.predict_features(features.X[mask])  # (n, 11) each
    return decision_scores(features.Y[mask], probabilities, decisions)


def heads_study(features: FeatureSet, combinations: list[str], heads: list[str], seed: int) -> list[dict[str, Any]]:
    """One row per (outputs, head): valid mAP, test macro-F1 and mAP."""
    from train.models import train_model

    rows = []
    valid = (features.split == "valid") & (features.variant == 0)
    test = (features.split == "test") & (features.variant == 0)
    for combination in tqdm(combinations, desc="outputs", unit="set"):
        subset = select_outputs(features, tuple(combination.split("+")))
        for head in heads:
            model = train_model(subset, head, seed=seed)
            v, t = _scores(model, subset, valid), _scores(model, subset, test)
            rows.append({"outputs": combination, "width": subset.feature_set.width, "head": head,
                         "valid_mAP": v["mAP"], "valid_macro_f1": v["macro_f1"],
                         "test_mAP": t["mAP"], "test_macro_f1": t["macro_f1"]})
    return rows


def recording_fonts(data_dir: Path) -> dict[str, frozenset[str]]:
    """{recording id: the soundfont file names its parts use} from a synthetic corpus's musicnet_metadata.csv."""
    path = Path(data_dir) / "musicnet_metadata.csv"
    if not path.is_file():
        raise InstrumentIdError(f"{path}: missing; leave-one-soundfont-out needs the corpus the cache was made from")
    fonts = {}
    with open(path, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            match = SYNTH_SOURCE.match(row.get("source", ""))
            if not match:
                raise InstrumentIdError(f"{path}: recording {row.get('id')} has no instrument-id synth source")
            used = match.group(1)  # a recording of no instrument uses no font: in training for every held-out one
            fonts[str(row["id"])] = frozenset() if used == NO_INSTRUMENT_SOURCE else frozenset(used.split(FONT_SEPARATOR))
    return fonts


def held_out_masks(font_sets: list[frozenset[str]], held_out: str) -> tuple[np.ndarray, np.ndarray]:
    """(fit, score) bool masks over font_sets (one per window or recording): fit where held_out is never used,
    score where it is the only soundfont."""
    fit = np.array([held_out not in fonts for fonts in font_sets], dtype=bool)
    score = np.array([fonts == {held_out} for fonts in font_sets], dtype=bool)
    return fit, score


def without_source(features: FeatureSet, fonts: dict[str, frozenset[str]], source: str) -> FeatureSet:
    """The windows of every recording that never uses source; an error naming the sources when none uses it."""
    known = sorted(set().union(*fonts.values()))
    if source not in known:
        raise InstrumentIdError(f"--loso-without {source}: no recording of the corpus uses it; its sources: {', '.join(known)}")
    keep = np.array([source not in fonts.get(str(r), frozenset()) for r in features.recording], dtype=bool)
    return _restrict(features, keep)


def _restrict(features: FeatureSet, mask: np.ndarray) -> FeatureSet:
    return FeatureSet(X=features.X[mask], Y=features.Y[mask], split=features.split[mask],
                      recording=features.recording[mask], variant=features.variant[mask],
                      start_seconds=features.start_seconds[mask], config=features.config)


def leave_one_font_out(features: FeatureSet, fonts: dict[str, frozenset[str]], heads: list[str],
                       seed: int) -> list[dict[str, Any]]:
    """One row per (held-out soundfont, head): macro-F1 and mAP on every original window rendered with that soundfont
    alone; a soundfont no recording uses alone gets no row."""
    from train.models import train_model

    unknown = sorted(set(features.recording) - set(fonts))
    if unknown:
        raise InstrumentIdError(f"recordings {unknown[:5]} of the cache are not in the corpus's metadata")
    font_sets = [fonts[r] for r in features.recording]  # per window
    rows = []
    for held_out in tqdm(sorted(set().union(*font_sets)), desc="held-out soundfont", unit="font"):
        fit, score = held_out_masks(font_sets, held_out)
        target = score & (features.variant == 0)
        if not target.any() or not fit.any():
            tqdm.write(f"leave-one-soundfont-out: skipping {held_out}: no recording uses it alone, or all use it")
            continue
        others = _restrict(features, fit)
        for head in heads:
            model = train_model(others, head, seed=seed)
            rows.append({"held_out": held_out, "head": head, "n_windows": int(target.sum()),
                         **held_out_scores(model, features, target)})
    return rows


def markdown(result: dict[str, Any]) -> str:
    """The tables of a study as Markdown."""
    lines = [f"# Feature study: {result['feature_set']}", "", f"cache: {result['features']}", ""]
    if result.get("heads"):
        lines += ["| outputs | width | head | valid mAP | test mAP | test macro-F1 |", "|---|---|---|---|---|---|"]
        lines += [f"| {r['outputs']} | {r['width']} | {r['head']} | {r['valid_mAP']:.3f} | {r['test_mAP']:.3f} | "
                  f"{r['test_macro_f1']:.3f} |" for r in result["heads"]]
        lines.append("")
    if result.get("leave_one_soundfont_out"):
        if result.get("loso_without"):
            lines += [f"Every recording that uses {result['loso_without']} dropped first.", ""]
        lines += ["| held-out soundfont | head | windows | macro-F1 | mAP |", "|---|---|---|---|---|"]
        lines += [f"| {r['held_out']} | {r['head']} | {r['n_windows']} | {r['macro_f1']:.3f} | {r['mAP']:.3f} |"
                  for r in result["leave_one_soundfont_out"]]
    return "\n".join(lines) + "\n"


def add_parser(parser: argparse.ArgumentParser) -> None:
    """Arguments of `instrument-id feature-study`."""
    parser.add_argument("--features", required=True, type=Path, help="feature cache (.npz)")
    parser.add_argument("--out", required=True, type=Path, help="folder for study.json and study.md (not model_zoo/)")
    parser.add_argument("--heads", default=",".join(DEFAULT_HEADS), help="comma-separated model names (lr,mlp,rf,...)")
    parser.add_argument("--outputs", default=None,
                        help="comma-separated musicnn output combinations to compare (a+b joins outputs); "
                             "default: every one of " + ", ".join(DEFAULT_COMBINATIONS) + " the cache holds")
    parser.add_argument("--loso-data", type=Path, default=None,
                        help="the synthetic corpus of the cache: adds the leave-one-soundfont-out matrix")
    parser.add_argument("--loso-outputs", default=None,
                        help="musicnn outputs for the leave-one-soundfont-out fits (default: the whole cache)")
    parser.add_argument("--loso-without", default=None, metavar="SOURCE",
                        help="drop every recording that uses this timbre source (file name, e.g. freepats.cfg) "
                             "before the leave-one-soundfont-out fits: the matrix as if the corpus never had it, "
                             "to judge what adding that source does to the others")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print one JSON object of the figures")


def run(args: argparse.Namespace) -> int:
    """Run the asked studies; write study.json and study.md; print the tables (or the JSON)."""
    from model_zoo.zoo import refuse_model_zoo_path

    refuse_model_zoo_path(args.out)
    features = load_featureset(args.features)
    heads = [h for h in args.heads.split(",") if h]
    result: dict[str, Any] = {"features": str(args.features), "feature_set": features.feature_set.label}
    if features.feature_set.name == "musicnn":
        held = set(features.feature_set.settings["outputs"])
        combinations = args.outputs.split(",") if args.outputs else \
            [c for c in DEFAULT_COMBINATIONS if set(c.split("+")) <= held]
        result["heads"] = heads_study(features, combinations, heads, args.seed)
    if args.loso_data is not None:
        loso = features
        if args.loso_outputs:
            loso = select_outputs(features, tuple(args.loso_outputs.split("+")))
        fonts = recording_fonts(args.loso_data)
        if args.loso_without:
            loso = without_source(loso, fonts, args.loso_without)
            result["loso_without"] = args.loso_without
        result["loso_feature_set"] = loso.feature_set.label
        result["leave_one_soundfont_out"] = leave_one_font_out(loso, fonts, heads, args.seed)
    publish(result, markdown(result), args.out, "study", args.json)
    return 0
