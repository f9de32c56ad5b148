"""draw-study: leave-one-soundfont-out fitted on one corpus draw, the others or all of them, run as a user would."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from instrument_id.cli import main
from instrument_id.errors import InstrumentIdError
from instrument_id.feature_sets import FeatureSetSpec
from model_zoo.featureset import FeatureSet
from tests.synthetic_features import make_featureset
from tests.test_feature_study import write_metadata
from train.draw_study import FITS, draw_study, fit_masks, join_draws

KINDS = [{"A"}, {"B"}, {"A", "B"}, {"B", "C"}]  # rec k uses KINDS[k % 4]; C never plays alone


def draw(seed: int, augmented_share: float = 0.0) -> tuple[FeatureSet, dict[str, frozenset[str]]]:
    """30 recordings rec0..rec29 of 10 windows; train windows past augmented_share of each recording are variants."""
    features = make_featureset(300, seed=seed)
    variant = np.where((features.split == "train") & (features.start_seconds >= 10 * (1 - augmented_share)), 1, 0)
    features = dataclasses.replace(features, variant=variant.astype(np.int8))
    return features, {f"rec{k}": frozenset(KINDS[k % 4]) for k in range(30)}


def test_fit_masks_of_two_draws_reuse_the_other_draws_own_fit_and_three_draws_fit_the_others() -> None:
    fit = np.array([True, True, False, True, True, True])
    draw_index = np.array([0, 0, 0, 1, 1, 2])
    variant = np.array([0, 1, 0, 0, 1, 0])
    three = fit_masks(fit, draw_index, variant, 3)
    assert three[("own", 0)].tolist() == [True, True, False, False, False, False]
    assert three[("others", 0)].tolist() == [False, False, False, True, True, True]
    assert three[("all_originals", None)].tolist() == [True, False, False, True, False, True]
    assert ("others", 0) not in fit_masks(fit[:5], draw_index[:5], variant[:5], 2)


def test_equal_recording_ids_of_two_draws_stay_apart_and_every_fit_kind_scores_every_cell() -> None:
    draws = [draw(3, augmented_share=0.5), draw(4)]
    joined, font_sets, draw_index = join_draws(draws)
    assert len(set(joined.recording)) == 60 and len(font_sets) == 600 and np.bincount(draw_index).tolist() == [300, 300]
    rows = draw_study(draws, ["lr"], seed=0)
    assert {(r["held_out"], r["test_draw"], r["fit"]) for r in rows} == \
        {(font, d, kind) for font in "AB" for d in (0, 1) for kind in FITS}  # C is never alone: no cell
    by = {(r["held_out"], r["test_draw"], r["fit"]): r for r in rows}
    for font in "AB":
        own0, own1 = by[(font, 0, "own")]["n_fit_windows"], by[(font, 1, "own")]["n_fit_windows"]
        assert by[(font, 0, "others")]["n_fit_windows"] == own1 and by[(font, 1, "others")]["n_fit_windows"] == own0
        assert by[(font, 0, "all")]["n_fit_windows"] == own0 + own1
        assert by[(font, 0, "all_originals")]["n_fit_windows"] < own0 + own1  # draw 0's augmented variants left out
        for d, (features, fonts) in enumerate(draws):  # the held-out font's recordings, original windows only
            alone = sum(fonts[r] == {font} and v == 0 for r, v in zip(features.recording, features.variant))
            assert all(by[(font, d, kind)]["n_windows"] == alone for kind in FITS)
    assert all(0.0 <= r["macro_f1"] <= 1.0 and 0.0 <= r["mAP"] <= 1.0 for r in rows)


def test_draws_of_another_feature_set_or_a_single_draw_are_refused_naming_what_differs() -> None:
    features, fonts = draw(3)
    other = FeatureSetSpec(name="seed26", version=2, width=26)
    relabelled = dataclasses.replace(features, config={**features.config, "feature_set": other.to_dict()})
    with pytest.raises(InstrumentIdError, match="draw 0's cache was made with feature set seed26.*draw 1's cache uses"):
        join_draws([(features, fonts), (relabelled, fonts)])
    with pytest.raises(InstrumentIdError, match="at least 2 corpora, got 1"):
        draw_study([(features, fonts)], ["lr"], seed=0)
    with pytest.raises(InstrumentIdError, match=r"draw 1: recordings \['rec0'"):
        join_draws([(features, fonts), (features, {})])


def synth_source(fonts: frozenset[str]) -> str:
    return f"instrument-id synth ({'+'.join(sorted(fonts))}, room 4.1x3.0x2.4 m RT60 0.30 s, chain none)"


def test_the_command_writes_its_tables_and_drops_a_source_from_the_draws_that_have_it(tmp_path: Path, capsys) -> None:
    paths = []
    for seed in (3, 4):
        features, fonts = draw(seed)
        if seed == 4:
            fonts = {**fonts, "rec1": frozenset({"X.cfg"})}  # one recording of draw 1 uses a source draw 0 lacks
        corpus = tmp_path / f"synth{seed}"
        corpus.mkdir()
        write_metadata(corpus, {r: synth_source(f) for r, f in fonts.items()})
        features.save(tmp_path / f"cache{seed}.npz")
        paths += [str(tmp_path / f"cache{seed}.npz"), str(corpus)]
    out = tmp_path / "study"
    assert main(["draw-study", "--features", paths[0], paths[2], "--data", paths[1], paths[3], "--heads", "lr",
                 "--without", "X.cfg", "--out", str(out), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads((out / "study.json").read_text())
    assert [s["fit"] for s in printed["summary"]] == list(FITS) and printed["without"] == "X.cfg"
    assert "| lr | all_originals |" in (out / "study.md").read_text()
    assert main(["draw-study", "--features", paths[0], "--data", paths[1], paths[3], "--out", str(out)]) == 2
    assert "--features names 1 caches but --data 2 corpora" in capsys.readouterr().err
