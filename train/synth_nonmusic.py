"""Recordings with no instrument at all: what a microphone hears when nothing plays, so "none of the 11" is learnt.

A user's audio is not always music: the silence before a piece, a room's air conditioning, mains hum, a record's
crackle, a test tone, handling noise. The distractor ensembles teach that other instruments are none of the 11; these
teach that no instrument is none of them too. A recording is a chain of 1-6 s segments, each one kind drawn at a
level of its own; the corpus's recording chain (EQ, noise floor, compression, codecs) then colours it like any other.
Its label CSV has no rows, so every window is an all-zero row.
"""

from __future__ import annotations

import numpy as np

from train.synth_perform import SAMPLE_RATE_HZ

SEGMENT_SECONDS = (1.0, 6.0)
# kind -> (draw weight, level range in dBFS RMS)
KINDS: dict[str, tuple[float, tuple[float, float]]] = {
    "silence": (1.0, (-120.0, -70.0)),  # digital silence to a quiet preamp's hiss
    "white noise": (1.0, (-50.0, -15.0)),
    "pink noise": (1.5, (-50.0, -15.0)),  # rain, wind, air conditioning, a crowd's roar
    "brown noise": (1.0, (-45.0, -15.0)),  # rumble, traffic
    "hum": (1.0, (-50.0, -20.0)),  # mains, 50 or 60 Hz and its harmonics
    "crackle": (1.0, (-50.0, -20.0)),  # clicks and pops of vinyl, handling, a bad cable
    "tone": (0.7, (-40.0, -10.0)),  # test tones, sweeps, beeps, a feedback whistle
    "bursts": (0.8, (-45.0, -15.0)),  # band-limited noise grains: rustle, steps, applause-like
}


def _colored(rng: np.random.Generator, n: int, exponent: float) -> np.ndarray:
    """(n,) noise with power spectrum ~ 1 / f**exponent (0 white, 1 pink, 2 brown), unit RMS."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1.0 / SAMPLE_RATE_HZ)
    freqs[0] = freqs[1] if n > 1 else 1.0
    y = np.fft.irfft(spectrum / freqs ** (exponent / 2.0), n)
    return y / max(float(np.sqrt(np.mean(y * y))), 1e-12)


def _hum(rng: np.random.Generator, n: int) -> np.ndarray:
    t = np.arange(n) / SAMPLE_RATE_HZ
    mains = float(rng.choice([50.0, 60.0])) * (1.0 + rng.uniform(-0.002, 0.002))
    harmonics = rng.uniform(0.05, 1.0, size=6) ** 2
    return sum(a * np.sin(2 * np.pi * mains * (k + 1) * t + rng.uniform(0, 2 * np.pi))
               for k, a in enumerate(harmonics))


def _crackle(rng: np.random.Generator, n: int) -> np.ndarray:
    y = np.zeros(n)
    clicks = rng.random(n) < rng.uniform(2.0, 60.0) / SAMPLE_RATE_HZ  # 2-60 per second
    y[clicks] = rng.standard_normal(int(clicks.sum())) * rng.uniform(0.2, 1.0, int(clicks.sum()))
    decay = np.exp(-np.arange(int(0.003 * SAMPLE_RATE_HZ)) / (0.0005 * SAMPLE_RATE_HZ))  # ~0.5 ms ringing
    return np.convolve(y, decay)[:n] + 0.02 * _colored(rng, n, 1.0)


def _tone(rng: np.random.Generator, n: int) -> np.ndarray:
    t = np.arange(n) / SAMPLE_RATE_HZ
    seconds = n / SAMPLE_RATE_HZ
    style = rng.choice(["steady", "sweep", "beeps"])
    if style == "sweep":
        f0, f1 = np.sort(rng.uniform(np.log(40.0), np.log(12000.0), size=2))
        freq = np.exp(f0 + (f1 - f0) * t / seconds)  # logarithmic sweep
        return np.sin(2 * np.pi * np.cumsum(freq) / SAMPLE_RATE_HZ)
    freq = float(np.exp(rng.uniform(np.log(100.0), np.log(8000.0))))
    y = np.sin(2 * np.pi * freq * t)
    if style == "beeps":
        period = rng.uniform(0.2, 1.5)
        y *= (t % period) < period * rng.uniform(0.2, 0.6)
    return y


def _bursts(rng: np.random.Generator, n: int) -> np.ndarray:
    import scipy.signal

    low = float(np.exp(rng.uniform(np.log(100.0), np.log(3000.0))))
    high = min(low * rng.uniform(2.0, 8.0), 0.45 * SAMPLE_RATE_HZ)
    sos = scipy.signal.butter(2, [low, high], btype="bandpass", fs=SAMPLE_RATE_HZ, output="sos")
    noise = scipy.signal.sosfilt(sos, rng.standard_normal(n))
    envelope = np.zeros(n)
    for _ in range(int(rng.integers(2, 40) * n / SAMPLE_RATE_HZ) + 1):
        start, length = int(rng.integers(n)), int(rng.uniform(0.01, 0.3) * SAMPLE_RATE_HZ)
        envelope[start:start + length] += np.hanning(length)[: n - start] if length > 1 else 0.0
    return noise * envelope


def _segment(rng: np.random.Generator, kind: str, n: int) -> np.ndarray:
    """(n,) one segment of a kind at unit RMS (silence: unit-RMS white noise, scaled down by its level)."""
    if kind in ("silence", "white noise"):
        y = rng.standard_normal(n)
    elif kind == "pink noise":
        y = _colored(rng, n, 1.0)
    elif kind == "brown noise":
        y = _colored(rng, n, 2.0)
    else:
        y = {"hum": _hum, "crackle": _crackle, "tone": _tone, "bursts": _bursts}[kind](rng, n)
    rms = float(np.sqrt(np.mean(y * y)))
    return y / rms if rms > 0 else y


def render_nonmusic(rng: np.random.Generator, num_samples: int) -> tuple[np.ndarray, list[str]]:
    """(num_samples,) float32 audio with no instrument in it, and the kinds of its segments in order."""
    names = list(KINDS)
    weights = np.array([KINDS[k][0] for k in names])
    y = np.zeros(num_samples, dtype=np.float64)
    kinds, position = [], 0
    while position < num_samples:
        length = min(int(rng.uniform(*SEGMENT_SECONDS) * SAMPLE_RATE_HZ), num_samples - position)
        kind = names[int(rng.choice(len(names), p=weights / weights.sum()))]
        level_db = rng.uniform(*KINDS[kind][1])
        segment = _segment(rng, kind, length) * 10.0 ** (level_db / 20.0)
        fade = min(int(0.02 * SAMPLE_RATE_HZ), length // 2)  # 20 ms joins, no click between segments
        if fade > 0:
            ramp = np.linspace(0.0, 1.0, fade)
            segment[:fade] *= ramp
            segment[-fade:] *= ramp[::-1]
        y[position:position + length] = segment
        kinds.append(f"{kind} {level_db:.0f} dB")
        position += length
    return y.astype(np.float32), kinds
