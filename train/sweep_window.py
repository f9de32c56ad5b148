"""`instrument-id sweep-window`: one RandomForest per window length, its macro-F1 and how long it took to train.

Each window length gets its own feature cache (DIR/features-<w>s.npz, reused by later runs while its configuration
matches) and one default RandomForest trained by train_model. The hop is half the window unless --hop fixes it:
at a constant 50 % overlap every second of audio is seen twice at every length, so the sweep shows the real trade-off
(longer windows: more context each, fewer of them, faster training) rather than ever more overlapping copies of the
same audio as a fixed 1 s hop would give 12 s windows.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from instrument_id.atomic import atomic_path, write_text_atomic
from instrument_id.errors import InstrumentIdError
from instrument_id.params import AudioParams
from instrument_id.output import print_json

DEFAULT_WINDOWS_SECONDS = (1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 10.0, 12.0)
HOP_FRACTION = 0.5
SWEEP_JSON, SWEEP_MD, SWEEP_PNG = "sweep.json", "sweep.md", "sweep.png"


def cache_path(out_dir: str | Path, window_seconds: float) -> Path:
    """Where the feature cache of one window length lives: DIR/features-<w>s.npz."""
    return Path(out_dir) / f"features-{window_seconds:g}s.npz"


def sweep_windows(
    data_dir: str | Path,
    out_dir: str | Path,
    windows_seconds: tuple[float, ...] = DEFAULT_WINDOWS_SECONDS,
    *,
    n_augment: int = 0,
    seed: int = 0,
    hop_seconds: float | None = None,
    split: str = "stratified",
    jobs: int = -1,
    allow_missing: bool = False,
) -> dict[str, Any]:
    """Features, one RandomForest and its metrics per window length; writes sweep.json, sweep.md, sweep.png."""
    from train.feature_cache import build_feature_cache
    from train.models import check_featureset, train_model
    from train.train_cli import split_metrics

    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise InstrumentIdError(f"{out_dir}: exists and is not a folder")
    windows_seconds = tuple(sorted({float(w) for w in windows_seconds}))
    if not windows_seconds:
        raise InstrumentIdError("no window lengths to sweep")
    all_params = [AudioParams(window_seconds=w, hop_seconds=hop_seconds or w * HOP_FRACTION) for w in windows_seconds]
    rows = []
    for params in tqdm(all_params, desc="window lengths", unit="window", disable=None):
        path = cache_path(out_dir, params.window_seconds)
        features, report = build_feature_cache(data_dir, path, params, n_augment=n_augment, split=split, seed=seed,
                                               jobs=jobs, allow_missing=allow_missing)
        try:
            check_featureset(features)
        except InstrumentIdError as exc:
            raise InstrumentIdError(f"{path} ({params.window_seconds:g} s windows): {exc}") from None
        start = time.perf_counter()
        trained = train_model(features, "rf", seed=seed)
        train_seconds = time.perf_counter() - start
        metrics = split_metrics(trained, features)
        train_rows = features.split == "train"
        rows.append({
            "window_seconds": params.window_seconds, "hop_seconds": params.hop_seconds, "features_file": path.name,
            "features_reused": bool(report["reused"]), "feature_seconds": float(report["seconds"]),
            "n_train_windows": int(train_rows.sum()), "n_train_original": int((train_rows & (features.variant == 0)).sum()),
            "n_valid_windows": int((features.split == "valid").sum()), "n_test_windows": int((features.split == "test").sum()),
            "train_seconds": train_seconds,
            **{f"{s}_{key}": metrics[s][key] for s in ("valid", "test") for key in ("macro_f1", "mAP")},
        })
    result = {
        "corpus": str(Path(data_dir).resolve()), "model": "rf (train/models.py defaults)",
        "hop": f"{hop_seconds:g} s" if hop_seconds else f"{HOP_FRACTION:g} x window",
        "augment": n_augment, "split": split, "seed": seed,
        "train_seconds_covers": "train_model: standardize + PCA fit, RandomForest fit, thresholds on valid",
        "feature_seconds_covers": "this run's feature cache step (a reused cache costs only its loading)",
        "rows": rows,
    }
    write_text_atomic(out_dir / SWEEP_JSON, json.dumps(result, indent=2, allow_nan=False) + "\n")
    write_text_atomic(out_dir / SWEEP_MD, render_markdown(result))
    plot_sweep(result, out_dir / SWEEP_PNG)
    return result


def render_markdown(result: dict[str, Any]) -> str:
    """sweep.md: one table row per window length, the plot, and what the timings cover."""
    def fmt(value: Any, spec: str) -> str:
        return "n/a" if value is None else format(value, spec)

    lines = [
        "# Window-length sweep", "",
        f"Corpus {result['corpus']}; hop {result['hop']}; augment {result['augment']}; {result['split']} split; "
        f"seed {result['seed']}; model {result['model']}.", "",
        "| window s | hop s | train windows | valid windows | test windows | feature s | train s | "
        "valid macro-F1 | test macro-F1 | valid mAP | test mAP |",
        "|" + "---|" * 11,
    ]
    for r in result["rows"]:
        reused = " (reused)" if r["features_reused"] else ""
        lines.append(
            f"| {r['window_seconds']:g} | {r['hop_seconds']:g} | {r['n_train_windows']} | {r['n_valid_windows']} | "
            f"{r['n_test_windows']} | {r['feature_seconds']:.1f}{reused} | {r['train_seconds']:.2f} | "
            f"{fmt(r['valid_macro_f1'], '.3f')} | {fmt(r['test_macro_f1'], '.3f')} | {fmt(r['valid_mAP'], '.3f')} | "
            f"{fmt(r['test_mAP'], '.3f')} |"
        )
    lines += ["", f"![macro-F1 and train time per window length]({SWEEP_PNG})", "",
              f"Train seconds: {result['train_seconds_covers']}. Feature seconds: {result['feature_seconds_covers']}.",
              "Fewer, longer windows leave fewer validation and test windows, so their macro-F1 is noisier.", ""]
    return "\n".join(lines)


def plot_sweep(result: dict[str, Any], path: str | Path) -> None:
    """Macro-F1 (valid, test) on the left axis and RF train seconds on the right, against window length."""
    from matplotlib.figure import Figure  # the object API renders with Agg and touches no global pyplot state

    rows = result["rows"]
    windows = [r["window_seconds"] for r in rows]

    def column(key: str) -> list[float]:
        return [np.nan if r[key] is None else r[key] for r in rows]

    fig = Figure(figsize=(7.5, 4.5))
    ax = fig.add_subplot()
    ax.plot(windows, column("valid_macro_f1"), "o-", color="tab:blue", label="valid macro-F1")
    ax.plot(windows, column("test_macro_f1"), "s--", color="tab:orange", label="test macro-F1")
    ax.set_xlabel("window length (s)")
    ax.set_ylabel("macro-F1")
    ax.set_ylim(0.0, 1.0)
    ax.set_xticks(windows)
    ax.grid(alpha=0.3)
    ax_time = ax.twinx()
    ax_time.plot(windows, column("train_seconds"), "^:", color="tab:gray", label="RF train seconds")
    ax_time.set_ylabel("train seconds")
    ax_time.set_ylim(bottom=0.0)
    handles = ax.get_legend_handles_labels()[0] + ax_time.get_legend_handles_labels()[0]
    ax.legend(handles=handles, loc="lower right")
    ax.set_title(f"RandomForest per window length (hop {result['hop']}, augment {result['augment']})")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)


def add_parser(parser: argparse.ArgumentParser) -> None:
    """Arguments of `instrument-id sweep-window`."""
    parser.add_argument("--data", required=True, type=Path, help="corpus folder in the MusicNet layout")
    parser.add_argument("--out", required=True, type=Path, help="folder for the feature caches, sweep.json/.md/.png")
    parser.add_argument("--windows", type=float, nargs="+", default=list(DEFAULT_WINDOWS_SECONDS),
                        help="window lengths in seconds, each 1..12 (default 1 2 3 4 6 8 10 12)")
    parser.add_argument("--hop", type=float, default=None, help="fixed hop in seconds (default: half of each window)")
    parser.add_argument("--augment", type=int, default=0, help="augmented variants per train window, 0..9 (default 0)")
    parser.add_argument("--split", choices=("official", "stratified"), default="stratified")
    parser.add_argument("--allow-missing-instruments", action="store_true",
                        help="stratified split even when an instrument is in fewer than 3 recordings")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=-1, help="parallel feature workers (default: all cores)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")


def run(args: argparse.Namespace) -> int:
    """Sweep and print the table (or the JSON)."""
    if args.hop is not None and args.hop <= 0:
        raise InstrumentIdError(f"--hop must be positive, got {args.hop}")
    result = sweep_windows(args.data, args.out, tuple(args.windows), n_augment=args.augment, seed=args.seed,
                           hop_seconds=args.hop, split=args.split, jobs=args.jobs,
                           allow_missing=args.allow_missing_instruments)
    if args.json:
        print_json(result)
    else:
        print(render_markdown(result), end="")
        print(f"wrote {args.out / SWEEP_JSON}, {args.out / SWEEP_MD} and {args.out / SWEEP_PNG}")
    return 0
