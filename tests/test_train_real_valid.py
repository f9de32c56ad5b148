"""Training on several caches, selected on another (`train --features A B --valid V`), and caches made from a
labelled clip folder (`features --clips DIR --labels CSV`)."""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from instrument_id.cli import main
from instrument_id.instruments import column_names
from model_zoo import load_model
from model_zoo.featureset import load_featureset
from synthetic_features import make_featureset
from train.cache_merge import MERGED_KEYS, merge_caches


@pytest.fixture(scope="module")
def caches(tmp_path_factory) -> dict[str, Path]:
    """Three caches of one world (the same instrument directions): a and b train, v selects."""
    folder = tmp_path_factory.mktemp("caches")
    whole = make_featureset(900, seed=0, separation=5.0)
    paths = {}
    for k, name in enumerate(("a", "b", "v")):
        rows = np.arange(900) % 3 == k
        part = dataclasses.replace(whole, **{key: getattr(whole, key)[rows] for key in MERGED_KEYS})
        part.config = {**whole.config, "corpus_fingerprint": f"part-{name}"}
        paths[name] = folder / f"{name}.npz"
        part.save(paths[name])
    return paths


def test_merge_moves_own_valid_into_train_and_takes_valid_from_the_valid_cache(caches):
    a, b, v = (load_featureset(caches[k]) for k in ("a", "b", "v"))
    merged = merge_caches([caches["a"], caches["b"]], caches["v"])
    assert (merged.split == "valid").sum() == len(v.X)  # every window of V, and only those, selects
    assert np.array_equal(merged.X[merged.split == "valid"], v.X)
    assert (merged.split == "train").sum() == sum(((f.split == "train") | (f.split == "valid")).sum() for f in (a, b))
    assert (merged.split == "test").sum() == sum((f.split == "test").sum() for f in (a, b))
    assert len(set(merged.recording)) == sum(len(set(f.recording)) for f in (a, b, v))  # ids kept apart per cache
    assert [c["features"] for c in merged.config["caches"]] == [str(caches["a"]), str(caches["b"])]
    assert merged.config["valid_from"]["features"] == str(caches["v"])


def test_train_with_valid_cache_chooses_thresholds_on_it(caches, tmp_path, capsys):
    out = tmp_path / "models"
    code = main(["train", "--features", str(caches["a"]), str(caches["b"]), "--valid", str(caches["v"]),
                 "--model", "rf", "--out", str(out)])
    assert code == 0
    assert "rf: macro-F1 valid" in capsys.readouterr().out
    model = load_model(out / "rf")
    valid = load_featureset(caches["v"])
    assert model.metrics["splits"]["valid"]["n_windows"] == len(valid.X)
    assert model.manifest["training_data"]["valid_from"]["features"] == str(caches["v"])
    assert model.metrics["splits"]["valid"]["macro_f1"] > 0.8


def test_caches_of_different_feature_settings_are_refused_naming_the_file(caches, tmp_path, capsys):
    other = make_featureset(300, seed=5, separation=5.0)
    other.config["params"] = {**other.config["params"], "hop_seconds": 0.25}
    path = tmp_path / "other.npz"
    other.save(path)
    out = tmp_path / "models"
    assert main(["train", "--features", str(caches["a"]), str(path), "--model", "rf", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "hop_seconds" in err
    assert not out.exists()


def _clip_folder(tmp_path: Path, rows: list[dict[str, str]], header: list[str] | None = None) -> tuple[Path, Path]:
    """Clips of 3 s tones (violin rows: 440 Hz, others: 220 Hz) and their labels CSV."""
    folder = tmp_path / "clips"
    folder.mkdir()
    t = np.arange(3 * 22050) / 22050
    for row in rows:
        freq = 440.0 if row.get("violin(41)") == "1" else 220.0
        sf.write(folder / row["file"], 0.3 * np.sin(2 * np.pi * freq * t), 22050)
    header = header or ["file", *column_names()]
    labels = folder / "labels.csv"
    with open(labels, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=header, restval="0")
        writer.writeheader()
        writer.writerows(rows)
    return folder, labels


def test_features_clips_makes_a_cache_each_window_labelled_as_its_clip(tmp_path, capsys):
    rows = [{"file": f"v{i}.wav", "violin(41)": "1"} for i in range(4)] + [{"file": f"n{i}.wav"} for i in range(4)]
    folder, labels = _clip_folder(tmp_path, rows)
    out = tmp_path / "clips.npz"
    assert main(["features", "--clips", str(folder), "--labels", str(labels), "--out", str(out), "--split", "train"]) == 0
    assert "8 clips" in capsys.readouterr().out
    cache = load_featureset(out)
    assert set(cache.split) == {"train"} and len(set(cache.recording)) == 8
    violin = column_names().index("violin(41)")
    for name, expected in (("v0.wav", 1), ("n0.wav", 0)):
        rows_of_clip = cache.Y[cache.recording == name]
        assert len(rows_of_clip) >= 2 and (rows_of_clip[:, violin] == expected).all()
        assert rows_of_clip.sum() == expected * len(rows_of_clip)  # no other instrument


@pytest.mark.parametrize("bad, expected", [
    ("unknown-column", "unknown instrument column(s) saxophone(66)"),
    ("missing-file", "missing audio file"),
])
def test_features_clips_refuses_bad_labels_naming_the_row(tmp_path, capsys, bad, expected):
    rows = [{"file": "a.wav", "violin(41)": "1"}, {"file": "b.wav"}]
    header = ["file", *column_names(), "saxophone(66)"] if bad == "unknown-column" else None
    folder, labels = _clip_folder(tmp_path, rows, header)
    if bad == "missing-file":
        (folder / "b.wav").unlink()
    out = tmp_path / "clips.npz"
    assert main(["features", "--clips", str(folder), "--labels", str(labels), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert expected in err and str(labels) in err
    assert ("line 3" in err) if bad == "missing-file" else ("line 1" in err)
    assert not out.exists()


def test_mlp_architecture_flags_build_the_asked_network(caches, tmp_path):
    out = tmp_path / "models"
    assert main(["train", "--features", str(caches["a"]), "--model", "mlp", "--out", str(out), "--epochs", "2",
                 "--hidden-units", "64,32", "--dropout", "0.5", "--quiet"]) == 0
    arch = load_model(out / "mlp").manifest["architecture"]
    assert arch["hidden_units"] == [64, 32] and arch["dropout"] == 0.5


@pytest.mark.parametrize("flags, message", [
    (["--hidden-units", "64,x"], "--hidden-units must be comma-separated integers"),
    (["--dropout", "1.5"], "dropout must be in [0, 1)"),
])
def test_bad_mlp_architecture_flags_are_refused(caches, tmp_path, capsys, flags, message):
    out = tmp_path / "models"
    assert main(["train", "--features", str(caches["a"]), "--model", "mlp", "--out", str(out), *flags]) == 2
    assert message in capsys.readouterr().err and not out.exists()
