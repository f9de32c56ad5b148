"""One long recording with known labels: every recording of a MusicNet-layout corpus joined end to end."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import soundfile as sf

from instrument_id.atomic import atomic_path
from instrument_id.audio import to_mono
from instrument_id.errors import InstrumentIdError
from train.musicnet import MUSICNET_RATE_HZ, Labels, list_recordings


def join_corpus(corpus: str | os.PathLike, out_wav: str | os.PathLike) -> tuple[Labels, float]:
    """Write every recording of corpus (id order) into one 44.1 kHz mono 16-bit WAV, one recording in memory at a
    time; return (the notes with times shifted to the joined file, its length in seconds)."""
    parts: list[Labels] = []
    offset_samples = 0
    with atomic_path(out_wav) as tmp, sf.SoundFile(tmp, "w", MUSICNET_RATE_HZ, 1, subtype="PCM_16", format="WAV") as out:
        for rec in list_recordings(corpus):
            data, rate_hz = sf.read(rec.wav_path, dtype="float32", always_2d=True)  # (samples, channels)
            if rate_hz != MUSICNET_RATE_HZ:
                raise InstrumentIdError(f"{rec.wav_path}: {rate_hz} Hz; the label times need {MUSICNET_RATE_HZ} Hz")
            labels = rec.read_labels()
            end_sample = np.minimum(labels.end_sample, len(data))  # a note ringing past its piece ends with it
            parts.append(Labels(start_sample=labels.start_sample + offset_samples,
                                end_sample=end_sample + offset_samples, program=labels.program,
                                note=labels.note, line=labels.line, source=str(Path(out_wav))))
            out.write(to_mono(data))
            offset_samples += len(data)
    joined = Labels(
        start_sample=np.concatenate([p.start_sample for p in parts]), end_sample=np.concatenate([p.end_sample for p in parts]),
        program=np.concatenate([p.program for p in parts]), note=np.concatenate([p.note for p in parts]),
        line=np.concatenate([p.line for p in parts]), source=str(Path(out_wav)),
    )
    return joined, offset_samples / MUSICNET_RATE_HZ
