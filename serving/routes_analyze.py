"""POST /v2/analyze: the per-window timeline of a recording of any length, with an optional PNG of it.

An uploaded file is spooled to disk (past a few MB) and decoded block by block through the same streaming
analysis as `instrument-id analyze` (instrument_id.timeline.analyze_signal), so memory stays flat whatever the
length; the body may be up to max_analyze_upload_bytes and the recording up to max_analyze_seconds long. JSON PCM
is decoded in memory, so it keeps /v2/predict's max_analyze_bytes.

Analyze calls are not written to the prediction log: a timeline of thousands of windows is not one prediction to
give feedback on, and /v2/ab/report's counts stay about A/B predict traffic. They are counted in /metrics (route
"/v2/analyze", and instrument_id_analyzed_audio_seconds per model) and in the one-line request log.
"""

from __future__ import annotations

import base64
import contextlib
import math
import re
import shutil
import tempfile
import threading
from dataclasses import dataclass
from typing import IO, Any, Iterable

import numpy as np
from flask import Blueprint, g, jsonify, request

from instrument_id.errors import InstrumentIdError
from instrument_id.params import ANALYSIS_HOP_SECONDS
from instrument_id.timeline import Timeline, WaveformEnvelope, analyze_signal, open_audio_blocks
from model_zoo.model import clip_scores
from serving.auth import charge_audio
from serving.config import ServingConfig
from serving.decode import ACCEPTED, MAX_CHANNELS, MAX_RATE_HZ, MIN_RATE_HZ, decode_pcm_json, read_json_body
from serving.errors import ApiError
from serving.models import ServedModel, single_blas_thread
from serving.routes_v2 import choose_model, elapsed_ms, present, state

bp = Blueprint("analyze", __name__, url_prefix="/v2")
DEFAULT_HOP_SECONDS = ANALYSIS_HOP_SECONDS  # as `instrument-id analyze`
MIN_HOP_SECONDS, MAX_HOP_SECONDS = 0.1, 3600.0  # the floor bounds the answer: 4 h at 0.1 s is 144,000 windows
PLOT_FLAGS = {"1": True, "true": True, "0": False, "false": False}
SPOOL_MEMORY_BYTES = 8 * 1024 * 1024  # a raw body larger than this goes to a temporary file
COPY_CHUNK_BYTES = 1 << 20
ENVELOPE_COLUMNS = 1400
_READER_PREFIX = re.compile(r"Error opening <[^>]*>:\s*")  # libsndfile names the in-memory file object
_PLOT_LOCK = threading.Lock()  # matplotlib is not documented thread-safe; plots are rare, so one at a time


@dataclass
class Recording:
    """The request's audio as blocks of (n, channels) float32 at rate_hz, with its header's facts."""

    blocks: Iterable[np.ndarray]
    rate_hz: int
    channels: int
    seconds: float
    name: str


def hop_argument(value: str | None) -> float:
    """?hop= in seconds (default 0.5); anything but a number in [0.1, 3600] is a 400."""
    if value is None:
        return DEFAULT_HOP_SECONDS
    try:
        hop_seconds = float(value)
    except ValueError:
        raise ApiError(400, f"hop must be a number of seconds, got {value[:40]!r}") from None
    if not (math.isfinite(hop_seconds) and MIN_HOP_SECONDS <= hop_seconds <= MAX_HOP_SECONDS):
        raise ApiError(400, f"hop must be between {MIN_HOP_SECONDS:g} and {MAX_HOP_SECONDS:g} seconds, got {value[:40]!r}")
    return hop_seconds


def plot_argument(value: str | None) -> bool:
    """?plot=1|true|0|false (default false)."""
    if value is None:
        return False
    if value.lower() not in PLOT_FLAGS:
        raise ApiError(400, f"plot must be 1, true, 0 or false, got {value[:40]!r}")
    return PLOT_FLAGS[value.lower()]


def check_recording(rate_hz: int, channels: int, seconds: float, config: ServingConfig) -> None:
    """Refuse before decoding: rate and channels in range, length within max_analyze_seconds."""
    if not MIN_RATE_HZ <= rate_hz <= MAX_RATE_HZ:
        raise ApiError(400, f"sample rate {rate_hz} Hz is outside the supported {MIN_RATE_HZ}..{MAX_RATE_HZ} Hz")
    if not 1 <= channels <= MAX_CHANNELS:
        raise ApiError(400, f"{channels} channels; 1 to {MAX_CHANNELS} are supported")
    if seconds > config.max_analyze_seconds:
        raise ApiError(413, f"the recording is {seconds:,.1f} s long, over the {config.max_analyze_seconds:,g} s "
                            "analysis limit; send a shorter recording")


def _spooled_body(stream: IO[bytes], resources: contextlib.ExitStack) -> IO[bytes]:
    """The raw request body in memory, or in a temporary file once it passes SPOOL_MEMORY_BYTES."""
    spool = resources.enter_context(tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY_BYTES))
    shutil.copyfileobj(stream, spool, COPY_CHUNK_BYTES)
    spool.seek(0)
    return spool


def _upload_stream(resources: contextlib.ExitStack) -> tuple[IO[bytes], str]:
    """The uploaded file as a seekable stream and how to name it in errors."""
    if request.mimetype == "multipart/form-data":
        upload = request.files.get("audio")
        if upload is None:
            found = ", ".join(repr(name) for name in request.files) or "none"
            raise ApiError(400, f"a multipart upload needs the audio in a file field named 'audio' (file fields found: {found})")
        return upload.stream, "the uploaded audio"
    if request.mimetype.startswith("audio/") or request.mimetype == "application/octet-stream":
        return _spooled_body(request.stream, resources), "the request body"
    raise ApiError(415, f"unsupported Content-Type {request.mimetype or '(none)'}; send {ACCEPTED}")


def open_recording(config: ServingConfig, resources: contextlib.ExitStack) -> Recording:
    """The request's audio, checked from its header; its temporary file and decoder close with `resources`."""
    if request.mimetype == "application/json":
        clip = decode_pcm_json(read_json_body(request), request.content_length or 0, config.max_analyze_bytes)
        check_recording(clip.source_rate_hz, clip.channels, clip.seconds, config)
        return Recording([clip.mono], clip.source_rate_hz, clip.channels, clip.seconds, "JSON PCM")
    stream, what = _upload_stream(resources)
    if stream.seek(0, 2) == 0:
        raise ApiError(400, f"{what} is empty: send an audio file (WAV, FLAC, OGG or MP3)")
    stream.seek(0)
    try:
        blocks = open_audio_blocks(stream, name=what)
    except InstrumentIdError as exc:
        raise ApiError(400, _READER_PREFIX.sub("", str(exc))) from None
    resources.callback(blocks.close)
    check_recording(blocks.rate_hz, blocks.channels, blocks.duration_seconds, config)
    return Recording(blocks, blocks.rate_hz, blocks.channels, blocks.duration_seconds, what)


def run_timeline(model: ServedModel, recording: Recording, hop_seconds: float,
                 envelope: WaveformEnvelope | None) -> Timeline:
    """Stream the recording through the model; envelope (when given) collects the waveform for the plot."""
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"), single_blas_thread():  # overflow is checked
        return analyze_signal(recording.blocks, recording.rate_hz, model, model.params, hop_seconds,
                              on_block=envelope.add if envelope is not None else None)


def plot_png(timeline: Timeline, envelope: WaveformEnvelope, title: str) -> bytes:
    """The timeline figure of `instrument-id analyze` as PNG bytes; 501 when matplotlib is not installed."""
    try:
        from tflite.analyze_plot import timeline_png
    except ImportError as exc:  # pragma: no cover - matplotlib comes with the serve extra
        raise ApiError(501, f"plot=1 needs matplotlib on the server ({exc}); ask without plot") from None
    with _PLOT_LOCK:
        return timeline_png(timeline, envelope.result(), title)


@bp.post("/analyze")
def analyze():
    """The timeline of a recording of any length through one model (?model=NAME, or the A/B router's pick)."""
    current = state()
    request.max_content_length = current.config.max_analyze_upload_bytes  # before anything reads the body
    hop_seconds = hop_argument(request.args.get("hop"))
    plot = plot_argument(request.args.get("plot"))
    model, arm = choose_model(current, request.args.get("model"), request.args.get("arm"))
    g.arm, g.model = arm, model.name
    with contextlib.ExitStack() as resources:
        recording = open_recording(current.config, resources)
        charge_audio(recording.seconds)  # from the header: over the budget, nothing is decoded
        upload_ms = elapsed_ms()
        envelope = WaveformEnvelope(recording.rate_hz, max_columns=ENVELOPE_COLUMNS) if plot else None
        timeline = run_timeline(model, recording, hop_seconds, envelope)
    analysis_ms = elapsed_ms() - upload_ms
    current.metrics.analyzed_audio.labels(model.name).inc(timeline.duration_seconds)
    warnings = []
    if timeline.padded:
        warnings.append(f"the recording is {timeline.duration_seconds:.3f} s long, shorter than the "
                        f"{timeline.window_seconds:g} s window; it was zero-padded to one window")
    body: dict[str, Any] = {
        "model": model.name, "model_version": model.version, "runtime": model.runtime, "arm": arm,
        "sample_rate_hz": recording.rate_hz, "channels": recording.channels, "hop_seconds_requested": hop_seconds,
        "instruments": present(clip_scores(timeline.probabilities, timeline.decisions)[1]),
        **timeline.to_dict(),
        "warnings": warnings,
    }
    latency = {"upload": upload_ms, "analysis": analysis_ms}
    if plot:
        title = f"{model.name} ({model.runtime}, version {model.version}), hop {timeline.hop_seconds:.3f} s"
        body["plot_png_base64"] = base64.b64encode(plot_png(timeline, envelope, title)).decode("ascii")
        latency["plot"] = elapsed_ms() - upload_ms - analysis_ms
    latency["total"] = elapsed_ms()
    body["latency_ms"] = {key: round(value, 3) for key, value in latency.items()}
    body["real_time_factor"] = round(timeline.duration_seconds / max(analysis_ms / 1e3, 1e-9), 1)
    return jsonify(body)
