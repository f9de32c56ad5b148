"""`instrument-id ceiling`: how far models of window statistics can go on a corpus, measured.

The shipped pipeline (26 frame means -> PCA 16 -> MLP or a 256-leaf RandomForest) is one point. This command
recomputes the very same windows of a feature cache (same corpus, split and seeded augmentation) and fits, each
with an unbounded RandomForest and the project's MLP trainer:

- the 26 means through standardization and PCA 16 (the shipped inputs),
- the 26 means without PCA,
- 130 frame statistics of the same 26 per-frame values (mean, standard deviation, mean absolute frame-to-frame
  change, 10th and 90th percentile) without PCA,
- and, with `--models ...,cnn`, the whole log-mel spectrogram of the window (frames x mel bands, the input the
  MFCCs are taken from) through a small 1-D CNN over time, trained by the same loop as the MLP.

`--train-fractions 0.25,0.5,1` repeats every fit on a seeded share of the train recordings (a learning curve).
Thresholds are chosen on valid, as train does; the test macro-F1 at thresholds chosen on test itself is reported
too, as an upper bound on any way of choosing them. The report goes to OUT/ceiling.{md,json,png}.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from joblib import Parallel, delayed
from tqdm import tqdm

from instrument_id.atomic import write_text_atomic
from instrument_id.errors import InstrumentIdError
from instrument_id.features import extractor_for
from instrument_id.instruments import INSTRUMENTS
from instrument_id.params import FEATURE_NAMES, AudioParams
from instrument_id.output import print_json

STATISTICS = ("mean", "std", "mean_abs_delta", "p10", "p90")
N_VALUES = len(FEATURE_NAMES)  # 26 per-frame values
# input name -> (number of leading statistics columns used, PCA to params.pca_components first)
INPUTS: dict[str, tuple[int, bool]] = {
    "26 means, PCA 16 (shipped)": (N_VALUES, True),
    "26 means": (N_VALUES, False),
    "130 frame statistics": (N_VALUES * len(STATISTICS), False),
}
LOG_MEL_INPUT = "log-mel frames"  # read by the cnn only; rf and mlp read INPUTS
CEILING_MODELS = ("rf", "mlp", "cnn")
CNN_FILTERS = (128, 128, 160, 160)  # Conv1D widths; a max-pool after every second
RF_TREES = 300
MEAN_TOLERANCE = 1e-3  # the mean block must reproduce the cached 26 features (float32 round-off of a frame mean)


def frame_table(extractor: Any, window: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(samples,) -> (T, 26) float64 per-frame values whose frame means are the 26 features (chroma, RMS, centroid,
    bandwidth, rolloff, ZCR, 20 MFCCs) and the (T, n_mels) float32 log-mel dB, floored at the window's max - top_db,
    that the MFCCs are taken from."""
    p = extractor.params
    n_frames = 1 + len(window) // p.stft_hop_samples
    values, log_mel = extractor.frame_values(window, p.n_fft // 2, n_frames)  # (T, 6), (T, n_mels)
    floored = np.maximum(log_mel, log_mel.max() - p.top_db)
    mfcc = floored.astype(np.float64) @ extractor.dct  # (T, 20)
    return np.concatenate([values, mfcc], axis=1), floored


def window_statistics(audio: np.ndarray, params: AudioParams,
                      log_mel: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """(n, samples) windows -> (n, 130) float32: mean | std | mean |delta| | p10 | p90 of the 26 per-frame values,
    and with log_mel also (n, T, n_mels) float16 log-mel dB floored at each window's max - top_db."""
    extractor = extractor_for(params)
    out = np.empty((len(audio), N_VALUES * len(STATISTICS)), dtype=np.float32)
    mels = np.empty((len(audio), params.n_frames, params.n_mels), dtype=np.float16) if log_mel else None
    for i, window in enumerate(np.asarray(audio, dtype=np.float32)):
        table, log_mel_frames = frame_table(extractor, window)  # (T, 26), (T, n_mels)
        low, high = np.percentile(table, [10, 90], axis=0)
        out[i] = np.concatenate([table.mean(0), table.std(0), np.abs(np.diff(table, axis=0)).mean(0), low, high])
        if mels is not None:
            mels[i] = log_mel_frames
    return out, mels


def _recording_statistics(rec: Any, split: str, params: AudioParams, n_augment: int, seed: int,
                          log_mel: bool) -> dict[str, Any]:
    from train.feature_cache import recording_window_audio

    arrays = recording_window_audio(rec, split, params, n_augment, seed)
    stats, mels = window_statistics(arrays.pop("audio"), params, log_mel)
    return {"id": rec.id, "S": stats, "M": mels, **arrays}


def corpus_statistics(data_dir: Path, features: Any, n_augment: int, seed: int, jobs: int,
                      log_mel: bool = False) -> dict[str, Any]:
    """Statistics of every window of the feature cache's recordings, in its splits; checks that the means block
    reproduces the cached features of the original windows, so both sides of the comparison see the same windows."""
    from train.musicnet import corpus_fingerprint, list_recordings

    listed = list_recordings(data_dir)
    if features.config.get("corpus_fingerprint") != corpus_fingerprint(data_dir, listed):
        raise InstrumentIdError(f"{data_dir}: not the corpus these features were computed from (fingerprint differs)")
    split_of = dict(zip(features.recording, features.split))
    recordings = [rec for rec in listed if rec.id in split_of]
    params = features.params
    tasks = (delayed(_recording_statistics)(rec, split_of[rec.id], params, n_augment, seed, log_mel)
             for rec in recordings)
    parts = list(tqdm(Parallel(n_jobs=jobs, return_as="generator")(tasks), total=len(recordings),
                      desc="frame statistics", unit="rec", disable=None))
    for part in parts:
        mine = (features.recording == part["id"]) & (features.variant == 0)
        cached = features.X[mine][np.argsort(features.start_seconds[mine], kind="stable")]  # (n, 26)
        ours = part["S"][part["variant"] == 0, :N_VALUES]
        if cached.shape != ours.shape or not np.allclose(ours, cached, rtol=MEAN_TOLERANCE, atol=1e-5):
            raise InstrumentIdError(f"recording {part['id']}: frame means differ from the cached features; "
                                    "recompute the feature cache with this version")
    return {
        "S": np.concatenate([p["S"] for p in parts]),
        "Y": np.concatenate([p["Y"] for p in parts]),
        "variant": np.concatenate([p["variant"] for p in parts]),
        "split": np.concatenate([[split_of[p["id"]]] * len(p["S"]) for p in parts]),
        "recording": np.concatenate([[p["id"]] * len(p["S"]) for p in parts]),
        "log_mel": np.concatenate([p["M"] for p in parts]) if log_mel else None,
    }


def build_frame_cnn(n_frames: int, n_mels: int) -> Any:
    """An uncompiled 1-D CNN over time with the mel bands as channels: (batch, T, n_mels) -> (batch, 11) sigmoid."""
    import keras

    inputs = keras.Input(shape=(n_frames, n_mels), name="log_mel")
    x = inputs
    for i, filters in enumerate(CNN_FILTERS):
        x = keras.layers.Conv1D(filters, 3, padding="same", use_bias=False)(x)
        x = keras.layers.Activation("relu")(keras.layers.BatchNormalization()(x))
        if i % 2 == 1:
            x = keras.layers.MaxPooling1D(2)(x)
    x = keras.layers.Concatenate()([keras.layers.GlobalMaxPooling1D()(x), keras.layers.GlobalAveragePooling1D()(x)])
    outputs = keras.layers.Dense(len(INSTRUMENTS), activation="sigmoid")(keras.layers.Dropout(0.3)(x))
    return keras.Model(inputs, outputs, name="frame_cnn")


def _fit_predict(model: str, Z: dict[str, np.ndarray], Y: dict[str, np.ndarray], seed: int) -> dict[str, np.ndarray]:
    """Fit one ceiling model on Z['train'] and return its probabilities on every split."""
    from model_zoo import backends

    if model == "rf":
        from sklearn.ensemble import RandomForestClassifier

        fitted = RandomForestClassifier(n_estimators=RF_TREES, min_samples_leaf=2, n_jobs=-1,
                                        random_state=seed).fit(Z["train"], Y["train"])
        return {split: backends.predict_proba("sklearn", fitted, Z[split]) for split in ("train_originals", "valid", "test")}
    from train.mlp import MlpFit, fit_mlp

    build = (lambda: build_frame_cnn(*Z["train"].shape[1:])) if model == "cnn" else None
    fit = MlpFit(batch_size=128, patience=5) if model == "cnn" else MlpFit()
    fitted, _record = fit_mlp(Z["train"], Y["train"], Z["valid"], Y["valid"], fit=fit, seed=seed, build=build)
    # batched predict, not backends.keras_proba's one call: the CNN's activations for 8k windows at once need GBs
    return {split: fitted.predict(Z[split], batch_size=1024, verbose=0) for split in ("train_originals", "valid", "test")}


def _inputs(stats: dict[str, Any], masks: dict[str, np.ndarray], name: str, params: AudioParams,
            seed: int) -> dict[str, np.ndarray]:
    """Each split's model inputs, standardized on masks['train']: a column block of the statistics (then PCA when
    INPUTS says so), or the log-mel frames standardized per mel band."""
    if name == LOG_MEL_INPUT:
        train = stats["log_mel"][masks["train"]].astype(np.float32)  # (n, T, n_mels)
        mean, scale = train.mean(axis=(0, 1)), train.std(axis=(0, 1)) + 1e-3  # (n_mels,)
        return {split: ((stats["log_mel"][mask].astype(np.float32) - mean) / scale) for split, mask in masks.items()}
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    width, pca = INPUTS[name]
    scaler = StandardScaler().fit(stats["S"][masks["train"], :width])
    Z = {split: scaler.transform(stats["S"][mask, :width]) for split, mask in masks.items()}
    if pca:
        reducer = PCA(n_components=params.pca_components, svd_solver="full", random_state=seed).fit(Z["train"])
        Z = {split: reducer.transform(z) for split, z in Z.items()}
    return Z


def train_subset(stats: dict[str, Any], fraction: float, seed: int) -> np.ndarray:
    """(n,) bool: the train windows of a seeded share of the train recordings (all of them at fraction 1)."""
    train = stats["split"] == "train"
    recordings = np.unique(stats["recording"][train])
    n_keep = max(1, int(round(fraction * len(recordings))))
    keep = np.random.default_rng(seed).permutation(recordings)[:n_keep]
    return train & np.isin(stats["recording"], keep)


def measure(stats: dict[str, Any], params: AudioParams, models: tuple[str, ...], seed: int,
            fractions: tuple[float, ...] = (1.0,)) -> list[dict[str, Any]]:
    """One row of figures per (train fraction, input, model): macro-F1 on train originals, valid and test, and test
    at oracle thresholds."""
    from train.metrics import multilabel_metrics
    from train.models import choose_thresholds

    pairs = [(name, m) for name in INPUTS for m in models if m != "cnn"]
    pairs += [(LOG_MEL_INPUT, "cnn")] if "cnn" in models else []
    rows = []
    for fraction in fractions:
        masks = {"train": train_subset(stats, fraction, seed), "valid": stats["split"] == "valid",
                 "test": stats["split"] == "test"}
        masks["train_originals"] = masks["train"] & (stats["variant"] == 0)
        for split, mask in masks.items():
            if not mask.any():
                raise InstrumentIdError(f"the {split} split is empty")
        Y = {split: stats["Y"][mask] for split, mask in masks.items()}
        for input_name in dict.fromkeys(name for name, _m in pairs):
            Z = _inputs(stats, masks, input_name, params, seed)
            for model in (m for name, m in pairs if name == input_name):
                start = time.perf_counter()
                P = _fit_predict(model, Z, Y, seed)
                fit_seconds = time.perf_counter() - start
                thresholds = choose_thresholds(Y["valid"], P["valid"])
                figures = {split: multilabel_metrics(Y[split], P[split] >= thresholds, P[split])
                           for split in ("train_originals", "valid", "test")}
                oracle = multilabel_metrics(Y["test"], P["test"] >= choose_thresholds(Y["test"], P["test"]), P["test"])
                rows.append({
                    "inputs": input_name, "model": model, "n_inputs": int(np.prod(Z["train"].shape[1:])),
                    "train_fraction": fraction,
                    "train_recordings": int(len(np.unique(stats["recording"][masks["train"]]))),
                    "fit_seconds": fit_seconds,
                    "train_macro_f1": figures["train_originals"]["macro_f1"],
                    "valid_macro_f1": figures["valid"]["macro_f1"], "test_macro_f1": figures["test"]["macro_f1"],
                    "test_mAP": figures["test"]["mAP"], "test_macro_f1_oracle_thresholds": oracle["macro_f1"],
                    "test_f1_per_instrument": {c: v["f1"] for c, v in figures["test"]["per_instrument"].items()},
                })
    return rows


def _full(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows fitted on every train recording (the learning curve's last point)."""
    top = max(r["train_fraction"] for r in rows)
    return [r for r in rows if r["train_fraction"] == top]


def markdown(result: dict[str, Any]) -> str:
    """The ceiling report: one line per (train share, input, model), then test F1 per instrument."""
    n = result["n_windows"]
    lines = [
        "# Ceiling of window-statistics models", "",
        f"Corpus `{result['data']}`, feature cache `{result['features']}`; {n['train']} train windows "
        f"({n['train_originals']} originals, augment {result['augment']}), {n['valid']} valid, {n['test']} test. "
        "Thresholds chosen on valid; the oracle column chooses them on test itself (an upper bound, not a result).", "",
        "| train recordings | inputs | model | inputs width | macro-F1 train | macro-F1 valid | macro-F1 test "
        "| test, oracle thresholds | mAP test | fit (s) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        lines.append(f"| {r['train_recordings']} ({r['train_fraction']:.0%}) | {r['inputs']} | {r['model']} | "
                     f"{r['n_inputs']} | {r['train_macro_f1']:.3f} | {r['valid_macro_f1']:.3f} | "
                     f"**{r['test_macro_f1']:.3f}** | {r['test_macro_f1_oracle_thresholds']:.3f} | "
                     f"{r['test_mAP']:.3f} | {r['fit_seconds']:.0f} |")
    full = _full(result["rows"])
    lines += ["", "## Test F1 per instrument (all train recordings)", "",
              "| instrument | " + " | ".join(f"{r['inputs']} · {r['model']}" for r in full) + " |",
              "|---|" + "---|" * len(full)]
    for inst in INSTRUMENTS:
        lines.append(f"| {inst.column} | " + " | ".join(f"{r['test_f1_per_instrument'][inst.column]:.3f}"
                                                       for r in full) + " |")
    return "\n".join(lines + ["", "![test F1 per instrument](ceiling.png)", ""])


def plot(result: dict[str, Any], path: Path) -> None:
    """Grouped bars: test F1 per instrument, one bar per (input, model) fitted on every train recording."""
    from matplotlib.figure import Figure

    from instrument_id.atomic import atomic_path

    rows = _full(result["rows"])
    fig = Figure(figsize=(13, 5.6))
    ax = fig.subplots()
    width = 0.8 / len(rows)
    x = np.arange(len(INSTRUMENTS))
    for k, r in enumerate(rows):
        ax.bar(x + (k - (len(rows) - 1) / 2) * width, [r["test_f1_per_instrument"][i.column] for i in INSTRUMENTS],
               width, label=f"{r['inputs']} · {r['model']} (macro {r['test_macro_f1']:.2f})")
    ax.axhline(0.9, color="black", linestyle="--", linewidth=1, label="0.90")
    ax.set_xticks(x, [i.column for i in INSTRUMENTS], rotation=30)
    ax.set_ylim(0, 1)
    ax.set_ylabel("test F1")
    ax.set_title("Test F1 per instrument: shipped inputs vs richer window statistics")
    ax.legend(fontsize=8, ncol=4, loc="upper center", bbox_to_anchor=(0.5, -0.22), frameon=False)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90)


def add_parser(parser: argparse.ArgumentParser) -> None:
    """Arguments of `instrument-id ceiling`."""
    parser.add_argument("--data", required=True, type=Path, help="the corpus the feature cache was computed from")
    parser.add_argument("--features", required=True, type=Path, help="feature cache (.npz): its windows and splits")
    parser.add_argument("--augment", type=int, default=0, metavar="K",
                        help="augmented variants per train window, 0..9, as `features --augment` (default 0: originals)")
    parser.add_argument("--models", default="rf,mlp",
                        help="comma-separated from rf, mlp, cnn (default rf,mlp; cnn fits the log-mel frames)")
    parser.add_argument("--train-fractions", default="1", metavar="F,F,...",
                        help="shares of the train recordings to fit on, each in (0, 1], e.g. 0.25,0.5,1 (default 1)")
    parser.add_argument("--out", type=Path, default=Path("runs/ceiling"), help="report folder (default runs/ceiling)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=-1, help="processes over recordings (default: every core)")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")


def run(args: argparse.Namespace) -> int:
    """Check the inputs, compute the statistics, fit every (input, model) and write the report."""
    from model_zoo.featureset import load_featureset

    models = tuple(m.strip() for m in args.models.split(",") if m.strip())
    unknown = sorted(set(models) - set(CEILING_MODELS))
    if unknown or not models:
        raise InstrumentIdError(f"unknown --models {unknown or args.models!r}; choose from {', '.join(CEILING_MODELS)}")
    try:
        fractions = tuple(sorted({float(f) for f in args.train_fractions.split(",") if f.strip()}))
    except ValueError:
        raise InstrumentIdError(f"--train-fractions must be numbers like 0.25,0.5,1, got {args.train_fractions!r}") from None
    if not fractions or not all(0 < f <= 1 for f in fractions):
        raise InstrumentIdError(f"--train-fractions must lie in (0, 1], got {args.train_fractions!r}")
    if not 0 <= args.augment <= 9:
        raise InstrumentIdError(f"--augment must be 0..9, got {args.augment}")
    if not args.data.is_dir():
        raise InstrumentIdError(f"{args.data}: corpus folder not found")
    if args.out.exists() and not args.out.is_dir():
        raise InstrumentIdError(f"{args.out}: exists and is not a folder")
    features = load_featureset(args.features)
    stats = corpus_statistics(args.data, features, args.augment, args.seed, args.jobs, log_mel="cnn" in models)
    rows = measure(stats, features.params, models, args.seed, fractions)
    train = stats["split"] == "train"
    result = {
        "data": str(args.data), "features": str(args.features), "augment": args.augment, "seed": args.seed,
        "n_windows": {"train": int(train.sum()), "train_originals": int((train & (stats["variant"] == 0)).sum()),
                      "valid": int((stats["split"] == "valid").sum()), "test": int((stats["split"] == "test").sum())},
        "train_fractions": list(fractions), "rows": rows,
        "best_test_macro_f1": max(r["test_macro_f1"] for r in rows),
        "best_test_macro_f1_oracle_thresholds": max(r["test_macro_f1_oracle_thresholds"] for r in rows),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    plot(result, args.out / "ceiling.png")
    write_text_atomic(args.out / "ceiling.json", json.dumps(result, indent=2) + "\n")
    write_text_atomic(args.out / "ceiling.md", markdown(result))
    if args.json:
        print_json(result)
    else:
        print(markdown(result))
    return 0
