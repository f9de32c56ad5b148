"""The recording chain after the room: microphone colour, band limits, noise floor, compression, level and codec.

Each stage is applied with its own probability and seeded parameters; record() returns the audio and one short
text per stage applied, for the metadata. audiomentations does the filters (seeded through the global generators
it draws from, restored afterwards); the compressor and hum are a few lines of scipy; the lossy codecs are
libsndfile's MP3 (LAME) and Ogg Vorbis encoders, round-tripped in memory.
"""

from __future__ import annotations

import io
import math

import audiomentations as am
import numpy as np
import soundfile as sf
from audiomentations.augmentations.add_color_noise import generate_decaying_white_noise
from scipy import signal

from instrument_id.errors import InstrumentIdError
from train.augment import seeded_global_rngs
from train.synth_perform import SAMPLE_RATE_HZ

EQ_PROBABILITY = 0.7
BAND_LIMIT_PROBABILITY = 0.35
NOISE_PROBABILITY = 0.6
HUM_PROBABILITY = 0.15
COMPRESSION_PROBABILITY = 0.5
CODEC_PROBABILITY = 0.3
SHELF_GAIN_DB = 6.0  # +-, low shelf 80-400 Hz, high shelf 2-10 kHz
PEAK_GAIN_DB = (2.0, 8.0)  # +-, one or two peaks 200 Hz - 6 kHz
HIGH_PASS_HZ = (40.0, 300.0)  # log-uniform
LOW_PASS_HZ = (3400.0, 16000.0)  # log-uniform: telephone-like to nearly full band
NOISE_DB = (-70.0, -40.0)  # noise RMS relative to the recording's peak
HUM_DB = (-70.0, -50.0)
NOISE_COLOURS = {"white": 0.0, "pink": -3.01, "brown": -6.02}  # dB per octave
COMPRESSION_THRESHOLD_DB = (-30.0, -12.0)  # relative to the peak
COMPRESSION_RATIO = (1.5, 4.0)
PEAK_DBFS = (-9.0, -1.0)
# libsndfile's compression level, 0 best .. 1 smallest; MP3 refuses 1.0, and constant bitrate keeps it predictable
CODECS = {"mp3": ("MP3", "MPEG_LAYER_III", (0.3, 0.85)), "vorbis": ("OGG", "VORBIS", (0.3, 0.9))}


def _loguniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(math.exp(rng.uniform(math.log(low), math.log(high))))


def _signed(rng: np.random.Generator, low: float, high: float) -> float:
    return float(rng.uniform(low, high) * rng.choice((-1.0, 1.0)))


def _peak(y: np.ndarray) -> float:
    return float(np.max(np.abs(y), initial=0.0))


def _eq(rng: np.random.Generator, y: np.ndarray) -> tuple[np.ndarray, str]:
    """A microphone's and a room position's colour: two shelves and one or two peaks."""
    low_hz, high_hz = rng.uniform(80.0, 400.0), rng.uniform(2000.0, 10000.0)
    low_db, high_db = rng.uniform(-SHELF_GAIN_DB, SHELF_GAIN_DB), rng.uniform(-SHELF_GAIN_DB, SHELF_GAIN_DB)
    transforms = [am.LowShelfFilter(min_center_freq=low_hz, max_center_freq=low_hz, min_gain_db=low_db,
                                    max_gain_db=low_db, p=1.0),
                  am.HighShelfFilter(min_center_freq=high_hz, max_center_freq=high_hz, min_gain_db=high_db,
                                     max_gain_db=high_db, p=1.0)]
    text = [f"low shelf {low_hz:.0f} Hz {low_db:+.1f} dB", f"high shelf {high_hz / 1000:.1f} kHz {high_db:+.1f} dB"]
    for _ in range(int(rng.integers(1, 3))):
        center_hz, gain_db, q = _loguniform(rng, 200.0, 6000.0), _signed(rng, *PEAK_GAIN_DB), rng.uniform(0.7, 3.0)
        transforms.append(am.PeakingFilter(min_center_freq=center_hz, max_center_freq=center_hz, min_gain_db=gain_db,
                                           max_gain_db=gain_db, min_q=q, max_q=q, p=1.0))
        text.append(f"peak {center_hz / 1000:.2f} kHz {gain_db:+.1f} dB")
    for transform in transforms:
        y = transform(y, SAMPLE_RATE_HZ)
    return y, "eq " + " / ".join(text)


def _band_limit(rng: np.random.Generator, y: np.ndarray) -> tuple[np.ndarray, str]:
    """A narrower channel: a high-pass and a low-pass (telephone-like at the narrow end)."""
    high_pass_hz, low_pass_hz = _loguniform(rng, *HIGH_PASS_HZ), _loguniform(rng, *LOW_PASS_HZ)
    rolloff = int(rng.choice((12, 24)))
    for kind, cutoff in ((am.HighPassFilter, high_pass_hz), (am.LowPassFilter, low_pass_hz)):
        y = kind(min_cutoff_freq=cutoff, max_cutoff_freq=cutoff, min_rolloff=rolloff, max_rolloff=rolloff,
                 p=1.0)(y, SAMPLE_RATE_HZ)
    return y, f"band {high_pass_hz:.0f} Hz-{low_pass_hz / 1000:.1f} kHz"


def _noise(rng: np.random.Generator, y: np.ndarray) -> tuple[np.ndarray, str]:
    """A noise floor (preamp hiss, room tone): white, pink or brown, at NOISE_DB under the peak."""
    colour = str(rng.choice(list(NOISE_COLOURS)))
    level_db = rng.uniform(*NOISE_DB)
    noise = generate_decaying_white_noise(len(y), NOISE_COLOURS[colour], SAMPLE_RATE_HZ)  # (n,) unit RMS
    return y + noise * np.float32(_peak(y) * 10.0 ** (level_db / 20.0)), f"{colour} noise {level_db:.0f} dB"


def _hum(rng: np.random.Generator, y: np.ndarray) -> tuple[np.ndarray, str]:
    """Mains hum: 50 or 60 Hz and a few harmonics of falling level, at HUM_DB under the peak."""
    mains_hz, level_db = float(rng.choice((50.0, 60.0))), rng.uniform(*HUM_DB)
    t_seconds = np.arange(len(y)) / SAMPLE_RATE_HZ  # (n,)
    hum = sum(rng.uniform(0.2, 1.0) / k * np.sin(2 * np.pi * k * mains_hz * t_seconds + rng.uniform(0, 2 * np.pi))
              for k in range(1, 6))  # (n,)
    hum *= _peak(y) * 10.0 ** (level_db / 20.0) / max(float(np.sqrt(np.mean(hum**2))), 1e-12)
    return (y + hum).astype(np.float32), f"hum {mains_hz:.0f} Hz {level_db:.0f} dB"


def _compress(rng: np.random.Generator, y: np.ndarray) -> tuple[np.ndarray, str]:
    """Mild feed-forward compression: an RMS detector, a soft ratio above a threshold, a smoothed gain."""
    threshold_db, ratio = rng.uniform(*COMPRESSION_THRESHOLD_DB), rng.uniform(*COMPRESSION_RATIO)
    detector_seconds, release_seconds = rng.uniform(0.005, 0.03), rng.uniform(0.05, 0.3)
    peak = max(_peak(y), 1e-12)
    pole = math.exp(-1.0 / (detector_seconds * SAMPLE_RATE_HZ))
    power = signal.lfilter([1.0 - pole], [1.0, -pole], np.square(y / peak, dtype=np.float64))  # (n,)
    level_db = 10.0 * np.log10(np.maximum(power, 1e-12))  # (n,) re the peak
    reduction_db = -np.maximum(level_db - threshold_db, 0.0) * (1.0 - 1.0 / ratio)  # (n,)
    pole = math.exp(-1.0 / (release_seconds * SAMPLE_RATE_HZ))
    reduction_db = signal.lfilter([1.0 - pole], [1.0, -pole], reduction_db)  # (n,) smoothed
    return (y * 10.0 ** (reduction_db / 20.0)).astype(np.float32), f"compressor {threshold_db:.0f} dB {ratio:.1f}:1"


def codec_round_trip(y: np.ndarray, codec: str, compression_level: float) -> tuple[np.ndarray, float]:
    """(n,) y encoded and decoded in memory by a lossy codec; also the bitrate in kbit/s. Length is kept."""
    if codec not in CODECS:
        raise InstrumentIdError(f"unknown codec {codec!r}; known: {', '.join(CODECS)}")
    container, subtype, _levels = CODECS[codec]
    buffer = io.BytesIO()
    mode = "CONSTANT" if container == "MP3" else None
    with sf.SoundFile(buffer, "w", SAMPLE_RATE_HZ, 1, subtype=subtype, format=container,
                      compression_level=compression_level, bitrate_mode=mode) as handle:
        handle.write(np.clip(y, -1.0, 1.0))
    kbps = buffer.tell() * 8 / (len(y) / SAMPLE_RATE_HZ) / 1000
    buffer.seek(0)
    decoded, _rate = sf.read(buffer, dtype="float32")  # (m,) m == n for libsndfile's MP3 and Vorbis
    out = np.zeros(len(y), dtype=np.float32)  # a decoder padding a frame must not shift the labels
    out[:min(len(y), len(decoded))] = decoded[:len(y)]
    return out, kbps


STAGES = ((EQ_PROBABILITY, _eq), (BAND_LIMIT_PROBABILITY, _band_limit), (NOISE_PROBABILITY, _noise),
          (HUM_PROBABILITY, _hum), (COMPRESSION_PROBABILITY, _compress))


def record(rng: np.random.Generator, y: np.ndarray, keep_level: bool = False) -> tuple[np.ndarray, list[str]]:
    """(n,) mix -> (n,) float32 recording with peak <= 1, and one text per stage applied. The peak is drawn from
    PEAK_DBFS unless keep_level (a recording of no instrument keeps its drawn levels: a quiet room stays quiet)."""
    applied = []
    with seeded_global_rngs(int(rng.integers(0, 2**32 - 1))):  # audiomentations draws noise from them
        for probability, stage in STAGES:
            if rng.random() < probability:
                y, text = stage(rng, np.asarray(y, dtype=np.float32))
                applied.append(text)
    peak_dbfs = rng.uniform(*PEAK_DBFS)
    peak = _peak(y)
    if not keep_level:
        y = np.asarray(y if peak == 0.0 else y * (10.0 ** (peak_dbfs / 20.0) / peak), dtype=np.float32)
        applied.append(f"peak {peak_dbfs:.1f} dBFS")
    if rng.random() < CODEC_PROBABILITY:
        codec = str(rng.choice(list(CODECS)))
        y, kbps = codec_round_trip(y, codec, rng.uniform(*CODECS[codec][2]))
        applied.append(f"{codec} {kbps:.0f} kbps")
    peak = _peak(y)
    return (y / peak * 0.999 if peak > 0.999 else y).astype(np.float32), applied  # a codec may overshoot a little
