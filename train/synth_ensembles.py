"""Who plays: instrument specs (MusicNet's 11 and unlabelled others) and the ensembles pieces are drawn from."""

from __future__ import annotations

from dataclasses import dataclass

from instrument_id.instruments import PROGRAM_TO_INDEX
from train.musicnet import NO_INSTRUMENT_ENSEMBLE, NONE_OF_THE_11_PREFIX


PERCUSSION_PROGRAM = -1  # no SFZ library or patch set program: drums come from the soundfonts


@dataclass(frozen=True)
class InstrumentSpec:
    """How one instrument is written: its GM program (1-based), usual range and performance traits."""

    program: int
    low_pitch: int
    high_pitch: int
    keyboard: bool = False  # written in chords and figures (also harp, guitars, mallets); no swells within a note
    vibrato_cents: tuple[float, float] = (0.0, 0.0)  # (min, max) depth; 0 means no vibrato
    plucked: bool = False  # a decaying tone written as lines (bass guitar): no swells, no clipped staccato
    percussion: bool = False  # a GM drum kit (channel 10, bank 128): its "pitches" are drums, its program unused

    @property
    def labelled(self) -> bool:
        """Whether MusicNet labels this instrument (it is one of the 11)."""
        return not self.percussion and self.program in PROGRAM_TO_INDEX

    @property
    def source_program(self) -> int:
        """The 0-based program a timbre source must have to play it; PERCUSSION_PROGRAM for a drum kit, which only a
        General MIDI soundfont (bank 128) plays."""
        return PERCUSSION_PROGRAM if self.percussion else self.program - 1


SPECS: dict[str, InstrumentSpec] = {
    "piano": InstrumentSpec(1, 24, 103, keyboard=True),
    "harpsichord": InstrumentSpec(7, 29, 89, keyboard=True),
    "violin": InstrumentSpec(41, 55, 96, vibrato_cents=(15, 35)),
    "viola": InstrumentSpec(42, 48, 84, vibrato_cents=(15, 35)),
    "cello": InstrumentSpec(43, 36, 76, vibrato_cents=(15, 35)),
    "contrabass": InstrumentSpec(44, 28, 60, vibrato_cents=(10, 25)),
    "horn": InstrumentSpec(61, 41, 77, vibrato_cents=(0, 8)),
    "oboe": InstrumentSpec(69, 58, 89, vibrato_cents=(10, 25)),
    "bassoon": InstrumentSpec(71, 34, 72, vibrato_cents=(8, 20)),
    "clarinet": InstrumentSpec(72, 50, 89, vibrato_cents=(0, 6)),
    "flute": InstrumentSpec(74, 60, 96, vibrato_cents=(12, 28)),
    # Not among MusicNet's 11, so never labelled: heard in the distractor ensembles below so that a model learns
    # that some other instrument means none of the 11. Chosen across GM families; all sounding (concert) ranges.
    "electric piano": InstrumentSpec(5, 28, 100, keyboard=True),
    "vibraphone": InstrumentSpec(12, 53, 89, keyboard=True),
    "marimba": InstrumentSpec(13, 45, 96, keyboard=True),
    "church organ": InstrumentSpec(20, 24, 96, keyboard=True),
    "accordion": InstrumentSpec(22, 41, 93, keyboard=True),
    "harmonica": InstrumentSpec(23, 60, 96, vibrato_cents=(0, 20)),
    "nylon guitar": InstrumentSpec(25, 40, 83, keyboard=True),
    "steel guitar": InstrumentSpec(26, 40, 84, keyboard=True),
    "electric guitar": InstrumentSpec(28, 40, 86, keyboard=True),
    "overdriven guitar": InstrumentSpec(30, 40, 88, vibrato_cents=(10, 40)),
    "distortion guitar": InstrumentSpec(31, 40, 88, vibrato_cents=(10, 40)),
    "electric bass": InstrumentSpec(34, 28, 67, plucked=True),
    "harp": InstrumentSpec(47, 24, 103, keyboard=True),
    "choir": InstrumentSpec(53, 40, 81, vibrato_cents=(10, 30)),
    "voice": InstrumentSpec(54, 48, 81, vibrato_cents=(25, 60)),
    "trumpet": InstrumentSpec(57, 52, 82, vibrato_cents=(0, 12)),
    "trombone": InstrumentSpec(58, 40, 72, vibrato_cents=(0, 12)),
    "tuba": InstrumentSpec(59, 28, 58, vibrato_cents=(0, 8)),
    "alto sax": InstrumentSpec(66, 49, 80, vibrato_cents=(10, 30)),
    "tenor sax": InstrumentSpec(67, 44, 75, vibrato_cents=(10, 30)),
    "baritone sax": InstrumentSpec(68, 36, 68, vibrato_cents=(8, 25)),
    "banjo": InstrumentSpec(106, 48, 81, keyboard=True),
    # GM percussion keys 35 (bass drum) .. 59 (ride cymbal): kicks, snares, toms, hi-hats, cymbals
    "drum kit": InstrumentSpec(0, 35, 59, plucked=True, percussion=True),  # program 0: none, it is channel 10
}


@dataclass(frozen=True)
class Ensemble:
    """An ensemble: its name, how often it is drawn, its parts as (instrument, role) and the work's form."""

    name: str
    weight: float
    parts: tuple[tuple[str, str], ...]
    form: str

    @property
    def instruments(self) -> frozenset[str]:
        """The distinct instruments of the ensemble."""
        return frozenset(name for name, _role in self.parts)

    @property
    def labelled_instruments(self) -> frozenset[str]:
        """The distinct instruments of the ensemble that MusicNet labels."""
        return frozenset(name for name in self.instruments if SPECS[name].labelled)

    @property
    def distractor(self) -> bool:
        """Whether some part is an instrument outside the 11 (heard, never labelled)."""
        return self.labelled_instruments != self.instruments


_STRING_QUARTET = (("violin", "melody"), ("violin", "counter"), ("viola", "inner"), ("cello", "bass"))
# Weights follow MusicNet's imbalance (solo piano far ahead, then string quartet, accompanied violin, piano trio),
# softened so that a ten-minute corpus still holds the rarer ensembles.
MUSICNET_ENSEMBLES: tuple[Ensemble, ...] = (
    Ensemble("Solo Piano", 30, (("piano", "keys"),), "Sonata"),
    Ensemble("String Quartet", 14, _STRING_QUARTET, "String Quartet"),
    Ensemble("Accompanied Violin", 7, (("violin", "melody"), ("piano", "accomp")), "Violin Sonata"),
    Ensemble("Piano Trio", 7, (("violin", "melody"), ("cello", "counter"), ("piano", "accomp")), "Piano Trio"),
    Ensemble("Accompanied Cello", 4, (("cello", "melody"), ("piano", "accomp")), "Cello Sonata"),
    Ensemble("Solo Cello", 4, (("cello", "solo"),), "Suite"),
    Ensemble("Solo Violin", 3, (("violin", "solo"),), "Partita"),
    Ensemble("Wind Quintet", 4, (("flute", "melody"), ("oboe", "counter"), ("clarinet", "inner"),
                                 ("horn", "inner"), ("bassoon", "bass")), "Wind Quintet"),
    Ensemble("Piano Quartet", 3, (("violin", "melody"), ("viola", "inner"), ("cello", "counter"),
                                  ("piano", "accomp")), "Piano Quartet"),
    Ensemble("Piano Quintet", 3, (("piano", "accomp"), ("violin", "melody"), ("viola", "inner"),
                                  ("cello", "counter"), ("contrabass", "bass")), "Piano Quintet"),
    Ensemble("Clarinet Quintet", 3, (("clarinet", "melody"), *_STRING_QUARTET[1:2], ("violin", "inner"),
                                     ("viola", "inner"), ("cello", "bass")), "Clarinet Quintet"),
    Ensemble("Horn Trio", 3, (("horn", "melody"), ("violin", "counter"), ("piano", "accomp")), "Horn Trio"),
    Ensemble("Violin and Harpsichord", 3, (("violin", "melody"), ("harpsichord", "accomp")), "Sonata"),
    Ensemble("Flute and Harpsichord", 1, (("flute", "melody"), ("harpsichord", "accomp")), "Sonata"),
    Ensemble("Solo Flute", 2, (("flute", "solo"),), "Partita"),
    Ensemble("Pairs Clarinet-Horn-Bassoon", 2, (("clarinet", "melody"), ("horn", "inner"), ("bassoon", "bass")),
             "Divertimento"),
    Ensemble("Clarinet-Cello-Piano Trio", 2, (("clarinet", "melody"), ("cello", "counter"), ("piano", "accomp")),
             "Trio"),
    Ensemble("Wind and Strings Octet", 2, (("clarinet", "melody"), ("horn", "inner"), ("bassoon", "counter"),
                                           ("violin", "melody"), ("violin", "inner"), ("viola", "inner"),
                                           ("cello", "counter"), ("contrabass", "bass")), "Octet"),
    Ensemble("Viola Quintet", 1, (*_STRING_QUARTET[:3], ("viola", "inner"), ("cello", "bass")), "String Quintet"),
    Ensemble("String Sextet", 1, (*_STRING_QUARTET[:3], ("viola", "inner"), ("cello", "counter"), ("cello", "bass")),
             "String Sextet"),
)

# Other instruments with at least one of the 11, which plays a "sparse" part (few sections): many windows then hold
# only unlabelled instruments, the negatives that teach "none of the 11". About 18% of the total weight, added beside
# MUSICNET_ENSEMBLES so that the MusicNet-like ensembles keep their proportions among themselves.
DISTRACTOR_ENSEMBLES: tuple[Ensemble, ...] = (
    Ensemble("Trumpet and Piano", 1.5, (("trumpet", "melody"), ("piano", "sparse accomp")), "Trumpet Sonata"),
    Ensemble("Trumpet and Harpsichord", 0.5, (("trumpet", "melody"), ("harpsichord", "sparse accomp")), "Concerto"),
    Ensemble("Tenor Sax and Piano", 1.5, (("tenor sax", "melody"), ("piano", "sparse accomp")), "Ballad"),
    Ensemble("Alto Sax and Piano", 1, (("alto sax", "melody"), ("piano", "sparse accomp")), "Sonata"),
    Ensemble("Voice and Piano", 2, (("voice", "melody"), ("piano", "sparse accomp")), "Song"),
    Ensemble("Choir, Organ and Cello", 1, (("choir", "melody"), ("choir", "inner"), ("church organ", "accomp"),
                                           ("cello", "sparse bass")), "Anthem"),
    Ensemble("Organ and Violin", 1, (("church organ", "accomp"), ("violin", "sparse melody")), "Church Sonata"),
    Ensemble("Organ and Oboe", 1, (("church organ", "accomp"), ("oboe", "sparse melody")), "Chorale Prelude"),
    Ensemble("Guitar and Flute", 1.5, (("nylon guitar", "accomp"), ("flute", "sparse melody")), "Serenade"),
    Ensemble("Harp and Flute", 1, (("harp", "accomp"), ("flute", "sparse melody")), "Sonata"),
    Ensemble("Brass Quintet", 1.5, (("trumpet", "melody"), ("trumpet", "counter"), ("horn", "sparse inner"),
                                    ("trombone", "inner"), ("tuba", "bass")), "Brass Quintet"),
    Ensemble("Concert Band", 1, (("alto sax", "melody"), ("tenor sax", "counter"), ("trombone", "inner"),
                                 ("tuba", "bass"), ("clarinet", "sparse melody"), ("bassoon", "sparse bass")), "March"),
    Ensemble("Jazz Guitar Trio", 1.5, (("electric guitar", "melody"), ("electric bass", "bass"),
                                       ("piano", "sparse accomp")), "Standard"),
    Ensemble("Jazz Quartet", 1, (("baritone sax", "melody"), ("electric piano", "accomp"),
                                 ("contrabass", "sparse bass")), "Standard"),
    Ensemble("Accordion and Clarinet", 1, (("accordion", "accomp"), ("clarinet", "sparse melody")), "Dance Suite"),
    Ensemble("Vibraphone and Cello", 1, (("vibraphone", "melody"), ("cello", "sparse counter")), "Duo"),
    Ensemble("Marimba and Viola", 0.5, (("marimba", "melody"), ("viola", "sparse counter")), "Duo"),
    Ensemble("Rock Band and Violin", 1, (("overdriven guitar", "melody"), ("distortion guitar", "inner"),
                                         ("electric bass", "bass"), ("violin", "sparse melody")), "Song"),
    Ensemble("Folk Band and Fiddle", 1, (("steel guitar", "accomp"), ("banjo", "counter"), ("harmonica", "melody"),
                                         ("violin", "sparse melody")), "Ballad"),
)
# Solo lines and small groups of one family, as real solo recordings (Medley-solos-DB, a recital) are: each of the 11
# alone, and real distractors alone or together, so that "none of the 11" is also heard from a whole piece of brass
# or saxophone. Used by `synth --ensembles solos|all` (the real-note corpora); the default corpus keeps the two
# tables above, so its plans are unchanged.
SOLO_ENSEMBLES: tuple[Ensemble, ...] = (
    *(Ensemble(f"{name.title()} Recital", 2, ((name, "solo"),), "Solo") for name in
      ("piano", "harpsichord", "violin", "viola", "cello", "contrabass", "horn", "oboe", "bassoon", "clarinet",
       "flute")),
    Ensemble(NONE_OF_THE_11_PREFIX + "Trumpet Recital", 1.5, (("trumpet", "solo"),), "Solo"),
    Ensemble(NONE_OF_THE_11_PREFIX + "Trombone Recital", 1, (("trombone", "solo"),), "Solo"),
    Ensemble(NONE_OF_THE_11_PREFIX + "Tuba Recital", 0.5, (("tuba", "solo"),), "Solo"),
    Ensemble(NONE_OF_THE_11_PREFIX + "Alto Sax Recital", 1, (("alto sax", "solo"),), "Solo"),
    Ensemble(NONE_OF_THE_11_PREFIX + "Tenor Sax Recital", 1, (("tenor sax", "solo"),), "Solo"),
    Ensemble(NONE_OF_THE_11_PREFIX + "Brass Trio", 1, (("trumpet", "melody"), ("trombone", "inner"), ("tuba", "bass")), "Brass Trio"),
    Ensemble(NONE_OF_THE_11_PREFIX + "Sax and Tuba", 0.5, (("alto sax", "melody"), ("tuba", "bass")), "Duo"),
)
# Drums and percussion from the soundfonts (no SFZ library or patch set plays them), alone and with others: `synth
# --ensembles all-with-drums`. A table of its own so that the corpora of "all" (the shipped model's) stay as they were.
DRUM_ENSEMBLES: tuple[Ensemble, ...] = (
    Ensemble(NONE_OF_THE_11_PREFIX + "Drum Kit", 1, (("drum kit", "solo"),), "Groove"),
    Ensemble(NONE_OF_THE_11_PREFIX + "Drums and Bass", 1, (("drum kit", "accomp"), ("electric bass", "bass")), "Groove"),
    Ensemble(NONE_OF_THE_11_PREFIX + "Drums and Trumpet", 1, (("trumpet", "melody"), ("drum kit", "accomp")), "Standard"),
    Ensemble("Jazz Trio with Drums", 1, (("piano", "accomp"), ("contrabass", "bass"), ("drum kit", "inner")),
             "Standard"),
)
# No instrument at all (train/synth_nonmusic.py): silence, noise, hum, crackle, tones; its draw weight comes from
# `synth --no-instrument SHARE` (train/synth.py ensemble_weights), not from this table
NO_INSTRUMENT = Ensemble(NO_INSTRUMENT_ENSEMBLE, 0.0, (), "Room Tone")
ENSEMBLE_SETS: dict[str, tuple[Ensemble, ...]] = {
    "musicnet": MUSICNET_ENSEMBLES + DISTRACTOR_ENSEMBLES + (NO_INSTRUMENT,),
    "solos": SOLO_ENSEMBLES + (NO_INSTRUMENT,),
    "all": MUSICNET_ENSEMBLES + DISTRACTOR_ENSEMBLES + SOLO_ENSEMBLES + (NO_INSTRUMENT,),
    "all-with-drums": MUSICNET_ENSEMBLES + DISTRACTOR_ENSEMBLES + SOLO_ENSEMBLES + DRUM_ENSEMBLES + (NO_INSTRUMENT,),
}
ENSEMBLES: tuple[Ensemble, ...] = ENSEMBLE_SETS["musicnet"]
ENSEMBLE_BY_NAME: dict[str, Ensemble] = {e.name: e for e in ENSEMBLE_SETS["all-with-drums"]}
