"""`instrument-id features`: windows, labels, augmentation and a feature set's values of a corpus, computed once.

Work is per recording, in parallel (joblib), and each finished recording is kept in FILE.parts/ so an interrupted
or failed run resumes where it stopped; the final file is written atomically and reused only while its
configuration (audio params, augmentation, split, corpus fingerprint) matches.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import re
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
from joblib import Parallel, delayed
from tqdm import tqdm

from instrument_id.atomic import atomic_path
from instrument_id.audio import frame_windows
from instrument_id.errors import InstrumentIdError
from instrument_id.feature_sets import FeatureSetSpec
from instrument_id.params import AudioParams
from model_zoo.featureset import FeatureSet, load_featureset
from model_zoo.featurizers import default_params, featurize, spec_by_name
from train.augment import SETTINGS as AUGMENT_SETTINGS
from train.augment import augment_windows
from train.musicnet import TIMBRE_SOURCES_FILE, Recording, corpus_fingerprint, list_recordings, read_recording
from train.splits import official_split, recordings_per_instrument, stratified_split
from train.windows import window_labels, window_start_seconds

ARRAY_KEYS = ("X", "Y", "variant", "start_seconds")
# musicnet_metadata.csv source of a rendered recording; group 1 is its fonts field: 'A.sf2' or 'A.sf2+B.sf3'
SYNTH_SOURCE = re.compile(r"^instrument-id synth \(([^,]+),")


def corpus_timbre_sources(data_dir: str | Path) -> list[str] | None:
    """The timbre sources (soundfont files, patch sets, SFZ library folders) a rendered corpus's recordings used, from
    its metadata's source column; None for a corpus not rendered by `synth` (MusicNet itself)."""
    described = Path(data_dir) / TIMBRE_SOURCES_FILE  # written by synth: names an SFZ library's sample libraries
    if described.is_file():
        return sorted(json.loads(described.read_text(encoding="utf-8")))
    path = Path(data_dir) / "musicnet_metadata.csv"
    if not path.is_file():
        return None
    with open(path, newline="", encoding="utf-8") as handle:
        matches = [SYNTH_SOURCE.match(row.get("source") or "") for row in csv.DictReader(handle)]
    if not matches or not all(matches):
        return None
    return sorted({name for m in matches for name in m.group(1).split("+")} - {"no instrument"})


def split_recordings(recordings: list[Recording], mode: str, seed: int, allow_missing: bool) -> dict[str, str]:
    """{recording id: 'train'|'valid'|'test'} by the official MusicNet split or the stratified one."""
    if mode == "official":
        return official_split(recordings, seed=seed)
    if mode == "stratified":
        label_sets = {rec.id: rec.read_labels().class_set() for rec in recordings}
        return stratified_split(recordings, label_sets, seed=seed, allow_missing=allow_missing)
    raise InstrumentIdError(f"unknown split {mode!r}; use 'official' or 'stratified'")


def recording_window_audio(rec: Recording, split: str, params: AudioParams, n_augment: int,
                           seed: int) -> dict[str, np.ndarray]:
    """One recording's windows, labels, variant index and start time: "audio" (n*(1+k), samples) holds each original
    window followed by its k augmentations (train split only; k = 0 elsewhere), the other arrays one row per window."""
    y, labels = read_recording(rec, params)
    windows = frame_windows(y, params)  # (n, window_samples)
    Y = window_labels(labels, len(windows), params)  # (n, 11)
    starts = window_start_seconds(len(windows), params).astype(np.float32)
    k = n_augment if split == "train" else 0
    if k:
        rec_seed = int.from_bytes(hashlib.sha256(f"{seed}:{rec.id}".encode()).digest()[:4], "little")
        variants = augment_windows(windows, params.sample_rate_hz, rec_seed, n_variants=k, progress=False)
        audio = np.concatenate([windows[:, None, :], variants], axis=1).reshape(-1, windows.shape[1])  # (n*(1+k), samples)
    else:
        audio = windows
    return {
        "audio": audio,
        "Y": np.repeat(Y, 1 + k, axis=0),
        "variant": np.tile(np.arange(1 + k, dtype=np.int8), len(windows)),
        "start_seconds": np.repeat(starts, 1 + k),
    }


def recording_features(rec: Recording, split: str, params: AudioParams, spec: FeatureSetSpec, n_augment: int,
                       seed: int) -> dict[str, np.ndarray]:
    """One recording's windows -> feature values, labels, variant index and start time (augmented only in train)."""
    arrays = recording_window_audio(rec, split, params, n_augment, seed)
    return {"X": featurize(arrays.pop("audio"), params, spec), **arrays}


def _part_path(parts_dir: Path, rec: Recording, config_hash: str) -> Path:
    return parts_dir / f"{rec.id}-{config_hash}.npz"


def _compute_part(rec: Recording, split: str, params: AudioParams, spec: FeatureSetSpec, n_augment: int, seed: int,
                  path: Path) -> Path:
    """Compute one recording and keep it on disk (atomically) so a later run can resume."""
    arrays = recording_features(rec, split, params, spec, n_augment, seed)
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, **arrays)
    return path


def build_feature_cache(data_dir: str | Path, out: str | Path, params: AudioParams, n_augment: int = 9,
                        split: str = "stratified", seed: int = 0, jobs: int = -1, on_error: str = "stop",
                        allow_missing: bool = False, force: bool = False,
                        spec: FeatureSetSpec | None = None) -> tuple[FeatureSet, dict[str, Any]]:
    """Compute (or reuse) the feature cache of a MusicNet-layout corpus (seed26 unless spec says otherwise)."""
    spec = spec or spec_by_name("seed26")
    if not 0 <= n_augment <= 9:
        raise InstrumentIdError(f"--augment must be 0..9, got {n_augment}")
    if on_error not in ("stop", "skip"):
        raise InstrumentIdError(f"--on-error must be 'stop' or 'skip', got {on_error!r}")
    start_time = time.perf_counter()
    out = Path(out)
    recordings = list_recordings(data_dir)
    assignment = split_recordings(recordings, split, seed, allow_missing)
    config = {
        "params": params.to_dict(), "feature_set": spec.to_dict(), "augment": n_augment, "augment_settings": AUGMENT_SETTINGS, "split": split, "seed": seed,
        "corpus_fingerprint": corpus_fingerprint(data_dir, recordings), "corpus": str(Path(data_dir).resolve()),
        "timbre_sources": corpus_timbre_sources(data_dir),
    }
    # compared as stored: JSON turns the augmentation settings' tuples into lists
    matching = json.loads(json.dumps({k: v for k, v in config.items() if k not in ("corpus", "timbre_sources")}))
    if out.is_file() and not force:
        try:
            cached = load_featureset(out)
        except InstrumentIdError:
            cached = None
        if cached is not None and {k: cached.config.get(k) for k in matching} == matching:
            return cached, {"reused": True, "seconds": time.perf_counter() - start_time, "skipped": []}
    config_hash = hashlib.sha256(json.dumps(matching, sort_keys=True).encode()).hexdigest()[:12]
    parts_dir = out.with_name(out.name + ".parts")
    parts_dir.mkdir(parents=True, exist_ok=True)
    todo = [rec for rec in recordings if not _part_path(parts_dir, rec, config_hash).is_file()]
    skipped: list[tuple[str, str]] = []
    tasks = (delayed(_safe_part)(rec, assignment[rec.id], params, spec, n_augment, seed, _part_path(parts_dir, rec, config_hash))
             for rec in todo)
    results = Parallel(n_jobs=jobs, return_as="generator_unordered")(tasks)
    for rec_id, error in tqdm(results, total=len(todo), desc="features", unit="rec", disable=None):
        if error is not None:
            if on_error == "stop":
                raise InstrumentIdError(f"{error} (finished recordings are kept in {parts_dir}; rerun to resume)")
            skipped.append((rec_id, error))
    featureset = _assemble(recordings, assignment, parts_dir, config_hash, config, {rid for rid, _ in skipped})
    featureset.save(out)
    shutil.rmtree(parts_dir, ignore_errors=True)
    return featureset, {"reused": False, "seconds": time.perf_counter() - start_time, "skipped": skipped}


def _safe_part(rec: Recording, split: str, params: AudioParams, spec: FeatureSetSpec, n_augment: int, seed: int,
               path: Path):
    try:
        _compute_part(rec, split, params, spec, n_augment, seed, path)
        return rec.id, None
    except InstrumentIdError as exc:
        return rec.id, str(exc)


def _assemble(recordings: list[Recording], assignment: dict[str, str], parts_dir: Path, config_hash: str,
              config: dict[str, Any], skipped_ids: set[str]) -> FeatureSet:
    """Concatenate the per-recording parts in recording order into one FeatureSet."""
    columns: dict[str, list[np.ndarray]] = {key: [] for key in ARRAY_KEYS}
    split_col, recording_col = [], []
    for rec in recordings:
        if rec.id in skipped_ids:
            continue
        with np.load(_part_path(parts_dir, rec, config_hash), allow_pickle=False) as part:
            for key in ARRAY_KEYS:
                columns[key].append(part[key])
            n = len(part["X"])
        split_col.append(np.full(n, assignment[rec.id]))
        recording_col.append(np.full(n, rec.id))
    if not split_col:
        raise InstrumentIdError("no recording could be read; nothing to write")
    arrays = {key: np.concatenate(values) for key, values in columns.items()}
    return FeatureSet(split=np.concatenate(split_col), recording=np.concatenate(recording_col), config=config, **arrays)


def add_parser(parser: argparse.ArgumentParser) -> None:
    """Arguments of `instrument-id features`."""
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", help="corpus folder in the MusicNet layout")
    source.add_argument("--clips", type=Path, metavar="DIR",
                        help="a folder of labelled recordings instead (with --labels, the `evaluate --clips` format): "
                             "each clip's windows carry its labels; --split stratified splits by clip, or "
                             "train / valid / test puts every clip in that split")
    parser.add_argument("--labels", type=Path, metavar="CSV", help="with --clips: the labels CSV (file + 11 0/1 columns)")
    parser.add_argument("--out", required=True, help="feature cache file (.npz)")
    defaults = AudioParams()
    parser.add_argument("--window", type=float, default=defaults.window_seconds,
                        help="window seconds, 1..12 (default %(default)s)")
    parser.add_argument("--hop", type=float, default=defaults.hop_seconds, help="hop seconds (default %(default)s)")
    parser.add_argument("--min-presence", type=float, default=defaults.min_presence_seconds,
                        help="seconds an instrument must sound in a window (default %(default)s)")
    parser.add_argument("--augment", type=int, default=9, help="augmented variants per train window, 0..9 (default 9)")
    parser.add_argument("--split", choices=("official", "stratified", "train", "valid", "test"), default="stratified",
                        help="official MusicNet test set, or a recording-level split with every instrument in valid and "
                             "test; with --clips also train, valid or test (every clip in that split)")
    parser.add_argument("--feature-set", default="seed26", metavar="NAME",
                        help="seed26 (the 26 window means, default) or musicnn (the pretrained embedding's max_pool; "
                             "musicnn:max_pool+mean_pool concatenates outputs)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pca", type=int, default=None, metavar="K",
                        help="PCA components the models fit on these features, 0 for none "
                             "(default: 16 for seed26, 0 for musicnn: standardized embedding values)")
    parser.add_argument("--jobs", type=int, default=-1, help="parallel workers (default: all cores)")
    parser.add_argument("--on-error", choices=("stop", "skip"), default="stop",
                        help="stop at the first bad recording (default) or skip it and report it")
    parser.add_argument("--allow-missing-instruments", action="store_true",
                        help="stratified split even when an instrument is in fewer than 3 recordings")
    parser.add_argument("--force", action="store_true", help="recompute even when the cache matches")


def run(args: argparse.Namespace) -> int:
    """Build or reuse the cache and print what was done."""
    spec = spec_by_name(args.feature_set)
    fields = {} if args.pca is None else {"pca_components": args.pca}
    params = default_params(spec, window_seconds=args.window, hop_seconds=args.hop,
                            min_presence_seconds=args.min_presence, **fields)
    if args.clips is not None:
        return _run_clips(args, params, spec)
    if args.labels is not None:
        raise InstrumentIdError("--labels goes with --clips (a corpus folder has its own label files)")
    if args.split not in ("official", "stratified"):
        raise InstrumentIdError(f"--split {args.split} applies to --clips; a corpus splits 'official' or 'stratified'")
    featureset, report = build_feature_cache(
        args.data, args.out, params, n_augment=args.augment, split=args.split, seed=args.seed, jobs=args.jobs,
        on_error=args.on_error, allow_missing=args.allow_missing_instruments, force=args.force, spec=spec)
    verb = "reused" if report["reused"] else "wrote"
    print(f"{verb} {args.out}: {spec.label}, {len(featureset.X)} windows from {len(np.unique(featureset.recording))} recordings "
          f"in {report['seconds']:.1f} s")
    counts = recordings_per_instrument(
        {rid: s for rid, s in zip(featureset.recording, featureset.split)},
        {rid: set(np.flatnonzero(featureset.Y[featureset.recording == rid].any(axis=0))) for rid in np.unique(featureset.recording)})
    for split_name in ("train", "valid", "test"):
        mask = featureset.split == split_name
        print(f"  {split_name:5s}: {int(mask.sum()):6d} windows ({int((mask & (featureset.variant == 0)).sum())} original), "
              f"instruments in recordings: {counts[split_name].tolist()}")
    for rec_id, reason in report["skipped"]:
        print(f"  skipped {rec_id}: {reason}")
    return 0


def _run_clips(args: argparse.Namespace, params: AudioParams, spec: FeatureSetSpec) -> int:
    """features --clips: compute the labelled folder's cache and write it atomically."""
    from train.clip_cache import build_clip_cache

    if args.labels is None:
        raise InstrumentIdError("--clips needs --labels CSV (a 'file' column and one 0/1 column per instrument)")
    started = time.perf_counter()
    featureset = build_clip_cache(args.clips, args.labels, params, spec, split=args.split, seed=args.seed)
    featureset.save(args.out)
    splits, counts = np.unique(featureset.split, return_counts=True)
    print(f"wrote {args.out}: {spec.label}, {len(featureset.X)} windows from {len(np.unique(featureset.recording))} "
          f"clips ({', '.join(f'{s} {c}' for s, c in zip(splits, counts))}) in {time.perf_counter() - started:.1f} s")
    return 0
