"""Cross-source thresholds and threshold-study: fitted without each source, scored on it, run as a user would."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from instrument_id.cli import main
from instrument_id.errors import InstrumentIdError
from tests.synthetic_features import make_featureset
from tests.test_draw_study import synth_source
from tests.test_feature_study import write_metadata
from train.feature_study import _restrict, held_out_masks
from train.models import THRESHOLD_GRID, choose_thresholds, train_model
from train.source_thresholds import out_of_source_predictions, sources_used_alone
from train.threshold_study import POLICIES, threshold_study

KINDS = [{"A"}, {"B"}, {"C"}, {"A", "B"}, {"B", "C"}]  # rec k uses KINDS[k % 5]


def corpus(seed: int):
    features = make_featureset(600, seed=seed)  # 60 recordings of 10 windows
    fonts = {f"rec{k}": frozenset(KINDS[k % 5]) for k in range(60)}
    return features, fonts


def test_each_source_is_predicted_by_a_model_fitted_without_any_recording_that_uses_it() -> None:
    features, fonts = corpus(1)
    font_sets = [fonts[r] for r in features.recording]
    assert sources_used_alone(font_sets) == ["A", "B", "C"]
    pooled = out_of_source_predictions(features, font_sets, "lr", seed=0)
    assert pooled.sources == ["A", "B", "C"]
    alone = [sum(fonts[r] == {s} for r in features.recording) for s in "ABC"]
    assert len(pooled.Y) == len(pooled.P) == sum(alone) == 360
    # the rows for A are what a model fitted on the recordings that never use A (rec with {B}, {C}, {B, C}) predicts
    fit, score = held_out_masks(font_sets, "A")
    assert not fit[[fonts[r] >= {"A"} for r in features.recording]].any()
    again = train_model(_restrict(features, fit), "lr", seed=0)
    np.testing.assert_allclose(pooled.P[:alone[0]], again.predict_features(features.X[score])[0])
    np.testing.assert_array_equal(pooled.Y[:alone[0]], features.Y[score])
    thresholds = pooled.thresholds()
    np.testing.assert_array_equal(thresholds, choose_thresholds(pooled.Y, pooled.P))
    assert np.isin(thresholds, THRESHOLD_GRID).all()


def test_one_source_used_alone_is_refused() -> None:
    features, _ = corpus(1)
    with pytest.raises(InstrumentIdError, match=r"at least two timbre sources.*\['A'\]"):
        out_of_source_predictions(features, [frozenset({"A"})] * len(features.X), "lr", seed=0)
    with pytest.raises(InstrumentIdError, match="sources of every window: 3 for 600 windows"):
        out_of_source_predictions(features, [frozenset({"A"})] * 3, "lr", seed=0)


def test_the_study_scores_every_policy_in_every_cell_and_valid_is_the_trained_models_thresholds() -> None:
    draws = [corpus(3), corpus(4)]
    cells, thresholds = threshold_study(draws, ["lr"], seed=0)
    assert {(c["held_out"], c["test_draw"], c["policy"]) for c in cells} == \
        {(font, d, p) for font in "ABC" for d in (0, 1) for p in POLICIES}
    assert all(0.0 <= c["macro_f1"] <= 1.0 and c["n_windows"] == 120 for c in cells)
    by = {(t["held_out"], t["policy"]): t["thresholds"] for t in thresholds}
    assert all(t == 0.5 for font in "ABC" for t in by[(font, "fixed-0.5")])
    assert by[("A", "cross-source")] == by[("A", "ensemble-cross-source")]
    # the same probabilities under valid, cross-source and fixed-0.5: mAP equal, only the decisions differ
    maps = {(c["held_out"], c["test_draw"], c["policy"]): c["mAP"] for c in cells}
    assert maps[("A", 0, "valid")] == maps[("A", 0, "cross-source")] == maps[("A", 0, "fixed-0.5")]


def test_two_sources_alone_are_too_few_to_nest() -> None:
    features, fonts = corpus(3)
    fonts = {r: frozenset({"A", "B"}) if f == {"C"} else f for r, f in fonts.items()}
    with pytest.raises(InstrumentIdError, match=r"at least 3 soundfonts.*\['A', 'B'\]"):
        threshold_study([(features, fonts)], ["lr"], seed=0)


def test_the_command_writes_its_tables(tmp_path: Path, capsys) -> None:
    features, fonts = corpus(3)
    root = tmp_path / "synth"
    root.mkdir()
    write_metadata(root, {r: synth_source(f) for r, f in fonts.items()})
    features.save(tmp_path / "cache.npz")
    out = tmp_path / "study"
    assert main(["threshold-study", "--features", str(tmp_path / "cache.npz"), "--data", str(root), "--heads", "lr",
                 "--out", str(out), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads((out / "study.json").read_text())
    assert [s["policy"] for s in printed["summary"]] == list(POLICIES)
    assert "| lr | cross-source |" in (out / "study.md").read_text()
