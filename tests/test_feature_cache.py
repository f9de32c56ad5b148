"""`instrument-id features` on tiny corpora in the real MusicNet layout."""

from pathlib import Path

import numpy as np

from instrument_id.cli import main
from instrument_id.instruments import PROGRAM_TO_INDEX
from model_zoo.featureset import load_featureset

PROGRAMS = [1, 41, 43, 74]  # piano, violin, cello, flute


def _corpus(make_musicnet, n_recordings: int = 9, name: str = "musicnet") -> Path:
    recordings = []
    for i in range(n_recordings):
        first, second = PROGRAMS[i % 4], PROGRAMS[(i + 1) % 4]
        recordings.append({
            "id": str(2000 + i), "split": "test" if i == n_recordings - 1 else "train", "seconds": 4.5,
            "notes": [(0.0, 2.5, first, 60 + i), (2.0, 4.5, second, 67)],
        })
    return make_musicnet(recordings, name)


def test_features_cli_writes_cache_with_splits_labels_and_augmentation(make_musicnet, tmp_path, capsys):
    root = _corpus(make_musicnet)
    out = tmp_path / "features.npz"
    assert main(["features", "--data", str(root), "--out", str(out), "--augment", "2", "--jobs", "1", "--allow-missing-instruments"]) == 0
    fs = load_featureset(out)
    assert fs.X.shape[1] == 26 and np.all(np.isfinite(fs.X))
    # 4.5 s at window 2 / hop 1 -> 3 windows per recording; train windows carry 2 variants each
    for rec in np.unique(fs.recording):
        rows = fs.recording == rec
        assert len(set(fs.split[rows])) == 1, "a recording's windows must stay in one split"
        expected = 9 if fs.split[rows][0] == "train" else 3
        assert rows.sum() == expected
    assert set(np.unique(fs.variant[fs.split != "train"])) == {0}
    # first window of recording 2000: piano 0-2.5 s, violin from 2.0 s (0.0 s inside window 0-2 s) -> piano only
    first = np.flatnonzero((fs.recording == "2000") & (fs.variant == 0))[0]
    assert fs.Y[first, PROGRAM_TO_INDEX[1]] == 1 and fs.Y[first, PROGRAM_TO_INDEX[41]] == 0
    assert fs.config["augment"] == 2 and fs.config["split"] == "stratified" and len(fs.config["corpus_fingerprint"]) == 64
    assert not (tmp_path / "features.npz.parts").exists()
    assert "wrote" in capsys.readouterr().out


def test_cache_is_reused_only_when_configuration_matches(make_musicnet, tmp_path, capsys):
    root = _corpus(make_musicnet)
    out = tmp_path / "features.npz"
    args = ["features", "--data", str(root), "--out", str(out), "--augment", "0", "--jobs", "1", "--allow-missing-instruments"]
    assert main(args) == 0
    assert main(args) == 0
    verbs = [line.split()[0] for line in capsys.readouterr().out.splitlines() if line.startswith(("wrote ", "reused "))]
    assert verbs == ["wrote", "reused"]  # the first word: tmp_path itself contains "reused"
    assert main(args + ["--window", "3.0"]) == 0
    assert "wrote" in capsys.readouterr().out
    assert load_featureset(out).params.window_seconds == 3.0


def test_bad_recording_stops_without_touching_the_old_cache_and_keeps_finished_parts(make_musicnet, tmp_path, capsys):
    root = _corpus(make_musicnet)
    out = tmp_path / "features.npz"
    assert main(["features", "--data", str(root), "--out", str(out), "--augment", "0", "--jobs", "1", "--allow-missing-instruments"]) == 0
    before = out.read_bytes()
    bad = root / "train_labels" / "2001.csv"
    bad.write_text(bad.read_text().replace(",41,", ",999,"))
    code = main(["features", "--data", str(root), "--out", str(out), "--augment", "0", "--jobs", "1", "--split", "official"])
    err = capsys.readouterr().err
    assert code == 2 and "2001.csv" in err
    assert out.read_bytes() == before
    # skip mode finishes the others and reports the bad one
    assert main(["features", "--data", str(root), "--out", str(out), "--augment", "0", "--jobs", "1",
                 "--split", "official", "--on-error", "skip"]) == 0
    assert "skipped 2001" in capsys.readouterr().out
    assert "2001" not in set(load_featureset(out).recording)


def test_augmentation_is_seeded(make_musicnet, tmp_path):
    root = _corpus(make_musicnet)
    paths = [tmp_path / f"f{i}.npz" for i in range(2)]
    for path in paths:
        assert main(["features", "--data", str(root), "--out", str(path), "--augment", "3", "--jobs", "2", "--allow-missing-instruments"]) == 0
    a, b = (load_featureset(p) for p in paths)
    np.testing.assert_array_equal(a.X, b.X)


def test_missing_folder_is_a_clear_error(tmp_path, capsys):
    assert main(["features", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "f.npz")]) == 2
    assert "MusicNet layout" in capsys.readouterr().err or "nowhere" in capsys.readouterr().err
