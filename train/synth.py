"""`instrument-id synth`: render a seeded synthetic corpus in the MusicNet layout with FluidSynth.

Each part is rendered on its own FluidSynth pass (train/synth_render.py), in a pyroomacoustics room, balanced
(train/synth_mix.py) and recorded through a seeded chain (train/synth_chain.py). The metadata's source column says
what was drawn: '<fonts>, room ..., mix ..., chain ...', the fonts field the '+'-joined soundfont files the
recording uses (one unless its parts drew their own), which train/feature_study.py reads for leave-one-font-out.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from joblib import Parallel, cpu_count, delayed
from tqdm import tqdm

from instrument_id.atomic import atomic_dir, write_text_atomic
from instrument_id.errors import InstrumentIdError
from instrument_id.instruments import INSTRUMENTS
from train.synth_ensembles import ENSEMBLE_BY_NAME, ENSEMBLE_SETS, NO_INSTRUMENT, SPECS, Ensemble
from train.synth_chain import record
from train.synth_mix import render_mix
from train.synth_nonmusic import render_nonmusic
from train.synth_perform import SAMPLE_RATE_HZ, labels_csv_text, perform
from train.synth_render import check_soundfont, default_soundfont, load_fluidsynth, source_programs, write_wav
from train.musicnet import TIMBRE_SOURCES_FILE
from train.synth_room import load_pyroomacoustics
from train.synth_sfz import check_sfz_library, is_sfz_library
from train.synth_score import compose

METADATA_COLUMNS = ("id", "composer", "composition", "movement", "ensemble", "source", "transcriber", "catalog_name",
                    "seconds")
FIRST_RECORDING_ID = 1000
PIECE_SECONDS = (12.0, 36.0)
# the stratified split needs each instrument in >= 3 recordings (train, valid and test)
MIN_PIECES_PER_INSTRUMENT = 3
TEST_FRACTION = 0.1
KEY_NAMES = ("C", "C#", "D", "E-flat", "E", "F", "F#", "G", "A-flat", "A", "B-flat", "B")
TEMPO_MARKINGS = ((66, "Adagio"), (76, "Andante"), (108, "Moderato"), (132, "Allegro"), (999, "Presto"))
# share of pieces of two or more parts whose parts each draw their own soundfont (timbre variety within a piece);
# the others, and every solo, play in one: the recordings leave-one-soundfont-out can score
MIXED_FONTS_SHARE = 0.5
NO_INSTRUMENT_SHARE = 0.05  # of the pieces: recordings of no instrument (train/synth_nonmusic.py)
FONT_SEPARATOR = "+"
NO_INSTRUMENT_SOURCE = "no instrument"  # the fonts field of a recording of no instrument: it uses none


@dataclass(frozen=True)
class PiecePlan:
    """Everything that decides one recording: id, split, ensemble, target length, soundfonts and seed."""

    recording_id: int
    split: str
    ensemble: str
    duration_seconds: float
    soundfonts: tuple[str, ...]  # one per part, in the ensemble's part order
    seed: int


def _coverage_swaps(rng: np.random.Generator, ensembles: list[str], table: tuple[Ensemble, ...]) -> list[str]:
    """Swap pieces to ensembles holding instruments in fewer than MIN_PIECES_PER_INSTRUMENT pieces, never taking
    a piece whose instruments would drop below that (labelled instruments: the others need no coverage)."""
    ensembles = list(ensembles)

    def counts() -> dict[str, int]:
        found: dict[str, int] = {}
        for e in ensembles:
            for inst in ENSEMBLE_BY_NAME[e].labelled_instruments:
                found[inst] = found.get(inst, 0) + 1
        return found

    for name, _program in INSTRUMENTS:
        while (have := counts()).get(name, 0) < MIN_PIECES_PER_INSTRUMENT:
            spare = [i for i, e in enumerate(ensembles)
                     if all(have[x] > MIN_PIECES_PER_INSTRUMENT for x in ENSEMBLE_BY_NAME[e].labelled_instruments)]
            if not spare:
                break
            holders = [e for e in table if name in e.instruments]
            weights = np.array([e.weight for e in holders])
            ensembles[spare[rng.integers(len(spare))]] = holders[rng.choice(len(holders), p=weights / weights.sum())].name
    return ensembles


def _test_indices(rng: np.random.Generator, ensembles: list[str]) -> set[int]:
    """About TEST_FRACTION of the pieces (at least one) for test, chosen to show many labelled instruments while
    train keeps every labelled instrument it has."""
    n_test = max(1, int(round(TEST_FRACTION * len(ensembles))))
    instruments = [ENSEMBLE_BY_NAME[e].labelled_instruments for e in ensembles]
    train_counts: dict[str, int] = {}
    for names in instruments:
        for x in names:
            train_counts[x] = train_counts.get(x, 0) + 1
    chosen: set[int] = set()
    for _ in range(n_test):
        seen = set().union(*(instruments[j] for j in chosen))
        best, best_gain = -1, -1
        for i in rng.permutation(len(ensembles)):
            if i in chosen:
                continue
            keeps_train = all(train_counts[x] > 1 for x in instruments[i])
            gain = len(instruments[i] - seen) + (100 if keeps_train else 0)
            if gain > best_gain:
                best, best_gain = int(i), gain
        chosen.add(best)
        for x in instruments[best]:
            train_counts[x] -= 1
    return chosen


def _part_fonts(rng: np.random.Generator, ensembles: list[str], soundfonts: list[Path],
                mixed_fonts_share: float, fallbacks: list[Path] = ()) -> list[tuple[str, ...]]:
    """Soundfonts per part of each piece: one font per piece, cycled in a seeded order so that every soundfont is
    used when it can be; in a mixed_fonts_share of the pieces with two or more parts each part draws its own. A part
    whose program the drawn source lacks (a patch set such as freepats has no viola) draws one of the sources that
    have it; with soundfonts only, no such draw is made, so their corpora are as before. A fallback source plays
    only the parts that no main source has (a harpsichord beside a library of real orchestral notes)."""
    order = rng.permutation(len(soundfonts))
    programs = [source_programs(f) for f in soundfonts]  # None: a full General MIDI soundfont
    fonts = []
    for i, ensemble in enumerate(ensembles):
        parts = ENSEMBLE_BY_NAME[ensemble].parts
        n_parts = len(parts)
        mixed = n_parts > 1 and len(soundfonts) > 1 and rng.random() < mixed_fonts_share
        picks = rng.integers(len(soundfonts), size=n_parts) if mixed else np.full(n_parts, order[i % len(order)])
        for k, (name, _role) in enumerate(parts):
            program = SPECS[name].source_program
            if programs[picks[k]] is not None and program not in programs[picks[k]]:
                having = [j for j, p in enumerate(programs) if p is None or program in p]
                if not having:
                    having = [len(soundfonts) + j for j, f in enumerate(fallbacks)
                              if source_programs(f) is None or program in source_programs(f)]
                if not having:
                    raise InstrumentIdError(f"no timbre source given plays {name} (GM program {program + 1}; drums "
                                            "need a General MIDI soundfont)" if program < 0 else
                                            f"no timbre source given plays {name} (GM program {program + 1})")
                picks[k] = having[rng.integers(len(having))]
        fonts.append(tuple(str([*soundfonts, *fallbacks][k]) for k in picks))
    return fonts


def ensemble_weights(no_instrument_share: float, table: tuple[Ensemble, ...] = ENSEMBLE_SETS["musicnet"]) -> np.ndarray:
    """(len(table),) draw weights: the ensembles' own, with NO_INSTRUMENT's set so that it draws that share of
    the pieces. At 0 it is never drawn and the plan is the one of a corpus without it (a zero-probability last entry
    leaves numpy's choice unchanged)."""
    if not (math.isfinite(no_instrument_share) and 0.0 <= no_instrument_share < 1.0):
        raise InstrumentIdError(f"--no-instrument must be a share from 0 to below 1, got {no_instrument_share}")
    weights = np.array([0.0 if e is NO_INSTRUMENT else e.weight for e in table])
    weights[table.index(NO_INSTRUMENT)] = no_instrument_share / (1.0 - no_instrument_share) * weights.sum()
    return weights


def plan_corpus(minutes: float, seed: int, soundfonts: list[Path], mixed_fonts_share: float = MIXED_FONTS_SHARE,
                no_instrument_share: float = NO_INSTRUMENT_SHARE, ensemble_set: str = "musicnet",
                fallbacks: list[Path] = ()) -> list[PiecePlan]:
    """Draw ensembles (MusicNet-like imbalance), lengths and soundfonts until the corpus holds `minutes` of music."""
    if ensemble_set not in ENSEMBLE_SETS:
        raise InstrumentIdError(f"unknown ensemble set {ensemble_set!r}; choose one of {', '.join(ENSEMBLE_SETS)}")
    table = ENSEMBLE_SETS[ensemble_set]
    if not (math.isfinite(minutes) and minutes > 0):
        raise InstrumentIdError(f"--minutes must be positive, got {minutes}")
    if not 0.0 <= mixed_fonts_share <= 1.0:
        raise InstrumentIdError(f"--mixed-fonts must be a share from 0 to 1, got {mixed_fonts_share}")
    weights = ensemble_weights(no_instrument_share, table)
    rng = np.random.default_rng([seed, 0])
    target_seconds, total_seconds = 60.0 * minutes, 0.0
    ensembles, durations = [], []
    while total_seconds < target_seconds or len(durations) < 2:  # two at least: one train, one test
        remaining = target_seconds - total_seconds
        durations.append(float(min(rng.uniform(*PIECE_SECONDS), max(PIECE_SECONDS[0], remaining))))
        ensembles.append(table[rng.choice(len(table), p=weights / weights.sum())].name)
        total_seconds += durations[-1]
    ensembles = _coverage_swaps(rng, ensembles, table)
    test = _test_indices(rng, ensembles)
    fonts = _part_fonts(rng, ensembles, soundfonts, mixed_fonts_share, fallbacks)
    seeds = rng.integers(0, 2**63 - 1, size=len(ensembles))
    return [PiecePlan(FIRST_RECORDING_ID + i, "test" if i in test else "train", e, d, f, int(s))
            for i, (e, d, f, s) in enumerate(zip(ensembles, durations, fonts, seeds))]


def synthesize_piece(plan: PiecePlan, root: str) -> dict[str, str]:
    """Compose, perform and render one recording into root; return its metadata row."""
    rng = np.random.default_rng(plan.seed)
    ensemble = ENSEMBLE_BY_NAME[plan.ensemble]
    if not ensemble.parts:
        return _synthesize_no_instrument(plan, root, rng)
    score = compose(rng, ensemble, plan.duration_seconds)
    performance = perform(rng, score)
    render_rng = np.random.default_rng([plan.seed, 1])  # audio draws never shift the labels' draws
    write_text_atomic(Path(root) / f"{plan.split}_labels" / f"{plan.recording_id}.csv",
                      labels_csv_text(performance.labels))
    y, mix = render_mix(render_rng, performance, [Path(f) for f in plan.soundfonts])
    y, chain = record(render_rng, y)
    write_wav(Path(root) / f"{plan.split}_data" / f"{plan.recording_id}.wav", y)
    fonts = FONT_SEPARATOR.join(sorted({Path(f).name for f in plan.soundfonts}))
    source = f"instrument-id synth ({fonts}, {mix.room.describe()}, {mix.describe()}, chain {' / '.join(chain)})"
    marking = next(name for limit, name in TEMPO_MARKINGS if score.tempo_bpm < limit)
    key = f"{KEY_NAMES[score.tonic]} {'minor' if score.minor else 'major'}"
    return {"id": str(plan.recording_id), "composer": "Synthetic", "composition": f"{ensemble.form} in {key}",
            "movement": f"{marking} ({score.tempo_bpm:.0f} bpm, {score.beats_per_bar}/4)",
            "ensemble": ensemble.name, "source": source,
            "transcriber": "generated", "catalog_name": f"SYN{plan.recording_id}",
            "seconds": str(int(round(performance.num_samples / SAMPLE_RATE_HZ)))}


def _synthesize_no_instrument(plan: PiecePlan, root: str, rng: np.random.Generator) -> dict[str, str]:
    """A recording with no instrument (train/synth_nonmusic.py): a label CSV with no rows, its levels kept."""
    num_samples = int(round(plan.duration_seconds * SAMPLE_RATE_HZ))
    write_text_atomic(Path(root) / f"{plan.split}_labels" / f"{plan.recording_id}.csv", labels_csv_text([]))
    y, kinds = render_nonmusic(rng, num_samples)
    y, chain = record(rng, y, keep_level=True)
    write_wav(Path(root) / f"{plan.split}_data" / f"{plan.recording_id}.wav", y)
    chain_text = " / ".join(chain) or "none"
    source = f"instrument-id synth ({NO_INSTRUMENT_SOURCE}, segments {' / '.join(kinds)}, chain {chain_text})"
    return {"id": str(plan.recording_id), "composer": "Synthetic", "composition": "Room Tone",
            "movement": "-", "ensemble": plan.ensemble, "source": source, "transcriber": "generated",
            "catalog_name": f"SYN{plan.recording_id}", "seconds": str(int(round(num_samples / SAMPLE_RATE_HZ)))}


def metadata_csv_text(rows: list[dict[str, str]]) -> str:
    """musicnet_metadata.csv text, rows in id order."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=METADATA_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(sorted(rows, key=lambda r: int(r["id"])))
    return buffer.getvalue()


def describe_sources(fonts: list[Path]) -> list[str]:
    """One line per timbre source a corpus may use: a soundfont or patch set by file name, an SFZ library by folder
    name with the sample libraries its programs.csv names ('real-train: SFZ (Philharmonia Orchestra samples, ...)')."""
    lines = []
    for font in fonts:
        if is_sfz_library(font):
            libraries = check_sfz_library(Path(font)).sources
            lines.append(f"{Path(font).name}: SFZ ({', '.join(libraries) or 'no source named'})")
        else:
            lines.append(Path(font).name)
    return lines


def _prepare_out(out: Path) -> None:
    """Refuse to replace anything but an earlier corpus: the whole folder is swapped in at the end."""
    if out.exists() and not out.is_dir():
        raise InstrumentIdError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / "musicnet_metadata.csv").is_file():
        raise InstrumentIdError(f"{out}: folder is not empty and holds no musicnet_metadata.csv; "
                                "refusing to replace it, choose another --out")


def synthesize_corpus(out: str | os.PathLike, minutes: float, seed: int, soundfonts: list[str] | None = None,
                      jobs: int = -1, mixed_fonts_share: float = MIXED_FONTS_SHARE,
                      no_instrument_share: float = NO_INSTRUMENT_SHARE, ensemble_set: str = "musicnet",
                      fallbacks: list[str] | None = None) -> list[dict[str, str]]:
    """Write a whole corpus to out (replacing an earlier one in one rename); return the metadata rows."""
    if not (math.isfinite(minutes) and minutes > 0):
        raise InstrumentIdError(f"--minutes must be positive, got {minutes}")
    fonts = [check_soundfont(f) for f in soundfonts] if soundfonts else [default_soundfont()]
    extra = [check_soundfont(f) for f in fallbacks or []]
    load_fluidsynth()
    load_pyroomacoustics()
    plans = plan_corpus(minutes, seed, fonts, mixed_fonts_share, no_instrument_share, ensemble_set, extra)
    out = Path(out)
    _prepare_out(out)
    with atomic_dir(out) as tmp:
        for split in ("train", "test"):
            (tmp / f"{split}_data").mkdir()
            (tmp / f"{split}_labels").mkdir()
        tasks = (delayed(synthesize_piece)(plan, str(tmp)) for plan in plans)
        results = Parallel(n_jobs=min(jobs if jobs > 0 else cpu_count(), len(plans)),
                           return_as="generator_unordered")(tasks)
        rows = list(tqdm(results, total=len(plans), desc="synth", unit="piece"))
        write_text_atomic(tmp / "musicnet_metadata.csv", metadata_csv_text(rows))
        write_text_atomic(tmp / TIMBRE_SOURCES_FILE, json.dumps(describe_sources([*fonts, *extra]), indent=1) + "\n")
    return rows


def add_parser(parser: argparse.ArgumentParser) -> None:
    """Arguments of `instrument-id synth`."""
    parser.add_argument("--out", required=True, help="corpus folder to write (MusicNet layout)")
    parser.add_argument("--minutes", type=float, required=True, help="minutes of music to render")
    parser.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives the same corpus")
    parser.add_argument("--soundfont", nargs="+", action="extend", metavar="F",
                        help="one or more timbre sources, chosen per recording or per part: .sf2/.sf3 soundfonts "
                             "(FluidSynth) or TiMidity++ .cfg patch sets such as /etc/timidity/freepats.cfg "
                             "(default: pretty_midi's TimGM6mb)")
    parser.add_argument("--mixed-fonts", type=float, default=MIXED_FONTS_SHARE, metavar="SHARE",
                        help="share of pieces of two or more parts whose parts each draw their own soundfont "
                             f"(default {MIXED_FONTS_SHARE}; 0: one soundfont per piece)")
    parser.add_argument("--no-instrument", type=float, default=NO_INSTRUMENT_SHARE, metavar="SHARE",
                        help="share of the pieces that hold no instrument (silence, noise, hum, crackle, tones; "
                             f"default {NO_INSTRUMENT_SHARE}; 0: none, and the corpus is as before they existed)")
    parser.add_argument("--fallback-soundfont", nargs="+", action="extend", metavar="F", default=[],
                        help="timbre sources that play only the parts no --soundfont source has (e.g. a GM soundfont's "
                             "harpsichord beside an SFZ library of real orchestral notes)")
    parser.add_argument("--ensembles", choices=tuple(ENSEMBLE_SETS), default="musicnet",
                        help="which ensembles pieces are drawn from: musicnet (MusicNet's chamber ensembles and "
                             "distractor pieces, default), solos (each instrument alone, real distractors alone), all, "
                             "or all-with-drums (also drum kits from the soundfonts, alone and with others)")
    parser.add_argument("--jobs", type=int, default=-1, help="parallel render processes (default: all cores)")


def run(args: argparse.Namespace) -> int:
    """Render the corpus and report what was written."""
    started = time.perf_counter()
    rows = synthesize_corpus(args.out, args.minutes, args.seed, args.soundfont, args.jobs, args.mixed_fonts,
                             args.no_instrument, args.ensembles, args.fallback_soundfont)
    seconds = sum(int(r["seconds"]) for r in rows)
    print(f"wrote {len(rows)} recordings ({seconds / 60:.1f} min) to {args.out} "
          f"in {time.perf_counter() - started:.1f} s")
    return 0
