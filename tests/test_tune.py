"""`instrument-id tune` and `instrument-id sweep-window` on tiny synthetic data: reports, zoo folders, valid-only selection."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from instrument_id.cli import main
from model_zoo import load_model
from model_zoo.featureset import FeatureSet, load_featureset
from synthetic_features import make_featureset
from train.tune import RF_GRID

RF_ARGS = ["--n-iter", "2", "--seed", "43"]  # seed 43 draws two 100-tree candidates, the grid's cheapest
MLP_ARGS = ["--max-trials", "2", "--max-epochs", "2"]


@pytest.fixture(scope="module")
def features() -> FeatureSet:
    return make_featureset(600, separation=3.0)


def _save(features: FeatureSet, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    features.save(folder / "features.npz")
    return folder / "features.npz"


def _with_test_labels_permuted(features: FeatureSet) -> FeatureSet:
    """The same features with the test rows' labels shuffled among themselves: train and valid are untouched."""
    Y = features.Y.copy()
    test_rows = np.flatnonzero(features.split == "test")
    Y[test_rows] = Y[np.random.default_rng(1).permutation(test_rows)]
    return dataclasses.replace(features, Y=Y)


def _tune_both(features: FeatureSet, folder: Path) -> tuple[Path, dict, str]:
    """`tune rf` then `tune mlp` into one folder through the CLI: (folder, tuning.json, what they printed)."""
    features_file, out, printed = _save(features, folder), folder / "tune", io.StringIO()
    with contextlib.redirect_stdout(printed):
        for model, extra in (("rf", RF_ARGS), ("mlp", MLP_ARGS)):
            assert main(["tune", model, "--features", str(features_file), "--out", str(out), *extra]) == 0
    return out, json.loads((out / "tuning.json").read_text()), printed.getvalue()


@pytest.fixture(scope="module")
def tuned(features, tmp_path_factory):
    return _tune_both(features, tmp_path_factory.mktemp("tuned"))


@pytest.fixture(scope="module")
def tuned_permuted(features, tmp_path_factory):
    return _tune_both(_with_test_labels_permuted(features), tmp_path_factory.mktemp("permuted"))


def _valid_objective_of_saved(model_dir: Path, features: FeatureSet) -> float:
    """Macro AP on valid of a saved model, recomputed from the zoo folder alone."""
    X, Y = features.subset("valid")
    P = load_model(model_dir).predict_proba_features(X)
    present = Y.sum(axis=0) > 0
    return float(average_precision_score(Y[:, present], P[:, present], average="macro"))


def test_tune_rf_writes_every_trial_and_a_loadable_winner(features, tuned):
    out, report, printed = tuned
    rf = report["rf"]
    assert rf["objective"] == {**rf["objective"], "name": "valid_macro_ap", "direction": "max", "split": "valid"}
    assert len(rf["trials"]) == 2 and all(set(t["params"]) == set(RF_GRID) for t in rf["trials"])
    assert all(t["params"][k] in RF_GRID[k] for t in rf["trials"] for k in RF_GRID)
    winner = rf["winner"]
    assert winner["objective"] == max(t["objective"] for t in rf["trials"])
    assert winner["objective_retrained"] == pytest.approx(winner["objective"], abs=1e-9)
    saved = load_model(out / "rf-tuned")
    assert saved.kind == "sklearn" and saved.metrics["threshold_source"] == "valid"
    assert {k: saved.model.get_params()[k] for k in RF_GRID} == winner["params"]
    assert saved.model.get_params()["max_leaf_nodes"] == 256  # the size cap stays on
    assert _valid_objective_of_saved(out / "rf-tuned", features) == pytest.approx(winner["objective"], abs=1e-6)
    assert "valid_macro_ap" in printed and "| winner |" in printed


def test_tune_mlp_writes_every_trial_and_a_loadable_winner(tuned):
    out, report, printed = tuned
    mlp = report["mlp"]
    assert (mlp["objective"]["name"], mlp["objective"]["direction"], mlp["objective"]["split"]) == ("val_auc_pr", "max", "valid")
    assert len(mlp["trials"]) == 2
    for trial in mlp["trials"]:
        params = trial["params"]
        assert 1 <= len(params["hidden_units"]) <= 4 and all(32 <= u <= 512 for u in params["hidden_units"])
        assert 0.0 <= params["dropout"] <= 0.5 and 1e-4 <= params["learning_rate"] <= 1e-2
        assert trial["epochs_trained"] == 2 and 0.0 <= trial["objective"] <= 1.0
    winner = mlp["winner"]
    assert winner["objective"] == max(t["objective"] for t in mlp["trials"])
    assert winner["objective_retrained"] == pytest.approx(winner["objective"], abs=1e-4)  # the scored model was kept
    saved = load_model(out / "mlp-tuned")
    dense = [layer.units for layer in saved.model.layers if layer.name.startswith("dense_")]
    assert saved.kind == "keras" and dense == winner["params"]["hidden_units"]
    assert saved.manifest["architecture"]["epochs_trained"] == 2
    assert "val_auc_pr" in printed


def test_both_winners_side_by_side(tuned):
    out, report, _ = tuned
    rows = {row["model"]: row for row in report["comparison"]["rows"]}
    assert set(rows) == {"mlp", "rf"}
    for side in ("mlp", "rf"):
        stored = load_model(out / f"{side}-tuned").metrics["splits"]
        assert rows[side]["test_macro_f1"] == stored["test"]["macro_f1"]
        assert rows[side]["valid_mAP"] == stored["valid"]["mAP"]
    markdown = (out / "tuning.md").read_text()
    assert markdown.count("| winner |") == 2 and "## Side by side" in markdown


def test_selection_reads_valid_only(tuned, tuned_permuted):
    """Shuffling the test labels changes the reported test figures but no trial, score or winner."""
    (_, first, _), (_, second, _) = tuned, tuned_permuted
    for side in ("rf", "mlp"):
        a, b = first[side], second[side]
        assert [t["params"] for t in a["trials"]] == [t["params"] for t in b["trials"]]
        assert [t["objective"] for t in a["trials"]] == pytest.approx([t["objective"] for t in b["trials"]], abs=1e-6)
        assert a["winner"]["trial"] == b["winner"]["trial"]
        assert a["winner"]["metrics"]["valid"] == pytest.approx(b["winner"]["metrics"]["valid"], abs=1e-6)
        assert a["winner"]["metrics"]["test"]["macro_f1"] != b["winner"]["metrics"]["test"]["macro_f1"]


def _refused(args: list[str], out: Path, capsys, message: str) -> None:
    assert main(["tune", *args, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert not out.exists()


def test_unknown_model_is_refused(features, tmp_path, capsys):
    _refused(["svm", "--features", str(_save(features, tmp_path))], tmp_path / "tune", capsys,
             "unknown model 'svm' to tune; choose one of mlp, rf")


def test_empty_validation_split_is_refused_naming_the_file(features, tmp_path, capsys):
    no_valid = dataclasses.replace(features, split=np.where(features.split == "valid", "train", features.split))
    path = _save(no_valid, tmp_path)
    _refused(["rf", "--features", str(path)], tmp_path / "tune", capsys, f"{path}: the valid split is empty")


def test_max_epochs_is_refused_for_the_rf(features, tmp_path, capsys):
    _refused(["rf", "--features", str(_save(features, tmp_path)), "--max-epochs", "3"], tmp_path / "tune", capsys,
             "--max-epochs applies to `tune mlp` only")


def test_sweep_window_trains_one_rf_per_window_and_reuses_caches(staggered_corpus, tmp_path, capsys):
    root, out = staggered_corpus, tmp_path / "sweep"
    args = ["sweep-window", "--data", str(root), "--out", str(out), "--windows", "2", "1", "--jobs", "1"]
    assert main([*args, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result == json.loads((out / "sweep.json").read_text())
    rows = result["rows"]
    assert [(r["window_seconds"], r["hop_seconds"]) for r in rows] == [(1.0, 0.5), (2.0, 1.0)]
    for row in rows:
        cached = load_featureset(out / row["features_file"])
        assert cached.params.window_seconds == row["window_seconds"] and not row["features_reused"]
        assert row["n_train_windows"] == int((cached.split == "train").sum()) > 0
        assert row["n_valid_windows"] + row["n_test_windows"] + row["n_train_windows"] == len(cached.X)
        assert 0.0 <= row["valid_macro_f1"] <= 1.0 and 0.0 <= row["test_macro_f1"] <= 1.0 and row["train_seconds"] > 0
    assert rows[0]["n_train_windows"] > rows[1]["n_train_windows"]  # half the hop, about twice the windows
    assert (out / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "sweep.md").read_text().count("\n| ") == 3  # header and two rows
    assert main(args) == 0
    again = json.loads((out / "sweep.json").read_text())["rows"]
    assert all(r["features_reused"] for r in again)
    assert [r["valid_macro_f1"] for r in again] == [r["valid_macro_f1"] for r in rows]  # seeded


def test_sweep_window_refuses_a_window_outside_1_to_12_seconds(staggered_corpus, tmp_path, capsys):
    root = staggered_corpus
    assert main(["sweep-window", "--data", str(root), "--out", str(tmp_path / "sweep"), "--windows", "2", "13"]) == 2
    assert "window_seconds must be between 1 and 12 s, got 13.0" in capsys.readouterr().err
    assert not (tmp_path / "sweep").exists()
