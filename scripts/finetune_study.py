"""Fine-tune musicnn's mid end with the head, or keep it frozen: which names real notes better? (issue 23, item 5)

A study, not a product command (docs/results.md has its table). Both arms see the same windows: a seeded sample of
the soundfont and real-note corpora. The frozen arm trains the shipped head on the pooled embedding; the fine-tuned
arm trains the same head together with the mid end's three convolutions (cnn1..cnn3, from the converted MTT_musicnn
weights; their batch norms stay in inference mode), on the front end's frames, which are computed once. As in
scripts/head_study.py, the held-out real-note corpus is cut in two halves by recording: half A chooses early stopping
and the thresholds, half B scores.

    .venv/bin/python scripts/finetune_study.py --soundfonts data/synth --real data/synth-real \
        --real-valid data/synth-real-valid --out runs/finetune-study
    .venv/bin/python scripts/finetune_study.py --out runs/finetune-study --arms frozen:1e-3 fine-tuned:3e-4 \
        --judge-clips ../shared/data/real-dev/medley-solos-db --labels ../shared/data/real-dev/medley-solos-db/labels.csv
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from instrument_id.atomic import write_text_atomic  # noqa: E402
from instrument_id.logmel import LogMelParams, log_mel  # noqa: E402
from model_zoo.embedding import load_keras_network  # noqa: E402
from model_zoo.featurizers import default_params, musicnn_spec  # noqa: E402
from train.feature_cache import recording_window_audio  # noqa: E402
from train.evaluate import scored_metrics  # noqa: E402
from train.models import choose_thresholds  # noqa: E402
from train.musicnet import list_recordings  # noqa: E402
from instrument_id.instruments import column_names  # noqa: E402
from library_study import HARPSICHORD  # noqa: E402 (no real harpsichord: left out of the real-note scores)

MID_END = ("cnn1", "cnn2", "cnn3")


def front_end_frames(corpus: Path, share: float, seed: int, network) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A seeded share of corpus's windows -> (front-end frames (n, T, 561) float16, labels (n, 11), recording ids)."""
    import keras

    spec = musicnn_spec()
    params = default_params(spec)
    logmel_params = LogMelParams.from_dict(spec.settings["logmel"])
    front = keras.Model(network.input, network.get_layer("front_end").output)
    rng = np.random.default_rng(seed)
    frames, labels, ids = [], [], []
    for rec in tqdm(list_recordings(corpus), desc=f"front end of {corpus.name}", unit="recording"):
        arrays = recording_window_audio(rec, "valid", params, 0, seed)  # (n, samples): no augmentation
        keep = rng.random(len(arrays["audio"])) < share
        if not keep.any():
            continue
        mel = log_mel(arrays["audio"][keep], logmel_params)  # (k, T, 96)
        frames.append(np.asarray(front.predict(mel, batch_size=64, verbose=0), dtype=np.float16))  # (k, T, 561)
        labels.append(arrays["Y"][keep])
        ids += [rec.id] * int(keep.sum())
    return np.concatenate(frames), np.concatenate(labels).astype(np.float32), np.array(ids)


def mid_end_pooled(network, width: int, fine_tune: bool):
    """(frames input (batch, T, width), pooled (batch, 1506)): network's mid end (its layers, trainable or not),
    then max_pool and mean_pool over time, as the shipped embedding's max_pool+mean_pool."""
    import keras
    from keras import layers

    frames = keras.Input((None, width), name="front_end_frames")
    mid, previous = [], frames
    for index, name in enumerate(MID_END):
        conv, norm = network.get_layer(f"{name}_conv"), network.get_layer(f"{name}_norm")
        conv.trainable, norm.trainable = fine_tune, False  # a frozen batch norm runs in inference mode
        x = norm(conv(previous))
        previous = x if index == 0 else layers.Add()([x, previous])  # (b, T, 64)
        mid.append(previous)
    features = layers.Concatenate()([frames, *mid])  # (b, T, 753)
    pooled = layers.Concatenate()([layers.GlobalMaxPooling1D()(features), layers.GlobalAveragePooling1D()(features)])
    return frames, pooled  # (b, 1506)


def build(network, width: int, mean: np.ndarray, scale: np.ndarray, fine_tune: bool):
    """(batch, T, 561) front-end frames -> mid end -> pooled -> standardize (fixed) -> the shipped head's MLP."""
    import keras
    from keras import layers

    from train.mlp import MlpArch

    frames, pooled = mid_end_pooled(network, width, fine_tune)
    x = layers.Normalization(mean=mean, variance=scale ** 2)(pooled)  # (b, 1506)
    arch = MlpArch()
    for units in arch.hidden_units:
        x = layers.Dropout(arch.dropout)(layers.Dense(units, activation="relu")(x))
    return keras.Model(frames, layers.Dense(11, activation="sigmoid")(x))


def pooled_embedding(network, frames) -> np.ndarray:
    """Batches of (n, T, 561) front-end frames -> (n, 1506) max_pool + mean_pool through the pretrained mid end."""
    import keras

    inputs, pooled = mid_end_pooled(network, 561, fine_tune=False)
    return np.asarray(keras.Model(inputs, pooled).predict(frames, verbose=0))


def batches(X: np.ndarray, Y: np.ndarray, batch_size: int, shuffle_seed: int | None):
    """A keras PyDataset slicing (n, T, 561) float16 frames into float32 batches: model.fit on the whole array
    copies it into tensors (the first run of this study was killed for memory at 23.7 GB)."""
    import keras

    class Batches(keras.utils.PyDataset):
        def __init__(self) -> None:
            super().__init__()
            self.order = np.arange(len(X))
            self.rng = np.random.default_rng(shuffle_seed)
            self.on_epoch_end()

        def __len__(self) -> int:
            return -(-len(X) // batch_size)

        def __getitem__(self, index: int):
            rows = np.sort(self.order[index * batch_size:(index + 1) * batch_size])
            return X[rows].astype(np.float32), Y[rows]  # (b, T, 561), (b, 11)

        def on_epoch_end(self) -> None:
            if shuffle_seed is not None:
                self.rng.shuffle(self.order)

    return Batches()


def fit(model, train, valid, learning_rate: float, epochs: int, patience: int, seed: int) -> dict:
    """Train with the shipped head's loss and early stopping (validation AUC-PR), restoring the best epoch."""
    import keras

    from train.mlp import WeightedBinaryCrossentropy, auc_pr_metric, early_stopping, positive_weights, seed_everything

    seed_everything(seed)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
                  loss=WeightedBinaryCrossentropy(positive_weights(train[1]).tolist()), metrics=[auc_pr_metric(valid[1])])
    history = model.fit(batches(*train, 128, seed), validation_data=batches(*valid, 256, None), epochs=epochs,
                        callbacks=[early_stopping(patience)], verbose=2)
    auc = history.history["val_auc_pr"]
    return {"epochs": len(auc), "best_epoch": int(np.argmax(auc)) + 1, "half_a_auc_pr": float(np.max(auc))}


def score(P_a: np.ndarray, Y_a: np.ndarray, P_b: np.ndarray, Y_b: np.ndarray) -> dict:
    """Thresholds from half A; macro-F1 and mAP over the real instruments present in half B, and its quiet share."""
    thresholds = choose_thresholds(Y_a, P_a)
    m = scored_metrics(Y_b, (P_b >= thresholds).astype(np.int8), P_b)
    per = m["per_instrument"]
    keep = [c for j, c in enumerate(column_names()) if j != HARPSICHORD and per[c]["support"] > 0]
    return {"macro_f1": float(np.mean([per[c]["f1"] for c in keep])),
            "mAP": float(np.mean([per[c]["average_precision"] for c in keep])),
            "quiet": m["no_instrument_rows"]["predicted_nothing_fraction"],
            "per_instrument_f1": {c: round(per[c]["f1"], 3) for c in keep}}


def judge_clips(out: Path, arms: list[str], clips_dir: Path, labels_csv: Path) -> int:
    """Each saved arm on labelled clips, as `evaluate --clips` scores a model: a clip's probability per instrument is
    its highest window's, its decision that window's against the arm's half-A thresholds."""
    import keras

    from instrument_id.audio import frame_windows, load_mono
    from train.clips import read_labels

    spec = musicnn_spec()
    params, logmel_params = default_params(spec), LogMelParams.from_dict(spec.settings["logmel"])
    network, _manifest = load_keras_network()
    front = keras.Model(network.input, network.get_layer("front_end").output)
    clips = read_labels(labels_csv, clips_dir)
    frames = [front.predict(log_mel(frame_windows(load_mono(p, params), params), logmel_params), verbose=0)
              for p in tqdm(clips.paths, desc="clip front end", unit="clip")]  # per clip (n_windows, T, 561)
    rows = {}
    for arm in arms:
        kind, lr = arm.split(":")
        model = keras.saving.load_model(out / f"{kind}-{float(lr):g}.keras", compile=False)
        thresholds = np.array(json.loads((out / f"{kind}-{float(lr):g}.thresholds.json").read_text()))
        P = np.stack([model.predict(f, verbose=0).max(axis=0) for f in frames])  # (n_clips, 11)
        m = scored_metrics(clips.Y, P >= thresholds, P)
        per = m["per_instrument"]
        rows[arm] = {"macro_f1": m["macro_f1"], "mAP": m["mAP"], "ece": m["ece"],
                     "quiet": m["no_instrument_rows"]["predicted_nothing_fraction"],
                     "f1": {c: round(per[c]["f1"], 3) for c in per if per[c]["support"] > 0},
                     "ap": {c: round(per[c]["average_precision"], 3) for c in per if per[c]["support"] > 0}}
        print(arm, json.dumps(rows[arm]), flush=True)
    write_text_atomic(out / f"judged-{clips_dir.name}.json", json.dumps(rows, indent=1) + "\n")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--soundfonts", type=Path)
    parser.add_argument("--real", type=Path)
    parser.add_argument("--real-valid", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--share", type=float, default=0.4, help="share of each training corpus's windows (0.4)")
    parser.add_argument("--valid-share", type=float, default=1.0, help="share of the held-out corpus's windows")
    parser.add_argument("--arms", nargs="+", default=["frozen:1e-3", "fine-tuned:3e-4", "fine-tuned:1e-4"],
                        help="ARM:LEARNING_RATE, ARM frozen or fine-tuned (default frozen:1e-3 fine-tuned:3e-4 "
                             "fine-tuned:1e-4)")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--patience", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--judge-clips", type=Path, help="instead of training: judge the saved --arms on this folder "
                        "of labelled clips (with --labels), once")
    parser.add_argument("--labels", type=Path)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.judge_clips:
        return judge_clips(args.out, args.arms, args.judge_clips, args.labels)
    network, _manifest = load_keras_network()
    cache = args.out / f"front_end_frames-{args.share:g}-{args.valid_share:g}-{args.seed}.npz"
    if cache.is_file():  # the front end is most of the work: computed once per share and seed
        with np.load(cache) as stored:
            parts = [(stored[f"X{k}"], stored[f"Y{k}"], stored[f"ids{k}"]) for k in range(3)]
    else:
        parts = [front_end_frames(c, s, args.seed + k, network) for k, (c, s) in
                 enumerate(((args.soundfonts, args.share), (args.real, args.share), (args.real_valid, args.valid_share)))]
        partial = cache.with_suffix(".partial.npz")
        np.savez(partial, **{f"{name}{k}": array for k, part in enumerate(parts)
                             for name, array in zip(("X", "Y", "ids"), part)})
        partial.replace(cache)
    X_train = np.concatenate([parts[0][0], parts[1][0]])  # (n, T, 561) float16
    Y_train = np.concatenate([parts[0][1], parts[1][1]])
    X_valid, Y_valid, ids = parts[2]
    in_a = np.isin(ids, sorted(set(ids))[0::2])
    print(f"windows: train {len(X_train)} (soundfonts {len(parts[0][0])}, real {len(parts[1][0])}), "
          f"half A {int(in_a.sum())}, half B {int((~in_a).sum())}", flush=True)
    pooled_train = pooled_embedding(network, batches(X_train, Y_train, 256, None))
    mean, scale = pooled_train.mean(axis=0), np.maximum(pooled_train.std(axis=0), 1e-6)
    table = args.out / "finetune_study.json"
    rows: dict[str, dict] = json.loads(table.read_text()) if table.is_file() else {}  # arms run before are kept
    for arm in args.arms:
        kind, lr = arm.split(":")
        fine_tune, lr = kind == "fine-tuned", float(lr)
        name = f"{'fine-tuned mid end' if fine_tune else 'frozen (shipped recipe)'}, Adam {lr:g}"
        network, _manifest = load_keras_network()  # fresh pretrained weights for every arm
        model = build(network, X_train.shape[2], mean, scale, fine_tune)
        record = fit(model, (X_train, Y_train), (X_valid[in_a], Y_valid[in_a]), lr, args.epochs, args.patience,
                     args.seed)
        P_a = model.predict(batches(X_valid[in_a], Y_valid[in_a], 256, None), verbose=0)
        P_b = model.predict(batches(X_valid[~in_a], Y_valid[~in_a], 256, None), verbose=0)
        rows[name] = {**record, "trainable_params": int(sum(np.prod(w.shape) for w in model.trainable_weights)),
                      **score(P_a, Y_valid[in_a], P_b, Y_valid[~in_a])}
        model.save(args.out / f"{kind}-{lr:g}.keras")  # judged on labelled clips with --judge-clips
        write_text_atomic(args.out / f"{kind}-{lr:g}.thresholds.json",
                          json.dumps(choose_thresholds(Y_valid[in_a], P_a).tolist()) + "\n")
        print(name, json.dumps({k: v for k, v in rows[name].items() if k != "per_instrument_f1"}), flush=True)
        write_text_atomic(table, json.dumps(rows, indent=1) + "\n")
    lines = ["| arm | trainable parameters | best epoch | half B macro-F1 (10) | mAP | quiet |", "|---|---|---|---|---|---|"]
    lines += [f"| {n} | {r['trainable_params']:,} | {r['best_epoch']} | {r['macro_f1']:.3f} | {r['mAP']:.3f} | "
              f"{r['quiet']:.2f} |" for n, r in rows.items()]
    write_text_atomic(args.out / "finetune_study.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
