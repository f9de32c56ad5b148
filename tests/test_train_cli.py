"""`instrument-id train`: trains and saves verified model folders; bad input exits 2 and writes nothing."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from instrument_id.cli import main
from instrument_id.instruments import column_names
from model_zoo import load_model
from model_zoo.featureset import FORMAT_VERSION, FeatureSet
from synthetic_features import make_featureset


@pytest.fixture(scope="module")
def features_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("features") / "features.npz"
    make_featureset(600, separation=5.0).save(path)
    return path


@pytest.fixture
def existing_out(tmp_path) -> Path:
    """An output folder holding an earlier model that a failed run must leave as it was."""
    out = tmp_path / "models"
    (out / "rf").mkdir(parents=True)
    (out / "rf" / "sentinel.txt").write_text("earlier model")
    return out


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _save_raw(path: Path, features: FeatureSet, X: np.ndarray) -> None:
    """A feature file as FeatureSet.save writes it, but with arbitrary features (FeatureSet itself refuses them)."""
    np.savez(
        path, X=X, Y=features.Y, split=features.split, recording=features.recording, variant=features.variant,
        start_seconds=features.start_seconds, config=np.array(json.dumps({"format_version": FORMAT_VERSION, **features.config})),
    )


def test_train_all_writes_one_verified_folder_per_model(features_file, tmp_path, capsys):
    out = tmp_path / "models"
    assert main(["train", "--features", str(features_file), "--model", "all", "--out", str(out), "--epochs", "2"]) == 0
    printed = capsys.readouterr().out
    assert "Total params: 121,931" in printed and "cumulative explained variance" in printed
    names = ["mlp", "rf", "dt", "lr", "knn", "gnb", "dummy"]
    assert all(f"{name}: macro-F1 valid" in printed for name in names)
    assert sorted(p.name for p in out.iterdir()) == sorted(names)
    models = {name: load_model(out / name) for name in names}
    assert {name: m.kind for name, m in models.items()} == {n: ("keras" if n == "mlp" else "sklearn") for n in names}
    assert models["mlp"].manifest["architecture"]["epochs_trained"] == 2
    rf = models["rf"]
    assert set(rf.metrics["splits"]) == {"train", "valid", "test"} and rf.metrics["threshold_source"] == "valid"
    assert rf.metrics["splits"]["test"]["macro_f1"] > 0.8
    assert [rf.metrics["thresholds"][c] for c in column_names()] == rf.pipeline.thresholds.tolist()
    assert rf.manifest["training_data"]["corpus_fingerprint"] == "synthetic-0-600"
    assert rf.manifest["architecture"]["params"]["n_estimators"] == 100


def _assert_refused(args: list[str], existing_out: Path, capsys, message: str) -> None:
    before = _snapshot(existing_out)
    assert main(["train", *args, "--out", str(existing_out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert _snapshot(existing_out) == before
    assert sorted(p.name for p in existing_out.iterdir()) == ["rf"]


def test_wrong_width_features_are_refused(tmp_path, existing_out, capsys):
    features = make_featureset(100)
    bad = tmp_path / "narrow.npz"
    _save_raw(bad, features, features.X[:, :25])
    _assert_refused(["--features", str(bad), "--model", "rf"], existing_out, capsys, f"{bad}: features must have shape (n, 26)")


def test_unknown_model_is_refused_listing_the_valid_ones(features_file, existing_out, capsys):
    _assert_refused(
        ["--features", str(features_file), "--model", "svm"], existing_out, capsys,
        "unknown model 'svm'; choose one of mlp, rf, dt, lr, knn, gnb, dummy",
    )


def test_label_never_positive_in_train_is_refused_naming_the_instrument(tmp_path, existing_out, capsys):
    features = make_featureset(300)
    Y = features.Y.copy()
    Y[features.split == "train", 7] = 0
    path = tmp_path / "no_oboe.npz"
    dataclasses.replace(features, Y=Y).save(path)
    _assert_refused(["--features", str(path), "--model", "all"], existing_out, capsys, "no training windows contain oboe(69)")


def test_missing_features_file_is_refused(tmp_path, existing_out, capsys):
    missing = tmp_path / "nowhere.npz"
    _assert_refused(["--features", str(missing), "--model", "rf"], existing_out, capsys, f"{missing}: feature file not found")


def test_bad_epochs_are_refused(features_file, existing_out, capsys):
    _assert_refused(["--features", str(features_file), "--model", "mlp", "--epochs", "0"], existing_out, capsys,
                    "--epochs must be at least 1")


def _corpus_of(tmp_path: Path, features: FeatureSet, kinds: list[set[str]]) -> tuple[Path, FeatureSet]:
    """A tiny MusicNet-layout corpus whose recordings are the cache's (rec0, rec1, ...), recording k rendered with
    kinds[k % len(kinds)], and the cache relabelled as made from it."""
    from conftest import make_musicnet_fixture
    from test_draw_study import synth_source
    from test_feature_study import write_metadata
    from train.musicnet import corpus_fingerprint

    ids = sorted({str(r) for r in features.recording}, key=lambda r: int(r[3:]))
    root = make_musicnet_fixture(tmp_path / "synth", [{"id": r, "split": "train", "seconds": 0.05} for r in ids])
    write_metadata(root, {r: synth_source(frozenset(kinds[int(r[3:]) % len(kinds)])) for r in ids})
    config = {**features.config, "corpus_fingerprint": corpus_fingerprint(root)}
    return root, dataclasses.replace(features, config=config)


def test_cross_source_thresholds_come_from_fits_without_each_source(tmp_path):
    from train.source_thresholds import out_of_source_predictions

    kinds = [{"A"}, {"B"}, {"C"}, {"A", "B"}]
    root, features = _corpus_of(tmp_path, make_featureset(600, separation=2.0, seed=5), kinds)
    features.save(tmp_path / "features.npz")
    out = tmp_path / "models"
    assert main(["train", "--features", str(tmp_path / "features.npz"), "--model", "lr", "--out", str(out),
                 "--thresholds", "cross-source", "--data", str(root), "--quiet"]) == 0
    model = load_model(out / "lr")
    assert model.metrics["threshold_source"] == "cross-source"
    assert model.metrics["cross_source"]["sources"] == ["A", "B", "C"]
    font_sets = [frozenset(kinds[int(str(r)[3:]) % 4]) for r in features.recording]
    expected = out_of_source_predictions(features, font_sets, "lr", seed=0).thresholds()
    np.testing.assert_array_equal(model.pipeline.thresholds, expected)
    assert model.metrics["cross_source"]["n_windows"] == 450  # recordings of one source alone: 3 in 4


def test_cross_source_needs_the_corpus_the_cache_was_made_from(tmp_path, features_file, capsys):
    out = tmp_path / "models"
    assert main(["train", "--features", str(features_file), "--model", "lr", "--out", str(out),
                 "--thresholds", "cross-source"]) == 2
    assert "needs --data" in capsys.readouterr().err
    root, _ = _corpus_of(tmp_path, make_featureset(600), [{"A"}, {"B"}])
    assert main(["train", "--features", str(features_file), "--model", "lr", "--out", str(out),
                 "--thresholds", "cross-source", "--data", str(root)]) == 2
    assert "was made from corpus synthetic-0-600, but --data" in capsys.readouterr().err
    assert not out.exists()
