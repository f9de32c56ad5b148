"""A request's audio -> mono float32: a multipart file, a raw audio body, or JSON with base64 PCM.

Files (WAV, FLAC, OGG, MP3, anything libsndfile reads) are sniffed from their bytes, not trusted by content type.
The decoded size is checked from the header before any sample is read, so a small file that declares hours of
audio is refused with 413 instead of filling memory.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import re
import time
import wave
from dataclasses import dataclass, field
from typing import IO, Any

import numpy as np
import soundfile as sf
from flask import Request

from instrument_id.audio import resample, to_mono
from serving.errors import ApiError

MIN_RATE_HZ, MAX_RATE_HZ = 1000, 384_000
MAX_CHANNELS = 64
PCM_FORMATS = {"s16le": np.dtype("<i2"), "f32le": np.dtype("<f4")}
PCM_KEYS = {"pcm_base64", "sample_rate", "channels", "format"}
FLOAT32_BYTES = 4
RAW_AUDIO_TYPES = "audio/* (audio/wav, audio/flac, audio/ogg, audio/mpeg) or application/octet-stream"
_READER_PREFIX = re.compile(r"^Error opening <[^>]*>:\s*")  # libsndfile names the in-memory buffer object
ACCEPTED = f"multipart/form-data (file field 'audio'), {RAW_AUDIO_TYPES}, or application/json with base64 PCM"


class ServingRequest(Request):
    """Flask's request, closing every upload buffer it opened: werkzeug drops (unclosed) the buffer of a multipart
    file part whose body ends before the part does, so a cut upload would otherwise leave its temporary file to GC."""

    def _get_file_stream(self, total_content_length: int | None, content_type: str | None, filename: str | None = None,
                         content_length: int | None = None) -> IO[bytes]:
        """werkzeug's buffer for one file part, remembered for close()."""
        stream = super()._get_file_stream(total_content_length, content_type, filename, content_length)
        self.__dict__.setdefault("_upload_buffers", []).append(stream)
        return stream

    def close(self) -> None:
        """Close the parsed files and any buffer werkzeug left behind (Flask calls this at the request's end)."""
        super().close()
        for stream in self.__dict__.pop("_upload_buffers", []):
            stream.close()


@dataclass
class DecodedClip:
    """The request's audio mixed to mono at its own rate; at_rate() resamples once per rate and caches it."""

    mono: np.ndarray  # (samples,) float32 at source_rate_hz
    source_rate_hz: int
    channels: int
    request_bytes: int
    decode_ms: float
    _resampled: dict[int, np.ndarray] = field(default_factory=dict, repr=False)

    @property
    def seconds(self) -> float:
        """Duration of the clip."""
        return len(self.mono) / self.source_rate_hz

    def at_rate(self, rate_hz: int) -> np.ndarray:
        """(samples,) -> (samples',) float32 at rate_hz (soxr), cached; the time spent counts as decoding."""
        if rate_hz not in self._resampled:
            start = time.perf_counter()
            self._resampled[rate_hz] = resample(self.mono, self.source_rate_hz, rate_hz)
            self.decode_ms += 1e3 * (time.perf_counter() - start)
        return self._resampled[rate_hz]


def _check_size(frames: int, channels: int, rate_hz: int, max_analyze_bytes: int) -> None:
    """Refuse before decoding: rate and channels in range, decoded float32 audio within the analysis limit."""
    if not MIN_RATE_HZ <= rate_hz <= MAX_RATE_HZ:
        raise ApiError(400, f"sample rate {rate_hz} Hz is outside the supported {MIN_RATE_HZ}..{MAX_RATE_HZ} Hz")
    if not 1 <= channels <= MAX_CHANNELS:
        raise ApiError(400, f"{channels} channels; 1 to {MAX_CHANNELS} are supported")
    if frames <= 0:
        raise ApiError(400, "the audio holds 0 samples")
    decoded_bytes = frames * channels * FLOAT32_BYTES
    if decoded_bytes > max_analyze_bytes:
        raise ApiError(
            413,
            f"the audio decodes to {decoded_bytes:,} bytes ({frames / rate_hz:.1f} s x {channels} channels at {rate_hz} Hz), "
            f"over the {max_analyze_bytes:,}-byte analysis limit; send a shorter clip",
        )


def _finish(data: np.ndarray, rate_hz: int, request_bytes: int, start: float) -> DecodedClip:
    """(samples, channels) float32 -> DecodedClip, refusing empty or non-finite audio."""
    if data.shape[0] == 0:
        raise ApiError(400, "the audio holds 0 samples")
    if not np.isfinite(data).all():
        raise ApiError(400, "the audio contains NaN or infinite samples")
    mono = to_mono(data)  # (samples, channels) -> (samples,)
    return DecodedClip(mono, rate_hz, data.shape[1], request_bytes, 1e3 * (time.perf_counter() - start))


def _read_pcm16_wav(data: bytes, max_analyze_bytes: int) -> tuple[np.ndarray, int] | None:
    """A plain 16-bit PCM WAV through the standard library's reader: ((frames, channels) float32, rate), scaled by
    1/32768 as libsndfile does, in a tenth of the time libsndfile takes through a Python file object. None for any
    other file (float or 24-bit WAV, WAVE_FORMAT_EXTENSIBLE, FLAC, a truncated data chunk ...): soundfile reads those."""
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return None
    try:
        with wave.open(io.BytesIO(data)) as reader:
            if reader.getsampwidth() != 2 or reader.getcomptype() != "NONE":
                return None
            frames, channels, rate_hz = reader.getnframes(), reader.getnchannels(), reader.getframerate()
            _check_size(frames, channels, rate_hz, max_analyze_bytes)
            raw = reader.readframes(frames)
    except (wave.Error, EOFError, ValueError, RuntimeError):  # RuntimeError: a chunk size past the end of the file
        return None
    if len(raw) != frames * channels * 2:
        return None
    samples = np.frombuffer(raw, dtype="<i2").reshape(frames, channels)  # (frames, channels) interleaved
    return np.multiply(samples, np.float32(1.0 / 32768.0), dtype=np.float32), rate_hz  # one pass, exact (x / 2**15)


def decode_audio_bytes(data: bytes, max_analyze_bytes: int, what: str = "the uploaded audio") -> DecodedClip:
    """An audio file's bytes -> DecodedClip; unreadable, empty, too long or non-finite audio raises ApiError."""
    start = time.perf_counter()
    if not data:
        raise ApiError(400, f"{what} is empty: send an audio file (WAV, FLAC, OGG or MP3)")
    pcm16 = _read_pcm16_wav(data, max_analyze_bytes)
    if pcm16 is not None:
        return _finish(pcm16[0], pcm16[1], len(data), start)
    try:
        with sf.SoundFile(io.BytesIO(data)) as audio:
            _check_size(audio.frames, audio.channels, audio.samplerate, max_analyze_bytes)
            samples = audio.read(dtype="float32", always_2d=True)  # (frames, channels)
            rate_hz = audio.samplerate
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError, EOFError) as exc:
        reason = _READER_PREFIX.sub("", str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
        raise ApiError(400, f"{what} is not a readable audio file (WAV, FLAC, OGG or MP3): {reason}") from None
    return _finish(samples, rate_hz, len(data), start)


def _int_field(payload: dict[str, Any], key: str, default: int | None) -> int:
    value = payload.get(key, default)
    if value is None:
        raise ApiError(400, f"JSON audio needs {key!r} (an integer)")
    if isinstance(value, bool) or not isinstance(value, int):
        raise ApiError(400, f"{key!r} must be an integer, got {json.dumps(value)[:40]}")
    return value


def check_json_object(payload: Any, keys: frozenset[str] | set[str], not_object: str, unknown_key: str) -> None:
    """400 unless payload is a JSON object whose keys are all among `keys`; the messages name the expected keys."""
    if not isinstance(payload, dict):
        raise ApiError(400, f"{not_object} with keys {sorted(keys)}")
    unknown = sorted(set(payload) - keys)
    if unknown:
        raise ApiError(400, f"{unknown_key} {unknown[0]!r}; expected {sorted(keys)}")


def decode_pcm_json(payload: Any, request_bytes: int, max_analyze_bytes: int) -> DecodedClip:
    """{"pcm_base64", "sample_rate", "channels" (1), "format" ("s16le" | "f32le", default s16le)} -> DecodedClip."""
    start = time.perf_counter()
    check_json_object(payload, PCM_KEYS, "JSON audio must be an object", "unknown JSON key")
    encoded = payload.get("pcm_base64")
    if not isinstance(encoded, str):
        raise ApiError(400, "JSON audio needs 'pcm_base64': the PCM bytes as a base64 string")
    pcm_format = payload.get("format", "s16le")
    if pcm_format not in PCM_FORMATS:
        raise ApiError(400, f"'format' must be one of {sorted(PCM_FORMATS)}, got {json.dumps(pcm_format)[:40]}")
    rate_hz, channels = _int_field(payload, "sample_rate", None), _int_field(payload, "channels", 1)
    try:
        raw = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, "'pcm_base64' is not valid base64") from None
    dtype = PCM_FORMATS[pcm_format]
    frame_bytes = dtype.itemsize * max(channels, 1)
    if len(raw) % frame_bytes:
        raise ApiError(400, f"{len(raw)} PCM bytes is not a whole number of {channels}-channel {pcm_format} frames")
    _check_size(len(raw) // frame_bytes, channels, rate_hz, max_analyze_bytes)
    samples = np.frombuffer(raw, dtype=dtype).reshape(-1, channels)  # (frames, channels) interleaved
    if pcm_format == "s16le":
        samples = samples.astype(np.float32) / np.float32(32768.0)
    return _finish(samples.astype(np.float32), rate_hz, request_bytes, start)


def _multipart_file(req: Request, any_field: bool) -> bytes:
    """The bytes of the upload's 'audio' file (any_field: or of its only file, as the reference API's 'file1')."""
    files = req.files
    if "audio" in files:
        return files["audio"].read()
    if any_field and len(files) == 1:
        return next(iter(files.values())).read()
    found = ", ".join(repr(name) for name in files) or "none"
    raise ApiError(400, f"a multipart upload needs the audio in a file field named 'audio' (file fields found: {found})")


def read_json_body(req: Request) -> Any:
    """The request's JSON body; a wrong content type is 415, malformed JSON is 400."""
    if req.mimetype != "application/json":
        raise ApiError(415, f"expected Content-Type application/json, got {req.mimetype or 'none'}")
    body = req.get_data(cache=True)
    if not body:
        raise ApiError(400, "empty body; expected a JSON object")
    try:
        return json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:  # ValueError: JSONDecodeError, or an integer of > 4300 digits
        raise ApiError(400, f"malformed JSON ({str(exc)[:200]})") from None
    except RecursionError:
        raise ApiError(400, "malformed JSON (nested too deeply)") from None


def decode_request(req: Request, max_analyze_bytes: int, any_file_field: bool = False) -> DecodedClip:
    """The request's audio as a DecodedClip, whichever of the three encodings it came in."""
    mimetype = req.mimetype
    if mimetype == "multipart/form-data":
        return decode_audio_bytes(_multipart_file(req, any_file_field), max_analyze_bytes)
    if mimetype == "application/json":
        return decode_pcm_json(read_json_body(req), req.content_length or 0, max_analyze_bytes)
    if mimetype.startswith("audio/") or mimetype == "application/octet-stream":
        return decode_audio_bytes(req.get_data(cache=False), max_analyze_bytes, "the request body")
    raise ApiError(415, f"unsupported Content-Type {mimetype or '(none)'}; send {ACCEPTED}")
