"""The synthetic corpus's audio path: per-part rendering, balance, pyroomacoustics rooms, the recording chain."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pretty_midi
import pytest

from instrument_id.cli import main
from instrument_id.errors import InstrumentIdError
from train.synth import plan_corpus
from train.synth_chain import CODECS, codec_round_trip, record
from train.synth_ensembles import ENSEMBLE_BY_NAME
from train.synth_mix import MIN_PART_GAIN_DB, balance_parts, draw_balance, sounding_masks
from train.synth_render import default_soundfont, fluidsynth_settings, synthesize, synthesize_parts
from train.synth_room import RT60_RANGE_SECONDS, draw_room, impulse_responses

pytest.importorskip("fluidsynth", reason="needs pyfluidsynth and libfluidsynth3")
pra = pytest.importorskip("pyroomacoustics")

RATE_HZ = 44100
FLUID_R3 = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")  # Debian's fluid-soundfont-gm, when installed
DRY = {**fluidsynth_settings(np.random.default_rng(0)), "synth.reverb.active": 0}


def duet() -> pretty_midi.PrettyMIDI:
    """Violin alone for the first second, then cello alone: each part's solo stretch is known."""
    midi = pretty_midi.PrettyMIDI()
    for program, pitch, start in ((40, 76, 0.1), (42, 48, 1.6)):
        inst = pretty_midi.Instrument(program=program)
        inst.notes = [pretty_midi.Note(90, pitch + k, start + 0.3 * k, start + 0.3 * k + 0.28) for k in range(3)]
        midi.instruments.append(inst)
    return midi


def rms(y: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(y, dtype=np.float64))))


def test_each_part_renders_alone_and_the_parts_add_up_to_the_ensemble() -> None:
    midi, n = duet(), int(3.0 * RATE_HZ)
    parts = synthesize_parts(midi, [default_soundfont()] * 2, n, DRY)  # (2, n)
    violin_alone = slice(int(0.1 * RATE_HZ), int(1.0 * RATE_HZ))
    cello_alone = slice(int(1.6 * RATE_HZ), int(2.5 * RATE_HZ))
    assert rms(parts[0, violin_alone]) > 100 * rms(parts[0, cello_alone])
    assert rms(parts[1, cello_alone]) > 100 * rms(parts[1, violin_alone])
    together = synthesize(midi, default_soundfont(), n, DRY)  # one pass, one channel per part
    assert rms(parts.sum(axis=0) - together) < 0.01 * rms(together)
    with pytest.raises(InstrumentIdError, match="1 soundfonts for 2 parts"):
        synthesize_parts(midi, [default_soundfont()], n, DRY)


@pytest.mark.skipif(not FLUID_R3.is_file(), reason="needs a second General MIDI soundfont")
def test_each_part_sounds_through_its_own_soundfont() -> None:
    midi, n = duet(), int(3.0 * RATE_HZ)
    one_font = synthesize_parts(midi, [default_soundfont()] * 2, n, DRY)
    two_fonts = synthesize_parts(midi, [default_soundfont(), FLUID_R3], n, DRY)
    assert np.array_equal(two_fonts[0], one_font[0])
    assert rms(two_fonts[1] - one_font[1]) > 0.1 * rms(one_font[1])


def test_balance_keeps_every_part_within_12_db_of_the_loudest_at_its_drawn_gain() -> None:
    midi, n = duet(), int(3.0 * RATE_HZ)
    parts = synthesize_parts(midi, [default_soundfont()] * 2, n, DRY)
    masks = sounding_masks(midi, n)  # (2, n)
    assert masks[0, int(0.2 * RATE_HZ)] and not masks[0, int(2.0 * RATE_HZ)] and masks[1, int(2.0 * RATE_HZ)]
    kinds = set()
    for seed in range(40):
        kind, gains_db = draw_balance(np.random.default_rng(seed), 2)
        kinds.add(kind)
        assert gains_db.max() == 0.0 and gains_db.min() >= MIN_PART_GAIN_DB
        mixed = balance_parts(parts * np.float32(seed + 1), masks, gains_db)  # the level a part came in at is undone
        for mask, gain_db in zip(masks, gains_db):
            assert abs(20 * np.log10(rms(mixed[mask])) - gain_db) < 1.0  # it is heard at its gain where it plays
    assert kinds == {"even", "dominant"} and draw_balance(np.random.default_rng(0), 1)[0] == "solo"


def test_rooms_span_the_rt60_range_with_players_and_microphone_inside() -> None:
    rooms = [draw_room(np.random.default_rng(seed), 1 + seed % 8) for seed in range(400)]
    rt60 = np.array([room.rt60_seconds for room in rooms])
    assert 0.9 * RT60_RANGE_SECONDS[0] <= rt60.min() < 0.3 and 2.0 < rt60.max() <= 1.1 * RT60_RANGE_SECONDS[1]
    for room in rooms:
        points = np.array([*room.sources_m, room.mic_m])  # (n_parts + 1, 3) m
        assert (points > 0).all() and (points < np.array(room.dims_m)).all()
        assert room.mic_distances_m.min() > 0.6 and len(room.sources_m) == len(room.mic_distances_m)
    distances = np.concatenate([room.mic_distances_m for room in rooms])
    assert distances.min() < 1.0 and distances.max() > 6.0


@pytest.mark.parametrize("short", [True, False])
def test_room_impulse_responses_decay_at_the_drawn_rt60_and_are_seeded(short: bool) -> None:
    seed = next(s for s in range(100) if (draw_room(np.random.default_rng(s), 2).rt60_seconds < 0.4) == short
                and 0.25 < draw_room(np.random.default_rng(s), 2).rt60_seconds < 1.6)
    room = draw_room(np.random.default_rng(seed), 2)
    responses = impulse_responses(room)
    assert len(responses) == 2
    for response in responses:
        measured = pra.experimental.measure_rt60(response, fs=RATE_HZ)
        assert 0.5 * room.rt60_seconds < measured < 1.3 * room.rt60_seconds  # highs decay faster: a little shorter
    onsets = [int(np.argmax(np.abs(r) > 0.1 * np.abs(r).max())) for r in responses]  # the direct sounds
    assert min(onsets) < 60  # the nearest part's direct sound stays on its labels (under 1.4 ms late)
    assert all(np.array_equal(a, b) for a, b in zip(responses, impulse_responses(room)))


@pytest.mark.parametrize("codec", list(CODECS))
def test_codec_round_trip_changes_the_audio_but_keeps_its_length(codec: str) -> None:
    rng = np.random.default_rng(0)
    t_seconds = np.arange(RATE_HZ) / RATE_HZ
    y = (0.3 * np.sin(2 * np.pi * 440 * t_seconds) + 0.05 * rng.standard_normal(RATE_HZ)).astype(np.float32)
    decoded, kbps = codec_round_trip(y, codec, 0.6)
    assert decoded.shape == y.shape and not np.array_equal(decoded, y)
    assert rms(decoded - y) < 0.3 * rms(y) and 24 < kbps < 330  # still the same music
    with pytest.raises(InstrumentIdError, match="unknown codec"):
        codec_round_trip(y, "wma", 0.5)


def test_recording_chain_is_seeded_bounded_and_says_what_it_did() -> None:
    y = synthesize(duet(), default_soundfont(), int(3.0 * RATE_HZ), DRY)
    seen = set()
    for seed in range(24):
        out, applied = record(np.random.default_rng(seed), y)
        again, applied_again = record(np.random.default_rng(seed), y)
        assert np.array_equal(out, again) and applied == applied_again
        assert out.shape == y.shape and out.dtype == np.float32 and 0.3 < np.abs(out).max() <= 1.0
        seen |= {re.sub(r"[^a-z].*", "", text) for text in applied}
    assert seen == {"eq", "band", "white", "pink", "brown", "hum", "compressor", "peak", "mp", "vorbis"}


def test_mixed_fonts_share_draws_part_fonts_only_for_ensembles(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    fonts = [default_soundfont(), tmp_path / "Other GM.sf2"]
    for share, expect_mixed in ((1.0, True), (0.0, False)):
        plans = plan_corpus(20.0, seed=2, soundfonts=fonts, mixed_fonts_share=share)
        for plan in plans:
            assert len(plan.soundfonts) == len(ENSEMBLE_BY_NAME[plan.ensemble].parts)
            if len(plan.soundfonts) == 1 or (plan.soundfonts and not expect_mixed):  # no instrument: no font
                assert len(set(plan.soundfonts)) == 1
        assert any(len(set(p.soundfonts)) > 1 for p in plans) == expect_mixed
    assert main(["synth", "--out", str(tmp_path / "c"), "--minutes", "1", "--mixed-fonts", "1.5"]) == 2
    assert "--mixed-fonts must be a share from 0 to 1" in capsys.readouterr().err
