"""TiMidity++ patch sets (freepats) as a timbre source: the .cfg reader, rendering in time with the labels, and
the corpus plan drawing another source for a program the patch set lacks."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pretty_midi
import pytest

from instrument_id.errors import InstrumentIdError
from train.synth import plan_corpus
from train.synth_ensembles import ENSEMBLE_BY_NAME, SPECS
from train.synth_render import check_soundfont, default_soundfont, source_programs, synthesize
from train.synth_timidity import bank0_programs, check_patch_set

FREEPATS = Path("/etc/timidity/freepats.cfg")  # Debian's freepats, which set-up installs with timidity
needs_freepats = pytest.mark.skipif(not (FREEPATS.is_file() and shutil.which("timidity")),
                                    reason="needs timidity and freepats (apt-get install timidity freepats)")
RATE_HZ = 44100
SETTINGS = {"synth.reverb.active": 0}

CFG = """dir /somewhere
# comment
drumset 0
 35 Drum_000/035_Kick_1.pat amp=100
bank 0
 0 Tone_000/000_Acoustic_Grand_Piano.pat amp=120 pan=center
 40 Tone_000/040_Violin.pat   # a comment
bank 1
 41 Tone_001/041_Other.pat
"""


def test_bank0_programs_reads_only_the_melodic_bank(tmp_path: Path) -> None:
    assert bank0_programs(CFG, tmp_path / "x.cfg") == frozenset({0, 40})  # not the drum 35, not bank 1's 41
    with pytest.raises(InstrumentIdError, match=r"x.cfg:2: program 7 names no patch file"):
        bank0_programs("bank 0\n 7\n", tmp_path / "x.cfg")
    with pytest.raises(InstrumentIdError, match=r"x.cfg:2: program 300 is outside 0..127"):
        bank0_programs("bank 0\n300 a.pat\n", tmp_path / "x.cfg")
    with pytest.raises(InstrumentIdError, match=r"x.cfg:1: 'bank' names no bank number"):
        bank0_programs("bank\n", tmp_path / "x.cfg")


def test_bad_patch_sets_are_refused_naming_them(tmp_path: Path) -> None:
    with pytest.raises(InstrumentIdError, match="missing.cfg: TiMidity\\+\\+ configuration does not exist"):
        check_patch_set(tmp_path / "missing.cfg")
    empty = tmp_path / "empty.cfg"
    empty.write_text("dir /x\ndrumset 0\n 35 kick.pat\n")
    with pytest.raises(InstrumentIdError, match="empty.cfg: maps no melodic program"):
        check_patch_set(empty)
    binary = tmp_path / "binary.cfg"
    binary.write_bytes(b"\xff\xfe\x00bank 0")
    with pytest.raises(InstrumentIdError, match="binary.cfg: cannot read"):
        check_patch_set(binary)


@needs_freepats
def test_freepats_lacks_viola_and_contrabass_and_soundfonts_have_everything() -> None:
    programs = source_programs(check_soundfont(FREEPATS))
    assert programs is not None and {0, 6, 40, 42, 60, 68, 70, 71, 73} <= programs  # 9 of the 11 instruments
    assert SPECS["viola"].program - 1 not in programs and SPECS["contrabass"].program - 1 not in programs
    assert source_programs(default_soundfont()) is None


@needs_freepats
def test_a_part_renders_in_time_with_its_notes() -> None:
    midi = pretty_midi.PrettyMIDI()
    clarinet = pretty_midi.Instrument(program=SPECS["clarinet"].program - 1)
    clarinet.notes = [pretty_midi.Note(90, 67, 1.0, 1.5), pretty_midi.Note(90, 70, 2.0, 2.5)]
    midi.instruments.append(clarinet)
    n = int(3.0 * RATE_HZ)
    y = synthesize(midi, check_soundfont(FREEPATS), n, SETTINGS)
    assert y.shape == (n,) and y.dtype == np.float32
    loud = np.abs(y) > 0.05 * np.abs(y).max()
    first = np.flatnonzero(loud)[0] / RATE_HZ
    assert 1.0 <= first < 1.01  # TiMidity++ drops leading silence unless told not to; the labels say 1.0 s
    gap = slice(int(1.8 * RATE_HZ), int(1.99 * RATE_HZ))  # after the first note's release, before the second
    assert np.abs(y[gap]).max() < 0.05 * np.abs(y).max() and loud[int(2.05 * RATE_HZ):int(2.4 * RATE_HZ)].any()
    viola = pretty_midi.PrettyMIDI()
    viola.instruments.append(pretty_midi.Instrument(program=SPECS["viola"].program - 1))
    with pytest.raises(InstrumentIdError, match=r"no patch for General MIDI program\(s\) \[42\]"):
        synthesize(viola, check_soundfont(FREEPATS), n, SETTINGS)


@needs_freepats
def test_plan_gives_every_part_a_source_that_plays_it() -> None:
    freepats, timgm = check_soundfont(FREEPATS), default_soundfont()
    plans = plan_corpus(60, seed=1, soundfonts=[timgm, freepats])
    programs = source_programs(freepats)
    used_freepats = 0
    for plan in plans:
        for (name, _role), font in zip(ENSEMBLE_BY_NAME[plan.ensemble].parts, plan.soundfonts):
            if Path(font) == freepats:
                used_freepats += 1
                assert SPECS[name].program - 1 in programs, (plan.ensemble, name)
    assert used_freepats > 0
    assert any(name in ("viola", "contrabass") for plan in plans
               for name, _role in ENSEMBLE_BY_NAME[plan.ensemble].parts)  # the case the draw handles occurs
    assert plan_corpus(60, seed=1, soundfonts=[timgm, freepats]) == plans  # seeded
    with pytest.raises(InstrumentIdError, match=r"no timbre source given plays \w+ \(GM program \d+\)"):
        plan_corpus(60, seed=1, soundfonts=[freepats])
