"""serving.decode: the standard-library fast path for 16-bit PCM WAV gives exactly soundfile's samples."""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("flask")

from serving.decode import _read_pcm16_wav, decode_audio_bytes  # noqa: E402
from serving.errors import ApiError  # noqa: E402

LIMIT = 10**9


def _wav(samples: np.ndarray, rate_hz: int, subtype: str) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, samples, rate_hz, format="WAV", subtype=subtype)
    return buffer.getvalue()


def _with_list_chunk(wav: bytes) -> bytes:
    """A LIST chunk between 'fmt ' and 'data', as many editors write; the RIFF size grows to match."""
    payload = b"INFOISFT\x06\x00\x00\x00tests\x00"
    chunk = b"LIST" + struct.pack("<I", len(payload)) + payload
    data_at = wav.index(b"data")
    body = wav[12:data_at] + chunk + wav[data_at:]
    return b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WAVE" + body


@pytest.mark.parametrize("channels", [1, 2, 3])
def test_pcm16_fast_path_equals_soundfile(channels):
    rng = np.random.default_rng(channels)
    samples = np.clip(0.5 * rng.standard_normal((22050, channels)), -1, 1).astype(np.float32)
    samples[:4] = [[-1.0] * channels, [1.0] * channels, [0.0] * channels, [-0.5] * channels]  # full scale and zero
    for wav in (_wav(samples, 44100, "PCM_16"), _with_list_chunk(_wav(samples, 44100, "PCM_16"))):
        fast = _read_pcm16_wav(wav, LIMIT)
        assert fast is not None and fast[1] == 44100
        reference, rate_hz = sf.read(io.BytesIO(wav), dtype="float32", always_2d=True)
        np.testing.assert_array_equal(fast[0], reference)
        clip = decode_audio_bytes(wav, LIMIT)
        assert clip.source_rate_hz == rate_hz and clip.channels == channels
        np.testing.assert_array_equal(clip.mono, reference.mean(axis=1, dtype=np.float32))


@pytest.mark.parametrize("subtype", ["PCM_24", "FLOAT", "PCM_U8"])
def test_other_wavs_take_soundfile(subtype):
    samples = (0.25 * np.sin(np.arange(8000) / 10)).astype(np.float32)
    wav = _wav(samples, 16000, subtype)
    assert _read_pcm16_wav(wav, LIMIT) is None
    clip = decode_audio_bytes(wav, LIMIT)
    np.testing.assert_allclose(clip.mono, samples, atol=1e-2)


def test_a_truncated_pcm16_wav_is_left_to_soundfile():
    wav = _wav(np.zeros(1000, np.float32), 8000, "PCM_16")
    assert _read_pcm16_wav(wav[:-100], LIMIT) is None


def test_the_fast_path_keeps_the_size_limits():
    wav = _wav(np.zeros(1000, np.float32), 8000, "PCM_16")
    with pytest.raises(ApiError, match="analysis limit"):
        decode_audio_bytes(wav, max_analyze_bytes=1000)
    with pytest.raises(ApiError, match="sample rate"):
        decode_audio_bytes(_wav(np.zeros(1000, np.float32), 500, "PCM_16"), LIMIT)


def test_a_chunk_size_past_the_end_is_a_400_not_the_wave_modules_runtime_error():
    """wave raises a bare RuntimeError when a chunk before 'data' claims more bytes than the file holds (it seeks
    past the end of the buffer); that was a 500."""
    wav = _wav(np.zeros(1000, np.float32), 8000, "PCM_16")
    at = wav.index(b"data")
    lying = wav[:at] + b"junk" + struct.pack("<I", 0x7FFFFFF0) + b"\0" * 8 + wav[at:]
    assert _read_pcm16_wav(lying, LIMIT) is None  # left to soundfile, which names the problem
    with pytest.raises(ApiError, match="not a readable audio file") as refused:
        decode_audio_bytes(lying, LIMIT)
    assert refused.value.status == 400
