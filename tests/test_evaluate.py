"""`instrument-id evaluate`: report files, figures equal to sklearn on the same predictions, clip folders, bad input."""

from __future__ import annotations

import csv
import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from sklearn.decomposition import PCA
from sklearn.metrics import accuracy_score, average_precision_score, f1_score, hamming_loss, precision_recall_fscore_support
from sklearn.preprocessing import StandardScaler

from instrument_id.audio import frame_windows, load_mono
from instrument_id.cli import main
from instrument_id.features import compute_features
from instrument_id.instruments import column_names
from model_zoo import load_model
from model_zoo.featureset import FORMAT_VERSION, FeatureSet, load_featureset
from synthetic_features import make_featureset

REAL_DEV = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "real-dev"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
META_HEADER = ["file", "medley_subset", "medley_instrument", "seconds", "sample_rate"]


def _with_augmented_train(features: FeatureSet) -> FeatureSet:
    """Add a noisy variant-1 copy of every train window, as the feature cache does, so 'originals only' is tested."""
    train = features.split == "train"
    rng = np.random.default_rng(1)
    X_aug = features.X[train] + rng.normal(0, 2.0, size=features.X[train].shape).astype(np.float32)
    return dataclasses.replace(
        features, X=np.concatenate([features.X, X_aug]), Y=np.concatenate([features.Y, features.Y[train]]),
        split=np.concatenate([features.split, features.split[train]]),
        recording=np.concatenate([features.recording, features.recording[train]]),
        variant=np.concatenate([features.variant, np.ones(int(train.sum()), dtype=np.int8)]),
        start_seconds=np.concatenate([features.start_seconds, features.start_seconds[train]]),
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[str, Path]:
    """A feature file and a folder of rf, dummy and a 2-epoch mlp trained on it by `instrument-id train`."""
    root = tmp_path_factory.mktemp("evaluate")
    features_file = root / "features.npz"
    _with_augmented_train(make_featureset(400, separation=5.0)).save(features_file)
    models = root / "models"
    for name in ("rf", "dummy", "mlp"):
        args = ["train", "--features", str(features_file), "--model", name, "--out", str(models), "--quiet"]
        assert main([*args, "--epochs", "2"] if name == "mlp" else args) == 0
    return {"features": features_file, "models": models}


def _evaluate_json(args: list[str], capsys) -> dict:
    capsys.readouterr()
    assert main(["evaluate", *args, "--json", "--timing-runs", "1"]) == 0
    return json.loads(capsys.readouterr().out)


def _expected(Y: np.ndarray, D: np.ndarray, P: np.ndarray) -> dict:
    """The headline figures straight from sklearn."""
    present = np.flatnonzero(Y.sum(axis=0) > 0)
    return {
        "macro_f1": f1_score(Y, D, labels=present, average="macro", zero_division=0),
        "micro_f1": f1_score(Y, D, average="micro", zero_division=0),
        "mAP": np.mean([average_precision_score(Y[:, j], P[:, j]) for j in present]),
        "subset_accuracy": accuracy_score(Y, D),
        "hamming_accuracy": 1.0 - hamming_loss(Y, D),
    }


def _assert_figures(got: dict, Y: np.ndarray, D: np.ndarray, P: np.ndarray) -> None:
    for key, value in _expected(Y, D, P).items():
        assert got[key] == pytest.approx(value, abs=1e-9), key
    precision, recall, f1, support = precision_recall_fscore_support(Y, D, average=None, zero_division=0)
    for j, column in enumerate(column_names()):
        entry = got["per_instrument"][column]
        assert entry["support"] == support[j] and entry["predicted_positives"] == D[:, j].sum()
        if support[j] == 0:
            assert entry["f1"] is None and entry["recall"] is None and entry["average_precision"] is None
        else:
            assert (entry["precision"], entry["recall"], entry["f1"]) == pytest.approx((precision[j], recall[j], f1[j]))
    none = Y.sum(axis=1) == 0
    if none.any():
        assert got["no_instrument_rows"]["predicted_nothing_fraction"] == pytest.approx((~D[none].any(axis=1)).mean())


def test_features_report_matches_sklearn_on_the_same_predictions(trained, tmp_path, capsys):
    out = tmp_path / "report"
    figures = _evaluate_json(["--model", str(trained["models"]), "--features", str(trained["features"]),
                              "--out", str(out)], capsys)
    assert list(figures["models"]) == ["mlp", "rf", "dummy"]  # train's order, whatever the folder listing
    assert json.loads((out / "report.json").read_text()) == figures
    for name in ("pr_curves_test.png", "pca_explained_variance.png", "reliability.png"):
        assert (out / name).read_bytes().startswith(PNG_MAGIC)
    features = load_featureset(trained["features"])
    for label, entry in figures["models"].items():
        model = load_model(trained["models"] / label)
        assert entry["same_data_as_training"] and entry["version"] == model.version
        for split in ("train", "valid", "test"):
            X, Y = features.subset(split, originals_only=True)
            P, D = model.predict_features(X)
            assert entry["splits"][split]["n_windows"] == len(X)
            _assert_figures(entry["splits"][split], Y, D, P)
        assert entry["predict_test_split_ms"] > 0 and entry["latency_ms_per_clip"] > 0 and entry["features_ms_per_clip"] > 0
    assert figures["source"]["n_windows"]["train"] == int(((features.split == "train") & (features.variant == 0)).sum())
    X_train, _ = features.subset("train", originals_only=True)
    ratio = PCA().fit(StandardScaler().fit_transform(X_train)).explained_variance_ratio_
    assert figures["pca"]["variance_kept_percent"] == pytest.approx(100 * ratio[:16].sum())
    assert figures["pca"]["information_lost_percent"] == pytest.approx(100 * (1 - ratio[:16].sum()))
    report = (out / "report.md").read_text()
    test_f1 = figures["models"]["rf"]["splits"]["test"]["macro_f1"]
    assert f"| rf | " in report and f"{test_f1:.3f}" in report and "subset acc. test" in report


def test_single_model_folder_reports_beside_it_and_stays_verifiable(trained, tmp_path, capsys):
    models = tmp_path / "models"
    for name in ("rf", "dummy"):
        shutil.copytree(trained["models"] / name, models / name)
    assert main(["evaluate", "--model", str(models / "rf"), "--features", str(trained["features"]),
                 "--timing-runs", "1"]) == 0
    assert "rf: macro-F1 train" in capsys.readouterr().out
    assert sorted(p.name for p in (models / "report").iterdir()) == [
        "pca_explained_variance.png", "pr_curves_test.png", "reliability.png", "report.json", "report.md"]
    load_model(models / "rf")  # no report file landed inside the model folder
    figures = _evaluate_json(["--model", str(models), "--features", str(trained["features"])], capsys)
    assert list(figures["models"]) == ["rf", "dummy"]  # the report/ folder is not taken for a model


def _write_clips(folder: Path, rows: list[tuple[str, int, int, float, list[int]]]) -> Path:
    """Write (file, sample_rate_hz, channels, seconds, 11 labels) clips as noisy chords; return the labels CSV."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    with open(folder / "labels.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([*META_HEADER, *column_names()])
        for i, (name, rate_hz, channels, seconds, labels) in enumerate(rows):
            t = np.arange(int(rate_hz * seconds)) / rate_hz
            pitch_hz = 220.0 * 2.0 ** ((7 * i + 5 * np.floor(t / 0.7)) % 24 / 12)  # (samples,) a new note every 0.7 s
            loudness = np.where(t < 1.0, 0.05, 0.3)  # later windows louder than the first
            y = loudness * np.sin(2 * np.pi * np.cumsum(pitch_hz) / rate_hz) + 0.02 * rng.normal(size=len(t))
            sf.write(folder / name, np.repeat(y[:, None], channels, axis=1), rate_hz)
            writer.writerow([name, "test", "tone", seconds, rate_hz, *labels])
    return folder / "labels.csv"


def _one_hot(*indices: int) -> list[int]:
    return [int(j in indices) for j in range(11)]


CLIPS = [
    ("a.wav", 44100, 1, 3.0, _one_hot(0)),
    ("b.flac", 16000, 2, 1.2, _one_hot(2)),  # shorter than the 2 s window
    ("c.wav", 22050, 2, 5.5, _one_hot(0, 2)),
    ("d.flac", 48000, 1, 2.0, _one_hot()),  # none of the 11 instruments
    ("e.wav", 8000, 1, 4.0, _one_hot(10)),
]


def test_clips_are_scored_by_their_highest_window(trained, tmp_path, capsys):
    labels = _write_clips(tmp_path / "clips", CLIPS)
    sf.write(tmp_path / "clips" / "unlisted.wav", np.zeros(1000), 8000)  # not in the CSV: ignored
    out = tmp_path / "report"
    figures = _evaluate_json(["--model", str(trained["models"]), "--clips", str(tmp_path / "clips"),
                              "--labels", str(labels), "--out", str(out)], capsys)
    Y = np.array([row[4] for row in CLIPS])
    assert figures["source"]["n_clips"] == len(CLIPS) and figures["source"]["n_clips_no_instrument"] == 1
    with open(out / "predictions.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(CLIPS) * 3 and {r["file"] for r in rows} == {row[0] for row in CLIPS}
    for label, entry in figures["models"].items():
        model = load_model(trained["models"] / label)
        P = np.stack([
            model.predict_proba_features(
                compute_features(frame_windows(load_mono(tmp_path / "clips" / row[0], model.params), model.params),
                                 model.params)).max(axis=0)
            for row in CLIPS
        ])  # (5, 11)
        _assert_figures(entry["splits"]["clips"], Y, model.pipeline.decide(P), P)
        assert entry["splits"]["clips"]["per_instrument"]["viola(42)"]["f1"] is None
        written = np.array([[float(r[c]) for c in column_names()] for r in rows if r["model"] == label])  # (5, 11)
        np.testing.assert_allclose(written, P, atol=6e-5)
    assert (out / "pr_curves_clips.png").read_bytes().startswith(PNG_MAGIC)
    assert "| viola(42) | 0 | n/a |" in (out / "report.md").read_text()


def test_models_are_labelled_by_their_folder_and_keep_their_kind(trained, tmp_path, capsys):
    models = tmp_path / "models"
    shutil.copytree(trained["models"] / "mlp", models / "studio-head")  # trained as mlp, named by its folder
    shutil.copytree(trained["models"] / "rf", models / "rf")
    labels = _write_clips(tmp_path / "clips", CLIPS[:3])
    out = tmp_path / "report"
    assert main(["evaluate", "--model", str(models / "studio-head"), str(models / "rf"), "--clips",
                 str(tmp_path / "clips"), "--labels", str(labels), "--out", str(out), "--timing-runs", "1"]) == 0
    assert "studio-head: macro-F1 clips" in capsys.readouterr().out
    figures = json.loads((out / "report.json").read_text())
    assert {label: (e["name"], e["model_kind"], e["kind"]) for label, e in figures["models"].items()} == {
        "studio-head": ("studio-head", "mlp", "keras"), "rf": ("rf", "rf", "sklearn")}
    with open(out / "predictions.csv", newline="") as handle:
        assert {row["model"] for row in csv.DictReader(handle)} == {"studio-head", "rf"}
    assert "### studio-head (mlp, keras, version" in (out / "report.md").read_text()


def _save_raw(path: Path, features: FeatureSet, X: np.ndarray) -> None:
    """A feature file as FeatureSet.save writes it, but with arbitrary features (FeatureSet itself refuses them)."""
    np.savez(
        path, X=X, Y=features.Y, split=features.split, recording=features.recording, variant=features.variant,
        start_seconds=features.start_seconds,
        config=np.array(json.dumps({"format_version": FORMAT_VERSION, **features.config})),
    )


def _bad_input(case: str, trained: dict[str, Path], tmp: Path) -> tuple[list[str], str]:
    """(evaluate arguments, expected error text) for one kind of bad input."""
    models, features = str(trained["models"]), ["--features", str(trained["features"])]
    if case == "missing model":
        return ["--model", str(tmp / "nowhere"), *features], f"{tmp / 'nowhere'}: no model folder here"
    if case == "altered model":
        shutil.copytree(trained["models"] / "rf", tmp / "rf")
        data = bytearray((tmp / "rf" / "model.skops").read_bytes())
        data[len(data) // 2] ^= 0xFF
        (tmp / "rf" / "model.skops").write_bytes(bytes(data))
        return ["--model", str(tmp / "rf"), *features], f"{tmp / 'rf' / 'model.skops'}: altered"
    if case == "wrong width":
        source = make_featureset(100)
        _save_raw(tmp / "narrow.npz", source, source.X[:, :25])
        return ["--model", models, "--features", str(tmp / "narrow.npz")], "features must have shape (n, 26)"
    if case == "empty split":
        source = make_featureset(100)
        keep = source.split != "valid"
        sliced = {f.name: getattr(source, f.name)[keep] for f in dataclasses.fields(source) if f.name != "config"}
        FeatureSet(**sliced, config=source.config).save(tmp / "novalid.npz")
        return ["--model", models, "--features", str(tmp / "novalid.npz")], f"{tmp / 'novalid.npz'}: the valid split is empty"
    if case == "no clips dir":
        labels = _write_clips(tmp / "clips", CLIPS[:1])
        return ["--model", models, "--clips", str(tmp / "none"), "--labels", str(labels)], "clips folder not found"
    labels = _write_clips(tmp / "clips", CLIPS[:2])
    text = labels.read_text()
    clips = ["--model", models, "--clips", str(tmp / "clips"), "--labels", str(labels)]
    if case == "no instrument columns":
        labels.write_text(text.replace(",viola(42)", ",viola").replace(",horn(61)", ",horn"))
        return clips, f"{labels}: missing column(s) viola(42), horn(61)"
    if case == "bad label value":
        lines = text.splitlines()
        lines[2] = lines[2][: lines[2].rindex(",")] + ",yes"
        labels.write_text("\n".join(lines) + "\n")
        return clips, f"{labels} line 3: column flute(74) must be 0 or 1, got 'yes'"
    if case == "missing audio file":
        (tmp / "clips" / "b.flac").unlink()
        return clips, f"{tmp / 'clips' / 'b.flac'}: missing audio file (listed in {labels} line 3)"
    if case == "clips without labels":
        return ["--model", models, "--clips", str(tmp / "clips")], "--clips and --labels go together"
    assert case == "report inside a model folder"
    shutil.copytree(trained["models"] / "rf", tmp / "rf")
    return ["--model", str(tmp / "rf"), *features, "--out", str(tmp / "rf" / "report")], "inside model folder"


@pytest.mark.parametrize("case", [
    "missing model", "altered model", "wrong width", "empty split", "no clips dir", "no instrument columns",
    "bad label value", "missing audio file", "clips without labels", "report inside a model folder",
])
def test_bad_input_is_one_line_exit_2_and_nothing_written(trained, tmp_path, capsys, case):
    args, message = _bad_input(case, trained, tmp_path)
    out = tmp_path / "report"
    out.mkdir()
    (out / "report.md").write_text("earlier report")
    capsys.readouterr()
    out_args = [] if "--out" in args else ["--out", str(out)]
    assert main(["evaluate", *args, *out_args, "--timing-runs", "1"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and len(captured.err.strip().splitlines()) == 1 and message in captured.err, captured.err
    assert [p.name for p in out.iterdir()] == ["report.md"] and (out / "report.md").read_text() == "earlier report"
    assert not (tmp_path / "rf" / "report").exists()


@pytest.mark.skipif(not REAL_DEV.is_dir(), reason="real-dev recordings (../shared/data/real-dev) are not here")
def test_real_dev_clips_are_all_scored(trained, tmp_path, capsys):
    folder = REAL_DEV / "medley-solos-db"
    with open(folder / "labels.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    figures = _evaluate_json(["--model", str(trained["models"] / "rf"), "--clips", str(folder),
                              "--labels", str(folder / "labels.csv"), "--out", str(tmp_path / "report")], capsys)
    none = sum(all(r[c] == "0" for c in column_names()) for r in rows)
    assert len(rows) == 97 and figures["source"]["n_clips"] == 97 and figures["source"]["n_clips_no_instrument"] == none
    clips = figures["models"]["rf"]["splits"]["clips"]
    assert clips["n_windows"] == 97 and clips["no_instrument_rows"]["n"] == none
    with open(tmp_path / "report" / "predictions.csv", newline="") as handle:
        assert len(list(csv.DictReader(handle))) == 97
