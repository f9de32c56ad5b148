"""Recordings of no instrument: silence, noise, hum, crackle, tones, bursts; labelled with no row, so every window is
a "none of the 11" example, and leave-one-soundfont-out keeps them in every fold's training set."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from instrument_id.errors import InstrumentIdError
from instrument_id.params import AudioParams
from train.feature_study import recording_fonts
from train.musicnet import list_recordings, read_recording
from train.synth import ensemble_weights, metadata_csv_text, plan_corpus, synthesize_piece
from train.synth_chain import record
from train.synth_ensembles import ENSEMBLES, NO_INSTRUMENT
from train.synth_nonmusic import KINDS, SEGMENT_SECONDS, render_nonmusic
from train.synth_perform import SAMPLE_RATE_HZ
from train.synth_render import default_soundfont
from train.windows import n_windows_for, window_labels

pytest.importorskip("fluidsynth", reason="needs pyfluidsynth and libfluidsynth3")


def test_segments_cover_the_recording_at_their_drawn_levels() -> None:
    n = int(60 * SAMPLE_RATE_HZ)
    y, kinds = render_nonmusic(np.random.default_rng(3), n)
    assert y.shape == (n,) and y.dtype == np.float32 and np.isfinite(y).all() and np.abs(y).max() < 1.0
    assert 60 / SEGMENT_SECONDS[1] <= len(kinds) <= 60 / SEGMENT_SECONDS[0] + 1
    drawn = {text.rsplit(" ", 2)[0] for text in kinds}
    assert drawn <= set(KINDS) and len(drawn) >= 4  # a minute holds several kinds
    again, same_kinds = render_nonmusic(np.random.default_rng(3), n)
    assert same_kinds == kinds and np.array_equal(again, y)  # seeded


def test_each_kind_sounds_at_its_level() -> None:
    rng = np.random.default_rng(0)
    for _ in range(40):
        n = int(4 * SAMPLE_RATE_HZ)
        y, kinds = render_nonmusic(rng, n)
        kind, level = kinds[0].rsplit(" ", 2)[0], float(kinds[0].rsplit(" ", 2)[1])
        first = y[int(0.05 * SAMPLE_RATE_HZ):int(SEGMENT_SECONDS[0] * SAMPLE_RATE_HZ) - int(0.05 * SAMPLE_RATE_HZ)]
        rms_db = 20 * np.log10(max(float(np.sqrt(np.mean(first.astype(np.float64) ** 2))), 1e-12))
        low, high = KINDS[kind][1]
        assert low - 6 <= rms_db <= high + 6, (kind, level, rms_db)  # beeps and bursts are gated: below the mean


def test_the_recording_chain_keeps_a_quiet_room_quiet() -> None:
    quiet = (1e-4 * np.random.default_rng(1).standard_normal(SAMPLE_RATE_HZ)).astype(np.float32)
    kept, applied = record(np.random.default_rng(2), quiet, keep_level=True)
    assert np.abs(kept).max() < 0.05 and not any(text.startswith("peak") for text in applied)
    normalized, applied = record(np.random.default_rng(2), quiet)
    assert np.abs(normalized).max() > 0.3 and any(text.startswith("peak") for text in applied)


def test_no_instrument_share_sets_its_weight_and_zero_leaves_the_plan_as_without_it() -> None:
    weights = ensemble_weights(0.05)
    assert weights[ENSEMBLES.index(NO_INSTRUMENT)] / weights.sum() == pytest.approx(0.05)
    plans = plan_corpus(120, seed=0, soundfonts=[default_soundfont()], no_instrument_share=0.05)
    silent = [p for p in plans if p.ensemble == NO_INSTRUMENT.name]
    assert 0.02 * len(plans) <= len(silent) <= 0.10 * len(plans) and all(p.soundfonts == () for p in silent)
    none = plan_corpus(120, seed=0, soundfonts=[default_soundfont()], no_instrument_share=0.0)
    assert not any(p.ensemble == NO_INSTRUMENT.name for p in none)
    without = [e for e in ENSEMBLES if e is not NO_INSTRUMENT]  # the table before recordings of no instrument
    draws = np.random.default_rng(4).choice(len(without), size=500, p=np.array([e.weight for e in without]) / sum(
        e.weight for e in without))
    zero = ensemble_weights(0.0)
    assert np.array_equal(np.random.default_rng(4).choice(len(ENSEMBLES), size=500, p=zero / zero.sum()), draws)
    for bad in (-0.1, 1.0, float("nan")):
        with pytest.raises(InstrumentIdError, match="--no-instrument must be a share from 0 to below 1"):
            ensemble_weights(bad)


def test_a_corpus_with_no_instrument_recordings_reads_back_as_all_zero_windows(tmp_path: Path) -> None:
    plans = plan_corpus(60, seed=0, soundfonts=[default_soundfont()], no_instrument_share=0.1)
    silent = next(p for p in plans if p.ensemble == NO_INSTRUMENT.name)
    solo = next(p for p in plans if p.ensemble == "Solo Piano" and p.split == silent.split)
    out = tmp_path / "corpus"
    for folder in ("train_data", "train_labels", "test_data", "test_labels"):
        (out / folder).mkdir(parents=True)
    rows = [synthesize_piece(plan, str(out)) for plan in (silent, solo)]
    (out / "musicnet_metadata.csv").write_text(metadata_csv_text(rows))
    assert rows[0]["source"].startswith("instrument-id synth (no instrument, segments ")
    params = AudioParams()
    fonts = recording_fonts(out)
    for rec in list_recordings(out):
        audio, labels = read_recording(rec, params)
        if rec.id == str(silent.recording_id):
            assert len(labels) == 0 and fonts[rec.id] == frozenset()  # in every fold's training set, never scored
            assert not window_labels(labels, n_windows_for(len(audio), params), params).any()
            assert abs(len(audio) - silent.duration_seconds * params.sample_rate_hz) <= 1  # resampled from 44.1 kHz
        else:
            assert len(labels) > 0 and fonts[rec.id] == {"TimGM6mb.sf2"}
