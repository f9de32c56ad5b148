"""compare: two evaluate reports of the same clips, each figure's change and its paired-bootstrap interval."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from instrument_id.cli import main
from instrument_id.errors import InstrumentIdError
from train.compare import compare, read_predictions
from train.evaluate import Evaluation, scored_metrics
from train.report import predictions_csv


def clips(seed: int = 0, n: int = 60) -> tuple[np.ndarray, list[str]]:
    """Y (n, 11): one of four instruments per clip, or none for every third clip."""
    rng = np.random.default_rng(seed)
    Y = np.zeros((n, 11), dtype=np.uint8)
    for i in range(n):
        if i % 3:
            Y[i, rng.choice([0, 2, 9, 10])] = 1
    return Y, [f"clip{i:03d}.flac" for i in range(n)]


def model_output(Y: np.ndarray, skill: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities that lean towards the truth by skill, rounded as predictions.csv stores them; decisions at 0.5."""
    rng = np.random.default_rng(seed)
    P = np.round(np.clip(skill * Y + (1 - skill) * rng.random(Y.shape), 0, 1), 4)  # (n, 11)
    return P, P > 0.5


def write_report(folder: Path, Y: np.ndarray, files: list[str], outputs: dict[str, tuple[np.ndarray, np.ndarray]]) -> Path:
    folder.mkdir(parents=True)
    evaluation = Evaluation({}, "clips", Y, {k: p for k, (p, _) in outputs.items()},
                            {k: d for k, (_, d) in outputs.items()}, files)
    (folder / "predictions.csv").write_text(predictions_csv(evaluation))
    return folder


def test_point_figures_equal_evaluate_and_a_model_against_itself_changes_by_exactly_nothing(tmp_path: Path) -> None:
    Y, files = clips()
    weak, strong = model_output(Y, 0.3, seed=1), model_output(Y, 0.8, seed=2)
    before = write_report(tmp_path / "before", Y, files, {"models/a": weak, "rf": weak})
    after = write_report(tmp_path / "after", Y, files, {"models/a": strong, "rf": weak})
    read_files, read_Y, models = read_predictions(before)
    assert read_files == files and np.array_equal(read_Y, Y) and np.array_equal(models["models/a"][1], weak[1])
    result = compare(before, after, None, resamples=300, seed=0)
    by = {entry["before_model"]: entry for entry in result["models"]}
    for side, (P, D) in (("before", weak), ("after", strong)):
        expected = scored_metrics(Y, D, P)
        assert by["models/a"]["macro_f1"][side] == pytest.approx(expected["macro_f1"], abs=1e-12)
        assert by["models/a"]["mAP"][side] == pytest.approx(expected["mAP"], abs=1e-12)
        assert by["models/a"]["quiet_share"][side] == pytest.approx(expected["no_instrument_rows"]["predicted_nothing_fraction"])
    gain = by["models/a"]["macro_f1"]
    assert gain["change"] > 0.2 and 0 < gain["change_low_95"] < gain["change"] < gain["change_high_95"]
    assert all(by["rf"][name] | {"before": 0, "after": 0} == {"before": 0, "after": 0, "change": 0.0,
                                                              "change_low_95": 0.0, "change_high_95": 0.0}
               for name in ("macro_f1", "mAP", "quiet_share"))


def test_the_command_prints_and_writes_the_comparison_and_names_bad_input(tmp_path: Path, capsys) -> None:
    Y, files = clips()
    before = write_report(tmp_path / "before", Y, files, {"runs/x/mlp": model_output(Y, 0.3, seed=1)})
    after = write_report(tmp_path / "after", Y, files, {"model_zoo/models/mlp": model_output(Y, 0.5, seed=2)})
    assert main(["compare", str(before), str(after), "--resamples", "200", "--json"]) == 2
    assert "share no model label" in capsys.readouterr().err
    assert main(["compare", str(before), str(after / "predictions.csv"), "--pair", "runs/x/mlp=model_zoo/models/mlp",
                 "--resamples", "200", "--out", str(tmp_path / "cmp"), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert "| runs/x/mlp -> model_zoo/models/mlp | macro_f1 |" in (tmp_path / "cmp" / "compare.md").read_text()
    other = write_report(tmp_path / "other", Y[:-1], files[:-1], {"runs/x/mlp": model_output(Y[:-1], 0.3, seed=1)})
    with pytest.raises(InstrumentIdError, match="score different clips or labels"):
        compare(before, other, None, resamples=200, seed=0)
    damaged = tmp_path / "damaged.csv"
    header, body = (before / "predictions.csv").read_text().split("\n", 1)
    damaged.write_text(header + "\n" + body.replace("clarinet(72)", "kazoo(0)", 1))
    with pytest.raises(InstrumentIdError, match=r"damaged.csv, line \d+: bad instrument"):
        read_predictions(damaged)


def test_a_report_from_before_folder_labels_pairs_by_folder_name(tmp_path: Path) -> None:
    Y, files = clips()
    weak, strong, other = model_output(Y, 0.3, seed=1), model_output(Y, 0.8, seed=2), model_output(Y, 0.5, seed=3)
    # evaluate labelled models as trained: two folders trained as mlp got their paths, a lone one its name
    before = write_report(tmp_path / "before", Y, files, {"model_zoo/models/musicnn": weak, "model_zoo/models/mlp": other,
                                                          "rf": other})
    (before / "report.json").write_text(json.dumps({"models": {
        "model_zoo/models/musicnn": {"name": "mlp", "kind": "keras", "path": "model_zoo/models/musicnn"},
        "model_zoo/models/mlp": {"name": "mlp", "kind": "keras", "path": "model_zoo/models/mlp"},
        "rf": {"name": "rf", "kind": "sklearn", "path": "model_zoo/models/rf"}}}))
    lone = write_report(tmp_path / "lone", Y, files, {"mlp": weak})
    (lone / "report.json").write_text(json.dumps({"models": {
        "mlp": {"name": "mlp", "kind": "keras", "path": "runs/musicnn-models/musicnn"}}}))
    after = write_report(tmp_path / "after", Y, files, {"musicnn": strong, "mlp": other})
    (after / "report.json").write_text(json.dumps({"models": {
        "musicnn": {"name": "musicnn", "model_kind": "mlp", "kind": "keras", "path": "runs/new/musicnn"},
        "mlp": {"name": "mlp", "model_kind": "mlp", "kind": "keras", "path": "runs/new/mlp"}}}))
    assert sorted(read_predictions(before)[2]) == ["mlp", "musicnn", "rf"]
    result = compare(before, after, None, resamples=200, seed=0)
    by = {entry["before_model"]: entry for entry in result["models"]}
    assert sorted(by) == ["mlp", "musicnn"] and all(e["after_model"] == e["before_model"] for e in by.values())
    assert by["musicnn"]["macro_f1"]["change"] > 0.2 and by["mlp"]["macro_f1"]["change"] == 0.0
    result = compare(lone, after, None, resamples=200, seed=0)
    assert [(e["before_model"], e["after_model"]) for e in result["models"]] == [("musicnn", "musicnn")]
    (lone / "report.json").write_text("{}")
    with pytest.raises(InstrumentIdError, match=r"lone/report.json: not the report.json of instrument-id evaluate"):
        read_predictions(lone)
