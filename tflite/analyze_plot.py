"""The analysis figure: the waveform envelope above a piano-roll of the 11 instruments, shaded by probability,
with the spans where each is decided present outlined. matplotlib is imported only here (the Agg renderer, no pyplot)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from instrument_id.atomic import write_bytes_atomic
from instrument_id.instruments import INSTRUMENTS
from instrument_id.timeline import Timeline, union_spans


def cell_edges(timeline: Timeline) -> np.ndarray:
    """(n + 1,) time edges of one cell per window, centred on the window's middle and one hop wide."""
    if len(timeline) == 1:
        return np.array([0.0, timeline.ends[0]])
    centres = (timeline.starts + timeline.ends) / 2  # (n,)
    half_hop = timeline.hop_seconds / 2
    return np.concatenate([centres - half_hop, [centres[-1] + half_hop]])


def decided_cell_spans(timeline: Timeline, instrument: int) -> list[tuple[float, float]]:
    """Disjoint (start, end) seconds of the shaded cells whose window decides the instrument present: the outline
    drawn over the shading (timeline.segments, the union of whole windows, runs past it by half a window less half a
    hop at each end)."""
    edges = cell_edges(timeline)  # (n + 1,)
    mine = timeline.decisions[:, instrument]  # (n,) bool
    return union_spans(edges[:-1][mine], edges[1:][mine])


def timeline_png(timeline: Timeline, envelope: tuple[np.ndarray, np.ndarray, np.ndarray], title: str,
                 figsize_inches: tuple[float, float] = (14, 6.5), dpi: int = 100) -> bytes:
    """The figure as PNG bytes. It uses matplotlib's object API, not pyplot, so server threads can draw at once."""
    from matplotlib.figure import Figure

    edges, mins, maxs = envelope  # (m + 1,), (m,), (m,)
    fig = Figure(figsize=figsize_inches)
    wave, roll = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [1, 3]})
    centres = (edges[:-1] + edges[1:]) / 2
    wave.fill_between(centres, mins, maxs, color="0.35", linewidth=0.4, step="mid")
    wave.set_ylabel("amplitude")
    wave.set_ylim(-1.05, 1.05)
    wave.set_title(title, fontsize=10)
    image = roll.pcolormesh(cell_edges(timeline), np.arange(len(INSTRUMENTS) + 1) - 0.5,
                            timeline.probabilities.T, cmap="Blues", vmin=0.0, vmax=1.0, shading="flat")
    for j in range(len(INSTRUMENTS)):
        spans = decided_cell_spans(timeline, j)
        if spans:
            roll.broken_barh([(start, end - start) for start, end in spans], (j - 0.42, 0.84),
                             facecolors="none", edgecolors="tab:red", linewidth=1.2)
    roll.set_yticks(range(len(INSTRUMENTS)), [inst.column for inst in INSTRUMENTS])
    roll.set_ylim(len(INSTRUMENTS) - 0.5, -0.5)
    roll.set_xlim(0.0, max(timeline.duration_seconds, float(timeline.ends[-1])))
    roll.set_xlabel("time (s)")
    fig.colorbar(image, ax=[wave, roll], label="probability (red: decided present)", fraction=0.025, pad=0.01)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def plot_timeline(path: str | Path, timeline: Timeline, envelope: tuple[np.ndarray, np.ndarray, np.ndarray],
                  title: str) -> None:
    """Write the figure as a PNG at path (atomically)."""
    write_bytes_atomic(path, timeline_png(timeline, envelope, title))
