"""`instrument-id train`: train one model (or all) from a feature cache and save verified model folders."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

from instrument_id.errors import InstrumentIdError


def add_parser(parser: argparse.ArgumentParser) -> None:
    """Arguments of `instrument-id train`."""
    parser.add_argument("--features", required=True, type=Path, nargs="+",
                        help="feature cache(s) (.npz) from `instrument-id features`, trained on together (a soundfont "
                        "corpus, a real-note corpus, a labelled folder of your own recordings)")
    parser.add_argument("--valid", type=Path, metavar="CACHE",
                        help="a cache whose windows alone choose early stopping and the thresholds (e.g. a corpus of "
                        "held-out real notes); the --features caches' own valid windows then train")
    parser.add_argument("--model", required=True, help="mlp, rf, dt, lr, knn, gnb, dummy, or all")
    parser.add_argument("--out", required=True, type=Path, help="folder that receives one model folder per model")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--epochs", type=int, default=None, help="MLP: maximum epochs (early stopping may end sooner)")
    parser.add_argument("--batch-size", type=int, default=None, help="MLP: batch size")
    parser.add_argument("--hidden-units", metavar="N,N,...",
                        help="MLP: hidden layer widths, comma-separated (default 320,256,128)")
    parser.add_argument("--dropout", type=float, help="MLP: dropout after each hidden layer (default 0.3)")
    parser.add_argument("--quiet", action="store_true", help="no model summary or per-epoch progress")
    from train.source_thresholds import POLICIES

    parser.add_argument("--thresholds", choices=POLICIES, default="valid",
                        help="where the per-instrument decision thresholds are chosen: on the valid split (default), or "
                        "cross-source: on predictions for each timbre source by a model fitted without it (one more "
                        "fit per source; needs --data; see `instrument-id threshold-study`)")
    parser.add_argument("--data", type=Path, help="the synthetic corpus the cache was made from (its "
                        "musicnet_metadata.csv names each recording's timbre sources); for --thresholds cross-source")


def _named(paths: list[Path], exc: InstrumentIdError) -> InstrumentIdError:
    """The same error, with the features files named when the message does not already name one of them."""
    message = str(exc)
    named = any(str(path) in message for path in paths)
    return InstrumentIdError(message if named else f"{' + '.join(map(str, paths))}: {message}")


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def split_metrics(trained: Any, features: Any) -> dict[str, Any]:
    """Metrics of a trained model on each split (train: original windows only, not their augmentations)."""
    from model_zoo.featureset import SPLITS
    from train.evaluate import scored_metrics

    out = {}
    for split in SPLITS:
        X, Y = features.subset(split, originals_only=(split == "train"))
        probabilities, decisions = trained.predict_features(X)
        out[split] = scored_metrics(Y, decisions, probabilities)
    return out


def window_sources(args: argparse.Namespace, features: Any) -> list[frozenset[str]]:
    """The timbre sources of every window's recording, from --data, which must be the corpus the cache was made from."""
    from train.feature_study import recording_fonts
    from train.musicnet import corpus_fingerprint

    if args.data is None:
        raise InstrumentIdError("--thresholds cross-source needs --data: the synthetic corpus the cache was made from")
    if len(args.features) > 1 or args.valid is not None:
        raise InstrumentIdError("--thresholds cross-source takes one --features cache and no --valid")
    if not args.data.is_dir():
        raise InstrumentIdError(f"--data {args.data}: not a folder")
    made_from, here = features.config.get("corpus_fingerprint"), corpus_fingerprint(args.data)
    if made_from != here:
        raise InstrumentIdError(f"{args.features[0]} was made from corpus {made_from}, but --data {args.data} is corpus "
                                f"{here[:12]}; give the corpus the cache was made from")
    fonts = recording_fonts(args.data)
    unknown = sorted({str(r) for r in features.recording} - set(fonts))
    if unknown:
        raise InstrumentIdError(f"recordings {unknown[:5]} of {args.features[0]} are not in {args.data}'s metadata")
    return [fonts[str(r)] for r in features.recording]


def mlp_arch(args: argparse.Namespace) -> Any:
    """The MlpArch --hidden-units and --dropout ask for (None: the default); a bad value raises naming the flag."""
    if args.hidden_units is None and args.dropout is None:
        return None
    from train.mlp import MlpArch

    default = MlpArch()
    try:
        units = default.hidden_units if args.hidden_units is None else tuple(
            int(u) for u in args.hidden_units.split(","))
    except ValueError:
        raise InstrumentIdError(f"--hidden-units must be comma-separated integers, got {args.hidden_units!r}") from None
    return MlpArch(hidden_units=units, dropout=default.dropout if args.dropout is None else args.dropout)


def run(args: argparse.Namespace) -> int:
    """Validate everything first, then train and save each model; bad input raises before anything is written."""
    from instrument_id.instruments import column_names
    from model_zoo import save_model_dir
    from train.cache_merge import merge_caches
    from train.models import MODEL_NAMES, check_featureset, train_model

    if args.model not in (*MODEL_NAMES, "all"):
        raise InstrumentIdError(f"unknown model {args.model!r}; choose one of {', '.join(MODEL_NAMES)}, or all")
    names = list(MODEL_NAMES) if args.model == "all" else [args.model]
    for flag in ("epochs", "batch_size"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise InstrumentIdError(f"--{flag.replace('_', '-')} must be at least 1, got {value}")
    arch = mlp_arch(args)
    if args.out.exists() and not args.out.is_dir():
        raise InstrumentIdError(f"{args.out}: exists and is not a folder")
    try:
        features = merge_caches(args.features, args.valid)
        check_featureset(features)
    except InstrumentIdError as exc:
        raise _named([*args.features, *([args.valid] if args.valid else [])], exc) from None
    font_sets = window_sources(args, features) if args.thresholds == "cross-source" else None
    params = features.params
    for name in names:
        trained = train_model(
            features, name, seed=args.seed, epochs=args.epochs, batch_size=args.batch_size, verbose=not args.quiet,
            arch=arch if name == "mlp" else None,
        )
        cross_source = None
        if font_sets is not None:
            from train.source_thresholds import out_of_source_predictions

            pooled = out_of_source_predictions(features, font_sets, name, args.seed, epochs=args.epochs,
                                               batch_size=args.batch_size)
            trained = dataclasses.replace(trained, pipeline=trained.pipeline.with_thresholds(pooled.thresholds()))
            cross_source = {"sources": pooled.sources, "n_windows": int(len(pooled.Y)),
                            "corpus": str(args.data)}
        metrics = {
            "splits": split_metrics(trained, features),
            "thresholds": dict(zip(column_names(), trained.pipeline.thresholds.tolist())),
            "threshold_source": args.thresholds,
            **({"cross_source": cross_source} if cross_source else {}),
        }
        target = save_model_dir(
            args.out / name, kind=trained.kind, name=name, model=trained.model, pipeline=trained.pipeline,
            params=params, feature_set=features.feature_set, metrics=metrics, training_data=features.config,
            architecture=trained.architecture,
        )
        valid, test = metrics["splits"]["valid"], metrics["splits"]["test"]
        quiet = valid["no_instrument_rows"]["predicted_nothing_fraction"]
        print(
            f"{name}: macro-F1 valid {_fmt(valid['macro_f1'])} (mAP {_fmt(valid['mAP'])}, no-instrument windows "
            f"answered with nothing {_fmt(quiet)}) test {_fmt(test['macro_f1'])}, mAP test {_fmt(test['mAP'])} -> {target}"
        )
    return 0
