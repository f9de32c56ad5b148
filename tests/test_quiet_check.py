"""quiet-check: clips of every non-music kind at levels over its range, and the shipped models' answers to them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from instrument_id.cli import main
from instrument_id.errors import InstrumentIdError
from train.quiet_check import quiet_clips
from train.synth_nonmusic import KINDS
from train.synth_perform import SAMPLE_RATE_HZ

SHIPPED = Path(__file__).resolve().parent.parent / "model_zoo" / "models"


@pytest.mark.parametrize("kind", ["pink noise", "hum", "tone"])
def test_clips_span_the_kinds_levels_and_are_the_same_for_the_same_seed(kind):
    clips, levels_db = quiet_clips(kind, 5, 1.0, seed=7)
    assert clips.shape == (5, SAMPLE_RATE_HZ) and clips.dtype == np.float32
    assert levels_db[0] == KINDS[kind][1][0] and levels_db[-1] == KINDS[kind][1][1]
    rms_db = 20 * np.log10(np.sqrt(np.mean(clips.astype(np.float64) ** 2, axis=1)))
    assert np.allclose(rms_db, levels_db, atol=0.5)  # each clip at its level (none loud enough to clip)
    assert np.array_equal(clips, quiet_clips(kind, 5, 1.0, seed=7)[0])
    assert not np.array_equal(clips, quiet_clips(kind, 5, 1.0, seed=8)[0])
    with pytest.raises(InstrumentIdError, match="unknown non-music kind 'rain'; kinds: silence, white noise"):
        quiet_clips("rain", 1, 1.0, seed=0)


def test_the_shipped_models_answer_nothing_for_silence_and_the_command_writes_every_kind(tmp_path, capsys):
    models = [str(SHIPPED / "rf"), str(SHIPPED / "mlp")]
    assert main(["quiet-check", "--model", *models, "--clips-per-kind", "3", "--out", str(tmp_path), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result == json.loads((tmp_path / "quiet_check.json").read_text())
    for label in models:
        entry = result["models"][label]
        assert list(entry["kinds"]) == list(KINDS) and all(k["clips"] == 3 for k in entry["kinds"].values())
        assert entry["kinds"]["silence"]["quiet_share"] == 1.0 and entry["kinds"]["silence"]["named"] == {}
        shares = [k["quiet_share"] for k in entry["kinds"].values()]
        assert entry["quiet_share"] == pytest.approx(np.mean(shares))  # equal clips per kind
    assert "| hum | -50..-20 |" in (tmp_path / "quiet_check.md").read_text()
    assert main(["quiet-check", "--model", models[0], "--clips-per-kind", "0"]) == 2
    assert "need at least 1 clip" in capsys.readouterr().err
