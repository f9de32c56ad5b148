"""Real-room acoustics for the synthetic corpus: a seeded shoebox room (pyroomacoustics), one source per part.

Each piece is played in one room: the parts stand on a stage near one wall, one omnidirectional microphone stands
0.7-10 m in front of it. pyroomacoustics computes each part's impulse response with the image source method for
the early reflections (low order) and ray tracing for the tail, so a long RT60 costs rays, not an exploding number
of image sources. The walls are one broadband absorption (Sabine's formula for the drawn RT60); the highs then
decay faster than the lows by a seeded factor (walls and air absorb them), applied to the response after the direct
sound. The common propagation delay is removed so that labels stay aligned with the nearest part's direct sound.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import ModuleType

import numpy as np
from scipy import signal

from instrument_id.errors import InstrumentIdError
from train.synth_perform import SAMPLE_RATE_HZ

RT60_RANGE_SECONDS = (0.2, 2.5)  # drawn log-uniform: booth to church
ABSORPTION_RANGE = (0.08, 0.6)  # a drawn wall absorption picks the room size that gives the RT60
ASPECT_RANGES = ((0.5, 0.9), (0.25, 0.5))  # width / length, height / length
MIN_DIMS_M = (3.5, 2.8, 2.4)  # length, width, height
MAX_DIMS_M = (45.0, 32.0, 18.0)
MIC_DISTANCE_RANGE_M = (0.7, 10.0)  # drawn log-uniform, from the stage's front line; capped by the room
WALL_MARGIN_M = 0.3
ISM_MAX_ORDER = 3  # image sources for the early reflections, ray tracing for the rest
RAY_HITS_PER_BIN = 4.0  # rays reaching the receiver per 4 ms histogram bin, on average (Vorlaender's rule)
N_RAYS_RANGE = (1000, 12000)
RECEIVER_RADIUS_RANGE_M = (0.5, 1.5)  # a larger sphere in a larger room: enough hits from fewer rays
SCATTERING_RANGE = (0.1, 0.5)
HF_RT60_FRACTION_RANGE = (0.35, 0.85)  # RT60 above the crossover, as a share of the broadband one
HF_CROSSOVER_HZ_RANGE = (1500.0, 5000.0)


def load_pyroomacoustics() -> ModuleType:
    """Import pyroomacoustics or explain how to install it."""
    try:
        import pyroomacoustics
    except ImportError as exc:
        raise InstrumentIdError(f"cannot import pyroomacoustics ({exc}); pip install -e '.[train]'") from None
    return pyroomacoustics


@dataclass(frozen=True)
class Room:
    """One piece's room: size, walls, where the parts and the microphone stand, and the seed of its ray tracing."""

    dims_m: tuple[float, float, float]
    absorption: float  # energy absorption of every wall, broadband
    scattering: float
    hf_rt60_fraction: float
    hf_crossover_hz: float
    mic_m: tuple[float, float, float]
    sources_m: tuple[tuple[float, float, float], ...]  # one per part, in part order
    seed: int

    @property
    def rt60_seconds(self) -> float:
        """Sabine's RT60 of the room (what inverse_sabine was asked for, unless a size limit moved it)."""
        length, width, height = self.dims_m
        volume_m3, surface_m2 = length * width * height, 2 * (length * width + length * height + width * height)
        return 24 * math.log(10) * volume_m3 / (343.0 * surface_m2 * self.absorption)

    @property
    def mic_distances_m(self) -> np.ndarray:
        """(n_parts,) distance of each part from the microphone."""
        return np.linalg.norm(np.array(self.sources_m) - np.array(self.mic_m), axis=1)

    def describe(self) -> str:
        """One line for the metadata, e.g. 'room 12.1x8.4x4.9 m RT60 1.42 s mic 3.1-3.9 m'."""
        distances = self.mic_distances_m
        spread = f"{distances.min():.1f}" if len(distances) == 1 else f"{distances.min():.1f}-{distances.max():.1f}"
        return f"room {'x'.join(f'{d:.1f}' for d in self.dims_m)} m RT60 {self.rt60_seconds:.2f} s mic {spread} m"


def _loguniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(math.exp(rng.uniform(math.log(low), math.log(high))))


def _room_dims(rng: np.random.Generator, rt60_seconds: float) -> tuple[float, float, float]:
    """A box whose Sabine RT60 is rt60_seconds at a drawn wall absorption, within the size limits."""
    width_ratio, height_ratio = (rng.uniform(*r) for r in ASPECT_RANGES)
    # Sabine: RT60 = 0.161 V / (S a), and for a box (1, w, h) * L, V / S = L w h / (2 (w + h + w h))
    volume_per_surface_m = rng.uniform(*ABSORPTION_RANGE) * rt60_seconds / 0.161
    length = volume_per_surface_m * 2 * (width_ratio + height_ratio + width_ratio * height_ratio) / (
        width_ratio * height_ratio)
    dims = np.clip(np.array([1.0, width_ratio, height_ratio]) * length, MIN_DIMS_M, MAX_DIMS_M)  # (3,) m
    dims[1] = min(dims[1], dims[0])
    return tuple(float(round(d, 2)) for d in dims)


def draw_room(rng: np.random.Generator, n_parts: int) -> Room:
    """A seeded room for n_parts players: RT60, size, stage layout and microphone place."""
    pra = load_pyroomacoustics()
    if n_parts < 1:
        raise InstrumentIdError(f"a room needs at least one part, got {n_parts}")
    rt60_seconds = _loguniform(rng, *RT60_RANGE_SECONDS)
    length, width, height = _room_dims(rng, rt60_seconds)
    absorption, _max_order = pra.inverse_sabine(rt60_seconds, [length, width, height])
    # the stage's front line is x = stage_x; players stand behind it, spread across, the microphone in front
    stage_x = rng.uniform(1.0, max(1.05, min(4.0, 0.3 * length)))
    stage_y = width / 2 + rng.uniform(-0.15, 0.15) * width
    spread_m = min(width - 2 * WALL_MARGIN_M, rng.uniform(0.5, 1.2) * n_parts**0.7)
    across = rng.permutation(np.linspace(-spread_m / 2, spread_m / 2, n_parts)) if n_parts > 1 else np.zeros(1)
    sources = np.stack([stage_x - rng.uniform(0.0, 1.0, n_parts), stage_y + across,
                        rng.uniform(0.9, 1.6, n_parts)], axis=1)  # (n_parts, 3) m
    distance_m = _loguniform(rng, MIC_DISTANCE_RANGE_M[0],
                             max(MIC_DISTANCE_RANGE_M[0], min(MIC_DISTANCE_RANGE_M[1], length - stage_x - 0.5)))
    angle = rng.uniform(-0.4, 0.4)
    mic = np.array([stage_x + distance_m * math.cos(angle), stage_y + distance_m * math.sin(angle),
                    rng.uniform(1.2, min(height - WALL_MARGIN_M, 4.0))])  # (3,) m
    low, high = np.full(3, WALL_MARGIN_M), np.array([length, width, height]) - WALL_MARGIN_M
    return Room(dims_m=(length, width, height), absorption=float(np.clip(absorption, 0.01, 0.99)),
                scattering=float(rng.uniform(*SCATTERING_RANGE)),
                hf_rt60_fraction=float(rng.uniform(*HF_RT60_FRACTION_RANGE)),
                hf_crossover_hz=_loguniform(rng, *HF_CROSSOVER_HZ_RANGE),
                mic_m=tuple(float(v) for v in np.clip(mic, low, high)),
                sources_m=tuple(tuple(float(v) for v in p) for p in np.clip(sources, low, high)),
                seed=int(rng.integers(0, 2**63 - 1)))


def _damp_highs(response: np.ndarray, room: Room, direct_sample: int) -> np.ndarray:
    """(k,) response whose part above the crossover decays at hf_rt60_fraction of the RT60 after the direct sound."""
    sos = signal.butter(2, room.hf_crossover_hz, btype="low", fs=SAMPLE_RATE_HZ, output="sos")
    low = signal.sosfilt(sos, response)  # (k,)
    t_seconds = np.maximum(np.arange(len(response)) - direct_sample, 0) / SAMPLE_RATE_HZ  # (k,)
    rt60 = room.rt60_seconds
    extra_decay = 10.0 ** (-3.0 * t_seconds * (1.0 / (room.hf_rt60_fraction * rt60) - 1.0 / rt60))  # -60 dB per RT60
    return low + (response - low) * extra_decay  # the high band is response - low: nothing lost at t = 0


def impulse_responses(room: Room) -> list[np.ndarray]:
    """One (k,) float32 response per part, at 44.1 kHz, all shifted by the nearest part's propagation delay."""
    pra = load_pyroomacoustics()
    pra.random.seed(numpy=room.seed, libroom=room.seed)  # the rays and the tail's noise are drawn from it
    shoebox = pra.ShoeBox(list(room.dims_m), fs=SAMPLE_RATE_HZ, materials=pra.Material(room.absorption,
                          room.scattering), max_order=ISM_MAX_ORDER, ray_tracing=False, air_absorption=False)
    volume_m3 = float(np.prod(room.dims_m))
    radius_m = float(np.clip(0.06 * volume_m3 ** (1 / 3), *RECEIVER_RADIUS_RANGE_M))
    radius_m = min(radius_m, 0.9 * float(room.mic_distances_m.min()))  # no player inside the receiver
    bin_seconds = 0.004
    rays_per_hit = volume_m3 / (math.pi * radius_m**2 * 343.0 * bin_seconds)
    shoebox.set_ray_tracing(n_rays=int(np.clip(RAY_HITS_PER_BIN * rays_per_hit, *N_RAYS_RANGE)),
                            receiver_radius=radius_m, energy_thres=1e-7, hist_bin_size=bin_seconds,
                            time_thres=min(1.1 * room.rt60_seconds + 0.1, 3.5))  # past it the tail is under -60 dB
    for position in room.sources_m:
        shoebox.add_source(list(position))
    shoebox.add_microphone(list(room.mic_m))
    shoebox.compute_rir()
    speed_m_per_s = float(pra.constants.get("c"))
    delays = room.mic_distances_m / speed_m_per_s * SAMPLE_RATE_HZ  # (n_parts,) samples of the direct sound
    lead = int(delays.min())  # the nearest direct sound then sits at sample 0 (plus half the fractional-delay filter)
    half_filter = int(pra.constants.get("frac_delay_length")) // 2
    responses = []
    for part, response in enumerate(shoebox.rir[0]):
        response = np.asarray(response, dtype=np.float64)[lead:]  # (k,)
        responses.append(_damp_highs(response, room, int(delays[part]) - lead + half_filter).astype(np.float32))
    return responses


def apply_room(room: Room, parts: np.ndarray) -> np.ndarray:
    """(n_parts, n) dry parts -> (n_parts, n) float32, each heard at the microphone from its place in the room."""
    responses = impulse_responses(room)
    if len(responses) != len(parts):
        raise InstrumentIdError(f"the room holds {len(responses)} sources for {len(parts)} parts")
    n = parts.shape[1]
    wet = np.empty_like(parts, dtype=np.float32)  # (n_parts, n)
    for index, (dry, response) in enumerate(zip(parts, responses)):
        wet[index] = signal.fftconvolve(dry, response)[:n]  # the tail past the end is cut, as a recording ends
    return wet
