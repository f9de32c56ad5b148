"""The MusicNet reader on tiny corpora in the real download layout."""

from __future__ import annotations

import os

import numpy as np
import pytest
import soundfile as sf

from instrument_id.errors import InstrumentIdError
from instrument_id.instruments import PROGRAM_TO_INDEX
from instrument_id.params import AudioParams
from train.musicnet import (
    Skipped, corpus_fingerprint, iter_recordings, list_recordings, read_labels, read_metadata, read_recording,
)

PARAMS = AudioParams()
HEADER = "start_time,end_time,instrument,note,start_beat,end_beat,note_value"


def corpus(make_musicnet, **override):
    """Three recordings: two in train_data, one in test_data; `override` replaces fields of recording '2'."""
    specs = [
        {"id": "10", "split": "train", "seconds": 1.5, "notes": [(0.0, 1.0, 41, 69), (0.5, 1.5, 43, 48)]},
        {"id": "2", "split": "train", "seconds": 1.0, "notes": [(0.1, 0.9, 1, 60)]},
        {"id": "1727", "split": "test", "seconds": 1.0, "notes": [(0.0, 1.0, 74, 81)]},
    ]
    specs[1].update(override)
    return make_musicnet(specs)


def test_list_recordings_pairs_files_and_sorts_ids_numerically(make_musicnet):
    root = corpus(make_musicnet)
    recs = list_recordings(root)
    assert [r.id for r in recs] == ["2", "10", "1727"]
    assert [r.official_split for r in recs] == ["train", "train", "test"]
    assert recs[2].wav_path == root / "test_data" / "1727.wav"
    assert recs[2].labels_path == root / "test_labels" / "1727.csv"


def test_missing_folder_names_it_and_the_layout(make_musicnet, tmp_path):
    root = corpus(make_musicnet)
    os.rename(root / "test_labels", tmp_path / "elsewhere")
    with pytest.raises(InstrumentIdError, match=r"test_labels.*expected the MusicNet layout"):
        list_recordings(root)
    with pytest.raises(InstrumentIdError, match="not found"):
        list_recordings(tmp_path / "nowhere")


@pytest.mark.parametrize("missing, named", [("no_csv", "2.wav"), ("no_wav", "2.csv")])
def test_unpaired_file_raises_or_is_skipped(make_musicnet, missing, named):
    root = corpus(make_musicnet, **{missing: True})
    with pytest.raises(InstrumentIdError, match=named):
        list_recordings(root)
    skipped: list[Skipped] = []
    assert [r.id for r in list_recordings(root, skipped=skipped)] == ["10", "1727"]
    assert len(skipped) == 1 and skipped[0].file.endswith(named)


def test_read_recording_gives_mono_audio_at_params_rate_and_labels(make_musicnet):
    root = corpus(make_musicnet, channels=2, notes=[(0.1, 0.9, 1, 69)])
    rec = list_recordings(root)[0]
    y, labels = read_recording(rec, PARAMS)
    assert y.dtype == np.float32 and y.ndim == 1
    assert len(y) == PARAMS.sample_rate_hz  # 1.0 s resampled from 44.1 kHz
    spectrum = np.abs(np.fft.rfft(y))
    assert np.fft.rfftfreq(len(y), 1 / PARAMS.sample_rate_hz)[spectrum.argmax()] == pytest.approx(440.0, abs=2.0)
    assert labels.start_sample.tolist() == [4410] and labels.end_sample.tolist() == [39690]
    assert labels.program.tolist() == [1] and labels.note.tolist() == [69] and labels.line.tolist() == [2]
    assert labels.class_set() == {PROGRAM_TO_INDEX[1]}


def test_read_labels_reads_every_row(make_musicnet):
    root = corpus(make_musicnet)
    labels = read_labels(root / "train_labels" / "10.csv")
    assert len(labels) == 2
    assert labels.class_set() == {PROGRAM_TO_INDEX[41], PROGRAM_TO_INDEX[43]}


@pytest.mark.parametrize("text, message", [
    ("start_time,end_time,instrument,start_beat,end_beat,note_value\n0,100,1,0,1,Quarter\n", r"2\.csv: missing column\(s\) note"),
    (f"{HEADER}\n0,100,1,60,0,1,Quarter\n100,abc,1,60,0,1,Quarter\n", r"2\.csv, line 3: end_time is not a number"),
    (f"{HEADER}\n0,100,5,60,0,1,Quarter\n", r"2\.csv, line 2: unknown instrument program 5"),
    (f"{HEADER}\n500,100,1,60,0,1,Quarter\n", r"2\.csv, line 2: note ends before it starts"),
    (f"{HEADER}\n", r"2\.csv: recording without label rows \(and its metadata row does not say ensemble .No Instrument. "
                     r"or None of the 11: \.\.\.\)"),
    ("", r"2\.csv: missing column"),
    (f"{HEADER}\n0,100,1,60,0,1,Quarter\n0,100,1\n", r"2\.csv, line 3: 3 fields"),
])
def test_bad_label_file_names_file_line_and_reason(make_musicnet, text, message):
    root = corpus(make_musicnet, labels_text=text or "\n")
    rec = list_recordings(root)[0]
    with pytest.raises(InstrumentIdError, match=message):
        read_recording(rec, PARAMS)


@pytest.mark.parametrize("ensemble, readable", [
    ("No Instrument", True), ("None of the 11: Trumpet Recital", True), ("Trumpet Recital", False)])
def test_a_recording_of_none_of_the_11_has_no_label_rows_when_its_metadata_says_so(make_musicnet, ensemble, readable):
    root = corpus(make_musicnet, labels_text=f"{HEADER}\n")
    (root / "musicnet_metadata.csv").write_text(f"id,ensemble\n2,{ensemble}\n10,String Quartet\n1727,Solo Flute\n")
    rec = next(r for r in list_recordings(root) if r.id == "2")
    if readable:
        assert not rec.expects_notes and len(read_recording(rec, PARAMS)[1]) == 0
    else:
        with pytest.raises(InstrumentIdError, match="recording without label rows"):
            read_recording(rec, PARAMS)


def test_label_times_past_the_end_of_the_audio(make_musicnet):
    late = f"{HEADER}\n0,4410,1,60,0,1,Quarter\n0,{int(2.2 * 44100)},1,60,0,1,Quarter\n"
    rec = list_recordings(corpus(make_musicnet, labels_text=late))[0]
    with pytest.raises(InstrumentIdError, match=r"2\.csv, line 3: note ends at 2\.200 s, past the end of 2\.wav"):
        read_recording(rec, PARAMS)


def test_small_overhang_within_tolerance_is_accepted(make_musicnet):
    overhang = f"{HEADER}\n0,{int(1.5 * 44100)},1,60,0,1,Quarter\n"
    rec = list_recordings(corpus(make_musicnet, labels_text=overhang))[0]
    y, labels = read_recording(rec, PARAMS)
    assert len(y) == PARAMS.sample_rate_hz and labels.end_sample[0] == int(1.5 * 44100)


def test_wrong_sample_rate_names_file_and_both_rates(make_musicnet):
    rec = list_recordings(corpus(make_musicnet, sample_rate_hz=22050))[0]
    with pytest.raises(InstrumentIdError, match=r"2\.wav: sample rate 22050 Hz, MusicNet audio is 44100 Hz"):
        read_recording(rec, PARAMS)


@pytest.mark.parametrize("keep_bytes, message", [(None, "truncated WAV"), (20, "not a readable audio file")])
def test_truncated_wav_is_an_error_naming_the_file(make_musicnet, keep_bytes, message):
    rec = list_recordings(corpus(make_musicnet))[0]
    data = rec.wav_path.read_bytes()
    rec.wav_path.write_bytes(data[: keep_bytes or len(data) // 2])
    with pytest.raises(InstrumentIdError, match=rf"2\.wav: {message}"):
        read_recording(rec, PARAMS)


def test_iter_recordings_skips_bad_recordings_and_reports_them(make_musicnet):
    root = corpus(make_musicnet, sample_rate_hz=48000)
    recs = list_recordings(root)
    stream = iter_recordings(recs, PARAMS, on_error="skip")
    assert [rec.id for rec, _, _ in stream] == ["10", "1727"]
    assert len(stream.skipped) == 1
    assert stream.skipped[0].file.endswith("2.wav") and "48000" in stream.skipped[0].reason
    with pytest.raises(InstrumentIdError, match="48000"):
        list(iter_recordings(recs, PARAMS))
    with pytest.raises(InstrumentIdError, match="on_error"):
        iter_recordings(recs, PARAMS, on_error="ignore")


def test_fingerprint_changes_with_labels_and_audio_but_not_mtime(make_musicnet):
    root = corpus(make_musicnet)
    first = corpus_fingerprint(root)
    assert first == corpus_fingerprint(root) and len(first) == 64
    wav = root / "train_data" / "10.wav"
    os.utime(wav, ns=(1_000_000_000, 1_000_000_000))
    assert corpus_fingerprint(root) == first

    label = root / "test_labels" / "1727.csv"
    original = label.read_text()
    label.write_text(original.replace(",74,", ",72,"))
    assert corpus_fingerprint(root) != first
    label.write_text(original)
    assert corpus_fingerprint(root) == first

    y, rate_hz = sf.read(wav, dtype="int16")
    y[-10:] = 1234  # change only the last samples: the tail hash must notice
    sf.write(wav, y, rate_hz, subtype="PCM_16")
    assert corpus_fingerprint(root) != first


def test_metadata_is_optional_and_keyed_by_id(make_musicnet):
    root = corpus(make_musicnet)
    assert read_metadata(root) == {}
    (root / "musicnet_metadata.csv").write_text(
        "id,composer,composition,movement,ensemble,source,transcriber,catalog_name,seconds\n"
        "1727,Schubert,Piano Quintet,2. Andante,Piano Quintet,European Archive,http://tirolmusic.blogspot.com/,D667,447\n")
    meta = read_metadata(root)
    assert meta["1727"]["composer"] == "Schubert" and meta["1727"]["seconds"] == "447"
