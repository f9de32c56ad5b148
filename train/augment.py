"""Nine seeded augmentations of one analysis window (audiomentations wherever it has the transform).

Variant order is fixed (VARIANT_NAMES); `n_variants=k` keeps the first k. Each variant is drawn from its own
seed, derived from (window seed, variant index), so a variant never depends on which others were computed,
nor on batching or worker count. audiomentations draws from the global `random` and `np.random`; those are
seeded per variant and restored afterwards, so this is reproducible in one process or many (joblib/loky),
but must not run in several threads of one process at once.
"""

from __future__ import annotations

import contextlib
import math
import random
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import audiomentations as am
import numpy as np
from audiomentations.augmentations.add_color_noise import generate_decaying_white_noise
from audiomentations.core.transforms_interface import BaseWaveformTransform
from audiomentations.core.utils import calculate_desired_noise_rms
from scipy.signal.windows import tukey
from tqdm import tqdm

from instrument_id.errors import InstrumentIdError

AUGMENT_VERSION = 1

# Every random range in one place; stored with the feature cache so a rebuild can tell what made it.
SETTINGS: dict[str, Any] = {
    "version": AUGMENT_VERSION,
    "gaussian_noise_snr_db": (20.0, 40.0),
    "background_mask_fraction": (0.125, 0.5),
    "background_snr_db": (5.0, 20.0),
    "background_fade_seconds": 0.01,
    "background_noise_f_decay_db_per_octave": (-6.0, -3.0),
    "pitch_shift_semitones_abs": (0.5, 2.0),
    "harmonic_noise_snr_db": (10.0, 25.0),
    "gain_sections_db": (-12.0, 3.0),
    "gain_sections_transition_seconds": (0.2, 1.0),
    "eq_band_gain_db": (-6.0, 6.0),
    "gain_db": (-12.0, 6.0),
    "speed_change_abs": (0.03, 0.10),
    "normalize_peak_dbfs": (-6.0, -0.5),
}

VariantFn = Callable[[np.ndarray, int, np.random.Generator, "np.ndarray | None"], tuple[np.ndarray, dict[str, Any]]]


def _plain(value: Any) -> Any:
    """numpy scalars -> Python numbers so recorded parameters are JSON-ready."""
    return value.item() if isinstance(value, np.generic) else value


def _run(transform: BaseWaveformTransform, y: np.ndarray, sample_rate_hz: int) -> tuple[np.ndarray, dict[str, Any]]:
    """Apply one audiomentations transform and return its output with the parameters it drew."""
    out = transform(y, sample_rate_hz)
    params = {k: _plain(v) for k, v in transform.parameters.items() if k != "should_apply"}
    return out, params


def _signed(rng: np.random.Generator, low: float, high: float) -> float:
    """A magnitude in [low, high] with a random sign, so no draw lands near 'no change'."""
    return float(rng.uniform(low, high) * rng.choice((-1.0, 1.0)))


def mix_under_mask(y: np.ndarray, background: np.ndarray, start_sample: int, snr_db: float,
                   fade_samples: int) -> np.ndarray:
    """Add `background` (mask_samples,) into y (samples,) from start_sample on, at snr_db below y's RMS, with faded edges."""
    mask_samples = len(background)
    signal_rms = float(np.sqrt(np.mean(np.square(y, dtype=np.float64))))
    background_rms = float(np.sqrt(np.mean(np.square(background, dtype=np.float64))))
    out = np.array(y, dtype=np.float32, copy=True)
    if signal_rms == 0.0 or background_rms == 0.0 or mask_samples == 0:
        return out
    gain = calculate_desired_noise_rms(signal_rms, snr_db) / background_rms
    # tukey ramps avoid clicks at the mask edges, which would add broadband energy no real room tone has
    ramp = tukey(mask_samples, alpha=min(1.0, 2.0 * fade_samples / mask_samples))  # (mask_samples,)
    out[start_sample:start_sample + mask_samples] += (gain * ramp * background).astype(np.float32)
    return out


def harmonic_noise(y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Noise with y's own magnitude spectrum (its partials) and random phases -> (samples,) float32 at y's RMS."""
    magnitude = np.abs(np.fft.rfft(y.astype(np.float64)))  # (samples // 2 + 1,)
    phases = np.exp(2j * np.pi * rng.random(magnitude.shape))
    return np.fft.irfft(magnitude * phases, n=len(y)).astype(np.float32)  # (samples,)


def _gaussian_noise(y, sample_rate_hz, rng, background):
    low, high = SETTINGS["gaussian_noise_snr_db"]
    return _run(am.AddGaussianSNR(min_snr_db=low, max_snr_db=high, p=1.0), y, sample_rate_hz)


def _masked_background(y, sample_rate_hz, rng, background):
    # The background must hold no instrument (room tone, noise): anything audible of another
    # instrument would make this window's label vector wrong. Without one, colored noise stands in.
    n = len(y)
    mask_samples = max(1, int(rng.uniform(*SETTINGS["background_mask_fraction"]) * n))
    start = int(rng.integers(0, n - mask_samples + 1))
    snr_db = float(rng.uniform(*SETTINGS["background_snr_db"]))
    params: dict[str, Any] = {"start_sample": start, "stop_sample": start + mask_samples, "snr_db": snr_db}
    if background is not None and np.any(background):
        source = np.resize(background, max(mask_samples, len(background)))  # tiles a short background
        offset = int(rng.integers(0, len(source) - mask_samples + 1))
        segment = source[offset:offset + mask_samples]
        params.update(source="caller", background_offset_sample=offset)
    else:
        f_decay = float(rng.uniform(*SETTINGS["background_noise_f_decay_db_per_octave"]))
        segment = generate_decaying_white_noise(mask_samples, f_decay, sample_rate_hz)  # (mask_samples,)
        params.update(source="colored_noise", f_decay_db_per_octave=f_decay)
    fade_samples = int(round(SETTINGS["background_fade_seconds"] * sample_rate_hz))
    return mix_under_mask(y, segment, start, snr_db, fade_samples), params


def _pitch_shift(y, sample_rate_hz, rng, background):
    # signalsmith_stretch: audiomentations' fastest method (~15 ms per 2 s window against ~19 ms for librosa)
    semitones = _signed(rng, *SETTINGS["pitch_shift_semitones_abs"])
    transform = am.PitchShift(min_semitones=semitones, max_semitones=semitones, method="signalsmith_stretch", p=1.0)
    return _run(transform, y, sample_rate_hz)


def _harmonic_noise(y, sample_rate_hz, rng, background):
    snr_db = float(rng.uniform(*SETTINGS["harmonic_noise_snr_db"]))
    return y + harmonic_noise(y, rng) * np.float32(10.0 ** (-snr_db / 20.0)), {"snr_db": snr_db}


def _gain_sections(y, sample_rate_hz, rng, background):
    # two independent fades make up to three sections of different loudness
    low_db, high_db = SETTINGS["gain_sections_db"]
    shortest_s, longest_s = SETTINGS["gain_sections_transition_seconds"]
    out, transitions = y, []
    for _ in range(2):
        transform = am.GainTransition(min_gain_db=low_db, max_gain_db=high_db, min_duration=shortest_s,
                                      max_duration=longest_s, duration_unit="seconds", p=1.0)
        out, params = _run(transform, out, sample_rate_hz)
        transitions.append(params)
    return out, {"transitions": transitions}


def _eq(y, sample_rate_hz, rng, background):
    low_db, high_db = SETTINGS["eq_band_gain_db"]
    transform = am.SevenBandParametricEQ(min_gain_db=low_db, max_gain_db=high_db, p=1.0)
    out = transform(y, sample_rate_hz)
    bands = [transform.low_shelf_filter, *transform.peaking_filters, transform.high_shelf_filter]
    return out, {"bands": [{k: _plain(v) for k, v in band.parameters.items() if k != "should_apply"} for band in bands]}


def _gain(y, sample_rate_hz, rng, background):
    low_db, high_db = SETTINGS["gain_db"]
    peak = float(np.max(np.abs(y)))
    if peak > 0.0:
        # stay below full scale: a boost the peak guard scaled back could leave the window unchanged
        high_db = max(low_db, min(high_db, -20.0 * math.log10(peak) - 0.1))
    return _run(am.Gain(min_gain_db=low_db, max_gain_db=high_db, p=1.0), y, sample_rate_hz)


def _speed(y, sample_rate_hz, rng, background):
    # resampling and playing back at the old rate changes tempo and pitch together
    speed = 1.0 + _signed(rng, *SETTINGS["speed_change_abs"])
    target_rate_hz = int(round(sample_rate_hz / speed))
    faster, _ = _run(am.Resample(min_sample_rate=target_rate_hz, max_sample_rate=target_rate_hz, p=1.0), y, sample_rate_hz)
    # reflect padding keeps the instrument sounding to the end instead of adding silence
    fit = am.AdjustDuration(duration_samples=len(y), padding_mode="reflect", p=1.0)
    return fit(faster, sample_rate_hz), {"speed": sample_rate_hz / target_rate_hz, "target_rate_hz": target_rate_hz}


def _normalize(y, sample_rate_hz, rng, background):
    # a random target peak, so an already normalized window still changes
    target_dbfs = float(rng.uniform(*SETTINGS["normalize_peak_dbfs"]))
    out = am.Normalize(apply_to="all", p=1.0)(y, sample_rate_hz)
    out = am.Gain(min_gain_db=target_dbfs, max_gain_db=target_dbfs, p=1.0)(out, sample_rate_hz)
    return out, {"target_peak_dbfs": target_dbfs}


VARIANTS: tuple[tuple[str, VariantFn], ...] = (
    ("gaussian_noise", _gaussian_noise),
    ("masked_background", _masked_background),
    ("pitch_shift", _pitch_shift),
    ("harmonic_noise", _harmonic_noise),
    ("gain_sections", _gain_sections),
    ("eq", _eq),
    ("gain", _gain),
    ("speed", _speed),
    ("normalize", _normalize),
)
VARIANT_NAMES: tuple[str, ...] = tuple(name for name, _ in VARIANTS)


@contextlib.contextmanager
def seeded_global_rngs(seed: int) -> Iterator[None]:
    """Seed the global generators audiomentations draws from, then give the caller its own state back."""
    python_state, numpy_state = random.getstate(), np.random.get_state()
    random.seed(seed)
    np.random.seed(seed)
    try:
        yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)


def _fit_peak(y: np.ndarray) -> np.ndarray:
    """Scale down anything above full scale (no clipping distortion), then clip float rounding."""
    out = am.Normalize(apply_to="only_too_loud_sounds", p=1.0)(np.asarray(y, dtype=np.float32), 1)
    return np.clip(out, -1.0, 1.0).astype(np.float32)


def window_seed(seed: int, window_index: int) -> int:
    """The seed augment_windows gives window `window_index` under `seed` (independent of batching)."""
    return int(np.random.SeedSequence([seed, window_index]).generate_state(1, dtype=np.uint64)[0])


def _check_audio(y: Any, what: str) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1 or len(y) == 0:
        raise InstrumentIdError(f"{what} must be a non-empty 1-D signal, got shape {y.shape}")
    if not np.all(np.isfinite(y)):
        raise InstrumentIdError(f"{what} contains NaN or infinite samples")
    return y.astype(np.float32)


def augment_window(y: np.ndarray, sample_rate_hz: int, seed: int, background: np.ndarray | None = None, *,
                   n_variants: int = len(VARIANTS), describe: bool = False
                   ) -> np.ndarray | tuple[np.ndarray, list[dict[str, Any]]]:
    """(samples,) -> (n_variants, samples) float32 with peak <= 1; with describe, also each variant's drawn parameters.

    `background` must be non-instrument audio (room tone, noise), never another instrument's window."""
    y = _check_audio(y, "window")
    if background is not None:
        background = _check_audio(background, "background")
    if not 0 <= n_variants <= len(VARIANTS):
        raise InstrumentIdError(f"n_variants must be 0..{len(VARIANTS)}, got {n_variants}")
    if sample_rate_hz <= 0 or seed < 0:
        raise InstrumentIdError(f"need a positive sample rate and a non-negative seed, got {sample_rate_hz} Hz, seed {seed}")
    out = np.empty((n_variants, len(y)), dtype=np.float32)  # (n_variants, samples)
    described = []
    for index, (name, variant) in enumerate(VARIANTS[:n_variants]):
        sequence = np.random.SeedSequence(seed, spawn_key=(index,))
        with seeded_global_rngs(int(sequence.generate_state(1)[0])):
            augmented, params = variant(y, sample_rate_hz, np.random.default_rng(sequence), background)
            out[index] = _fit_peak(augmented)
        described.append({"name": name, **params})
    return (out, described) if describe else out


def augment_windows(windows: np.ndarray, sample_rate_hz: int, seed: int, n_variants: int = len(VARIANTS),
                    backgrounds: Sequence[np.ndarray | None] | np.ndarray | None = None,
                    progress: bool = True) -> np.ndarray:
    """(n, samples) -> (n, n_variants, samples) float32; window i uses window_seed(seed, i)."""
    windows = np.asarray(windows)
    if windows.ndim != 2:
        raise InstrumentIdError(f"windows must have shape (n, samples), got {windows.shape}")
    if backgrounds is not None and len(backgrounds) != len(windows):
        raise InstrumentIdError(f"got {len(backgrounds)} backgrounds for {len(windows)} windows")
    if not 0 <= n_variants <= len(VARIANTS):
        raise InstrumentIdError(f"n_variants must be 0..{len(VARIANTS)}, got {n_variants}")
    out = np.empty((len(windows), n_variants, windows.shape[1]), dtype=np.float32)  # (n, n_variants, samples)
    for i in tqdm(range(len(windows)), desc="augment", unit="window", disable=None if progress else True):
        background = None if backgrounds is None else backgrounds[i]
        out[i] = augment_window(windows[i], sample_rate_hz, window_seed(seed, i), background, n_variants=n_variants)
    return out
