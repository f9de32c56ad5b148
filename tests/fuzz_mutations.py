"""Real audio files and the header fields a fuzzer may set to absurd values, per format.

Each format's pristine file is written by soundfile from one harmonic clip; `header_fields` parses that file and
names the fields a hostile client would lie about (chunk sizes, channel counts, sample rates, bits per sample,
declared lengths) with their bit position, so a test can overwrite any of them with any value. Ogg pages carry a
CRC that libogg checks before a decoder sees the page, so `fix_ogg_crcs` restores them after a mutation: the lie
then reaches the Vorbis or Opus header parser instead of being dropped as a damaged page.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np
import soundfile as sf

from serving_fixture import encode, music_clip

CLIP_SECONDS = 0.5
# name -> (soundfile format, subtype, sample rate); Opus encodes at 48 kHz only
FORMATS = {
    "wav_pcm16": ("WAV", "PCM_16", 22050), "wav_float32": ("WAV", "FLOAT", 22050), "flac": ("FLAC", "PCM_16", 22050),
    "ogg_vorbis": ("OGG", "VORBIS", 22050), "ogg_opus": ("OGG", "OPUS", 48000), "mp3": ("MP3", "MPEG_LAYER_III", 22050),
}
CONTENT_TYPES = {"wav_pcm16": "audio/wav", "wav_float32": "audio/wav", "flac": "audio/flac", "ogg_vorbis": "audio/ogg",
                 "ogg_opus": "audio/ogg", "mp3": "audio/mpeg"}


@dataclass(frozen=True)
class Field:
    """A header field: `bits` wide from bit `bit_offset` (MSB-first), stored little- or big-endian when byte-aligned."""

    name: str
    bit_offset: int
    bits: int
    little_endian: bool = False

    @property
    def max_value(self) -> int:
        """The largest value the field holds."""
        return (1 << self.bits) - 1


class AudioFiles(dict):
    """name -> file bytes; a short repr keeps hypothesis' reports (which show strategy arguments) readable."""

    def __repr__(self) -> str:
        return f"<audio files: {', '.join(self)}>"


def writable_formats() -> AudioFiles:
    """name -> the bytes of a real stereo file, for every format this libsndfile can write (MP3 needs 1.1+)."""
    files = AudioFiles()
    for name, (fmt, subtype, rate_hz) in FORMATS.items():
        try:
            files[name] = encode(music_clip(CLIP_SECONDS, rate_hz=rate_hz, channels=2), rate_hz, fmt, subtype)
        except (sf.LibsndfileError, ValueError, TypeError):
            continue
    return files


def set_field(data: bytearray, field: Field, value: int) -> None:
    """Overwrite `field` in data with value (masked to its width)."""
    value &= field.max_value
    if field.little_endian:
        start = field.bit_offset // 8
        data[start:start + field.bits // 8] = value.to_bytes(field.bits // 8, "little")
        return
    for i in range(field.bits):  # MSB-first bit fields (FLAC STREAMINFO, MP3 frame headers)
        bit, at = (value >> (field.bits - 1 - i)) & 1, field.bit_offset + i
        mask = 0x80 >> (at % 8)
        data[at // 8] = (data[at // 8] | mask) if bit else (data[at // 8] & ~mask)


def _le(name: str, byte_offset: int, n_bytes: int) -> Field:
    return Field(name, 8 * byte_offset, 8 * n_bytes, little_endian=True)


def _wav_fields(data: bytes) -> list[Field]:
    """RIFF size, every chunk's size, and the fmt chunk's format tag, channels, rate, byte rate, block align, bits."""
    fields, at = [_le("riff size", 4, 4)], 12
    while at + 8 <= len(data):
        chunk_id, size = data[at:at + 4].decode("latin-1"), struct.unpack_from("<I", data, at + 4)[0]
        fields.append(_le(f"{chunk_id.strip()} chunk size", at + 4, 4))
        if chunk_id == "fmt ":
            body = at + 8
            fields += [_le("format tag", body, 2), _le("channels", body + 2, 2), _le("sample rate", body + 4, 4),
                       _le("byte rate", body + 8, 4), _le("block align", body + 12, 2), _le("bits per sample", body + 14, 2)]
        if chunk_id == "fact":
            fields.append(_le("fact frames", at + 8, 4))
        at += 8 + size + (size & 1)
    return fields


def _flac_fields(data: bytes) -> list[Field]:
    """The STREAMINFO block's length, block and frame sizes, rate, channels, bits per sample and total samples."""
    info = 8 * 8  # 'fLaC' + the 4-byte block header
    return [Field("metadata block length", 5 * 8, 24), Field("min block size", info, 16), Field("max block size", info + 16, 16),
            Field("max frame size", info + 56, 24), Field("sample rate", info + 80, 20), Field("channels - 1", info + 100, 3),
            Field("bits per sample - 1", info + 103, 5), Field("total samples", info + 108, 36)]


def _ogg_fields(data: bytes) -> list[Field]:
    """Every page's granule position, header type and segment count; the codec header's channels and rate."""
    fields, at = [], 0
    while (at := data.find(b"OggS", at)) >= 0:
        fields += [_le("page header type", at + 5, 1), _le("granule position", at + 6, 8), _le("segment count", at + 26, 1)]
        at += 4
    first_packet = 27 + data[26]
    if data[first_packet:first_packet + 7] == b"\x01vorbis":
        fields += [_le("vorbis channels", first_packet + 11, 1), _le("vorbis sample rate", first_packet + 12, 4),
                   _le("vorbis blocksizes", first_packet + 28, 1)]
    elif data[first_packet:first_packet + 8] == b"OpusHead":
        fields += [_le("opus channels", first_packet + 9, 1), _le("opus pre-skip", first_packet + 10, 2),
                   _le("opus input rate", first_packet + 12, 4), _le("opus mapping family", first_packet + 18, 1)]
    return fields


def _mp3_fields(data: bytes) -> list[Field]:
    """The first frame header's version, layer, bitrate, rate and channel mode bits; the Xing/Info frame count."""
    fields = [Field("mpeg version", 11, 2), Field("layer", 13, 2), Field("bitrate index", 16, 4),
              Field("sample rate index", 20, 2), Field("channel mode", 24, 2)]
    for tag in (b"Xing", b"Info"):
        at = data.find(tag, 0, 200)
        if at >= 0:
            fields += [Field("xing flags", 8 * (at + 4), 32), Field("xing frames", 8 * (at + 8), 32),
                       Field("xing bytes", 8 * (at + 12), 32)]
    return fields


def header_fields(name: str, data: bytes) -> list[Field]:
    """The header fields of a pristine file of format `name`."""
    parse = {"wav": _wav_fields, "flac": _flac_fields, "ogg": _ogg_fields, "mp3": _mp3_fields}[name.split("_")[0]]
    return parse(data)


def wav_data_span(data: bytes) -> tuple[int, int]:
    """(start, end) byte offsets of a pristine WAV's sample data."""
    at = data.index(b"data", 12)
    return at + 8, at + 8 + struct.unpack_from("<I", data, at + 4)[0]


def put_float_samples(data: bytearray, span: tuple[int, int], sample_indices: list[int], values: list[float]) -> None:
    """Overwrite float32 samples (e.g. with NaN or inf) in the sample data at span, its pristine file's data chunk;
    samples a truncation has cut off are left out."""
    start, end = span
    for index, value in zip(sample_indices, values):
        at = start + 4 * (index % ((end - start) // 4))
        if at + 4 <= len(data):
            struct.pack_into("<f", data, at, value)


def _ogg_crc_table() -> np.ndarray:
    table = np.zeros(256, dtype=np.uint32)
    for i in range(256):
        crc = i << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) if crc & 0x80000000 else (crc << 1)
        table[i] = crc & 0xFFFFFFFF
    return table


_CRC_TABLE = [int(v) for v in _ogg_crc_table()]


def _ogg_crc(page: bytes) -> int:
    crc = 0
    for byte in page:
        crc = ((crc << 8) & 0xFFFFFFFF) ^ _CRC_TABLE[((crc >> 24) & 0xFF) ^ byte]
    return crc


def fix_ogg_crcs(data: bytearray) -> None:
    """Recompute the CRC of every whole Ogg page in data (pages cut short by a truncation are left as they are)."""
    at = 0
    while (at := data.find(b"OggS", at)) >= 0 and at + 27 <= len(data):
        n_segments = data[at + 26]
        length = 27 + n_segments + sum(data[at + 27:at + 27 + n_segments])
        if at + length <= len(data):
            data[at + 22:at + 26] = b"\0\0\0\0"
            data[at + 22:at + 26] = struct.pack("<I", _ogg_crc(bytes(data[at:at + length])))
        at += 4
