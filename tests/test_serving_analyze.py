"""POST /v2/analyze through Flask's test client: the timeline equals analyze_signal's, limits, bad input, plots."""

from __future__ import annotations

import base64
import io
import logging
import sqlite3
import struct

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("flask")
pytest.importorskip("ai_edge_litert.interpreter")

from werkzeug.datastructures import FileStorage  # noqa: E402
from werkzeug.test import encode_multipart  # noqa: E402

from instrument_id.instruments import INSTRUMENTS, column_names  # noqa: E402
from instrument_id.timeline import analyze_signal  # noqa: E402
from serving.app import create_app  # noqa: E402
from serving_fixture import app, app_config, client, encode, folders, music_clip, needs_training, pcm_json  # noqa: E402,F401 (fixtures)
from model_zoo.loader import open_model  # noqa: E402

pytestmark = needs_training
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def scorers(folders):
    """The CLI's scorers of the same folders: the reference the route must match."""
    return {"mlp": open_model(folders.mlp, "tflite"), "rf": open_model(folders.rf, "zoo")}


def expected_timeline(samples: np.ndarray, rate_hz: int, scorer, hop_seconds: float):
    """analyze_signal on the whole audio in one block."""
    return analyze_signal([samples], rate_hz, scorer, scorer.params, hop_seconds)


def assert_same_timeline(body: dict, timeline) -> None:
    rows = body["windows"]
    assert body["n_windows"] == len(timeline) == len(rows["start_seconds"])
    np.testing.assert_allclose(rows["start_seconds"], timeline.starts, atol=1e-6)
    np.testing.assert_allclose(rows["end_seconds"], timeline.ends, atol=1e-6)
    np.testing.assert_allclose(rows["probabilities"], timeline.probabilities, atol=2e-6)
    np.testing.assert_array_equal(np.array(rows["decisions"], dtype=bool), timeline.decisions)
    assert body["hop_seconds"] == timeline.hop_seconds
    expected = timeline.summary()
    assert body["summary"].keys() == expected.keys()
    for name, row in body["summary"].items():  # the route streams in other block sizes: FFT round-off ~1e-7
        assert row["max_probability"] == pytest.approx(expected[name]["max_probability"], abs=2e-6), name
        assert {**row, "max_probability": None} == {**expected[name], "max_probability": None}, name
    assert body["labels"] == column_names()


def test_a_long_recording_gives_analyze_signals_timeline(client, scorers):
    """A 13 s 44.1 kHz stereo recording, as a WAV upload, a raw FLAC body and JSON PCM, through both runtimes."""
    stereo = music_clip(13.0, channels=2, seed=3)
    stereo[:, 1] *= 0.6
    wav, flac = encode(stereo, 44100, "WAV", "PCM_16"), encode(stereo, 44100, "FLAC", "PCM_16")
    held = sf.read(io.BytesIO(wav), dtype="float32")[0]  # (samples, 2): the 16-bit audio every request carries
    boundary, multipart = encode_multipart({"audio": FileStorage(io.BytesIO(wav), "long.wav")})  # in memory: the
    # test client's own encoder spools bodies this large to a temporary file it never closes
    requests = {
        ("mlp", "multipart wav", 0.5): dict(data=multipart, content_type=f"multipart/form-data; boundary={boundary}"),
        ("rf", "flac body", 0.5): dict(data=flac, content_type="audio/flac"),
        ("mlp", "json f32le", 1.25): dict(json=pcm_json(held, 44100, "f32le")),
    }
    for (model, name, hop), kwargs in requests.items():
        query = f"/v2/analyze?model={model}" + ("" if hop == 0.5 else f"&hop={hop}")
        response = client.post(query, **kwargs)
        assert response.status_code == 200, (name, response.get_json())
        body = response.get_json()
        expected = expected_timeline(held, 44100, scorers[model], hop)
        assert_same_timeline(body, expected)
        assert body["model"] == model and body["arm"] is None and body["model_version"] == scorers[model].version
        assert body["hop_seconds_requested"] == hop and body["sample_rate_hz"] == 44100 and body["channels"] == 2
        assert body["duration_seconds"] == pytest.approx(13.0, abs=1e-3) and not body["padded"]
        assert body["warnings"] == [] and "plot_png_base64" not in body
        assert body["instruments"] == [inst.name for inst, d in zip(INSTRUMENTS, expected.decisions.any(axis=0)) if d]
        assert body["latency_ms"]["total"] >= body["latency_ms"]["analysis"] > 0
    assert len(expected) == 9  # (13 - 2) / 1.25 + 1 windows at the hop actually used (1.254 s)


def test_a_half_second_clip_gives_one_padded_window(client, scorers):
    clip = music_clip(0.5, rate_hz=22050)
    body = client.post("/v2/analyze?model=rf", data=encode(clip, 22050, "WAV", "FLOAT"), content_type="audio/wav").get_json()
    assert_same_timeline(body, expected_timeline(clip, 22050, scorers["rf"], 0.5))
    assert body["n_windows"] == 1 and body["padded"] is True
    assert body["windows"]["start_seconds"] == [0.0] and body["windows"]["end_seconds"] == [0.5]
    assert len(body["warnings"]) == 1 and "zero-padded" in body["warnings"][0]


def test_plot_answers_the_timeline_png(client):
    clip = encode(music_clip(6.0, rate_hz=22050), 22050, "WAV", "PCM_16")
    body = client.post("/v2/analyze?model=mlp&plot=1", data=clip, content_type="audio/wav").get_json()
    png = base64.b64decode(body["plot_png_base64"])
    assert png.startswith(PNG_SIGNATURE)
    width, height = struct.unpack(">II", png[16:24])  # the IHDR chunk
    assert (width, height) == (1400, 650)
    assert body["latency_ms"]["plot"] > 0 and body["n_windows"] == len(body["windows"]["start_seconds"]) > 1


def test_analyze_is_counted_in_metrics_but_not_logged_as_a_prediction(client, app):
    clip = encode(music_clip(4.0, rate_hz=22050), 22050, "WAV", "PCM_16")
    before = client.get("/v2/ab/report").get_json()
    for _ in range(2):
        assert client.post("/v2/analyze?arm=B", data=clip, content_type="audio/wav").get_json()["model"] == "rf"
    assert client.get("/v2/ab/report").get_json() == before
    with sqlite3.connect(app.extensions["instrument_id"].config.log_db) as connection:
        assert connection.execute("SELECT COUNT(*) FROM predictions").fetchone()[0] == 0
    text = client.get("/metrics").get_data(as_text=True)
    assert 'instrument_id_http_requests_total{arm="B",method="POST",model="rf",route="/v2/analyze",status="200"} 2.0' in text
    assert 'instrument_id_analyzed_audio_seconds_total{model="rf"} 8.0' in text


def test_the_body_limit_is_max_analyze_upload_bytes_and_the_length_limit_max_analyze_seconds(folders, tmp_path):
    config = app_config(folders, tmp_path / "log.sqlite", max_upload_bytes=100_000, max_analyze_upload_bytes=400_000,
                        max_analyze_seconds=30)
    client = create_app(config).test_client()
    wav_4s = encode(music_clip(4.0, rate_hz=22050), 22050, "WAV", "PCM_16")  # 176 kB: over predict's limit only
    assert client.post("/v2/predict?model=mlp", data=wav_4s, content_type="audio/wav").status_code == 413
    assert client.post("/v2/analyze?model=mlp", data=wav_4s, content_type="audio/wav").status_code == 200
    wav_10s = encode(music_clip(10.0, rate_hz=22050), 22050, "WAV", "PCM_16")  # 441 kB
    for kwargs in (dict(data=wav_10s, content_type="audio/wav"),
                   dict(data={"audio": (io.BytesIO(wav_10s), "a.wav")}, content_type="multipart/form-data")):
        over = client.post("/v2/analyze?model=mlp", **kwargs)
        assert over.status_code == 413 and "400,000-byte limit" in over.get_json()["error"]
    silence = encode(np.zeros((22050 * 40, 1), np.float32), 22050, "FLAC", "PCM_16")  # 40 s in a few kB
    assert len(silence) < 100_000
    too_long = client.post("/v2/analyze?model=mlp", data=silence, content_type="audio/flac")
    assert too_long.status_code == 413 and "30 s analysis limit" in too_long.get_json()["error"]
    after = client.post("/v2/predict?model=mlp", data=wav_4s, content_type="audio/wav")  # the per-request limit did not stick
    assert after.status_code == 413 and "100,000-byte limit" in after.get_json()["error"]


BAD_REQUESTS = {
    "non-audio bytes": ("", dict(data=b"hello, this is not audio" * 10, content_type="audio/wav"), 400, "not a readable audio"),
    "empty body": ("", dict(data=b"", content_type="audio/wav"), 400, "empty"),
    "empty multipart file": ("", dict(data={"audio": (io.BytesIO(b""), "a.wav")}, content_type="multipart/form-data"), 400, "empty"),
    "truncated wav": ("", dict(data=encode(music_clip(1.0), 44100, "WAV", "PCM_16")[:30], content_type="audio/wav"), 400, "not a readable"),
    "0-sample wav": ("", dict(data=encode(np.zeros((0, 1), np.float32), 44100, "WAV", "PCM_16"), content_type="audio/wav"), 400, "0 samples"),
    "inf in float wav": ("", dict(data=encode(np.array([[0.1], [np.inf]] * 100, np.float32), 22050, "WAV", "FLOAT"),
                                  content_type="audio/wav"), 400, "NaN or infinite"),
    "huge float samples": ("", dict(json={"pcm_base64": base64.b64encode(np.full(4000, 1e30, "<f4").tobytes()).decode(),
                                          "sample_rate": 22050, "format": "f32le"}), 400, "overflow"),
    "NaN PCM": ("", dict(json={"pcm_base64": base64.b64encode(np.array([0.1, np.nan] * 100, "<f4").tobytes()).decode(),
                               "sample_rate": 22050, "format": "f32le"}), 400, "NaN"),
    "bad base64": ("", dict(json={"pcm_base64": "%%%", "sample_rate": 22050}), 400, "base64"),
    "malformed JSON": ("", dict(data=b'{"pcm_base64": ', content_type="application/json"), 400, "malformed JSON"),
    "wrong content type": ("", dict(data=b"abc", content_type="text/plain"), 415, "unsupported Content-Type"),
    "multipart without audio": ("", dict(data={"other": "x"}, content_type="multipart/form-data"), 400, "'audio'"),
    "hop not a number": ("&hop=fast", dict(data=b"x", content_type="audio/wav"), 400, "hop must be a number"),
    "hop zero": ("&hop=0", dict(data=b"x", content_type="audio/wav"), 400, "between 0.1 and 3600"),
    "hop NaN": ("&hop=nan", dict(data=b"x", content_type="audio/wav"), 400, "between 0.1 and 3600"),
    "plot not a flag": ("&plot=yes", dict(data=b"x", content_type="audio/wav"), 400, "plot must be"),
    "unknown model": ("&model=gpt", dict(data=b"x", content_type="audio/wav"), 404, "unknown model"),
    "model and arm": ("&arm=A", dict(data=b"x", content_type="audio/wav"), 400, "either"),
}


def test_bad_input_gets_a_json_4xx_and_never_a_500(client, caplog):
    caplog.set_level(logging.INFO, logger="instrument_id.serving")
    for name, (query, kwargs, status, fragment) in BAD_REQUESTS.items():
        url = "/v2/analyze?model=mlp" + query if "model=" not in query else "/v2/analyze?" + query.lstrip("&")
        response = client.post(url, **kwargs)
        assert response.status_code == status, (name, response.get_json())
        assert fragment in response.get_json()["error"], (name, response.get_json())
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_a_raw_audio_model_streams_whole_windows_and_agrees_with_its_feature_model(folders, tmp_path):
    config = app_config(folders, tmp_path / "log.sqlite")
    config["models"]["raw"] = {"path": str(folders.mlp), "runtime": "tflite", "tflite_file": "model_raw_audio.tflite"}
    client = create_app(config).test_client()
    clip = encode(music_clip(6.0), 44100, "WAV", "PCM_16")
    raw = client.post("/v2/analyze?model=raw", data=clip, content_type="audio/wav").get_json()
    features = client.post("/v2/analyze?model=mlp", data=clip, content_type="audio/wav").get_json()
    assert raw["model"] == "raw" and raw["n_windows"] == features["n_windows"] > 5
    assert raw["windows"]["start_seconds"] == features["windows"]["start_seconds"]
    raw_decisions, feature_decisions = np.array(raw["windows"]["decisions"]), np.array(features["windows"]["decisions"])
    # the same features, computed per window in the graph vs from shared STFT frames: edge frames differ slightly
    assert np.mean(raw_decisions == feature_decisions) >= 0.9


def test_the_web_page_and_its_files_are_served_with_no_outside_source(client):
    with client.get("/") as page:  # closing the response closes the file it streams
        assert page.status_code == 200 and page.mimetype == "text/html"
        html = page.get_data(as_text=True)
        assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    assert 'src="static/app.js"' in html and 'href="static/style.css"' in html
    for name, mimetype in (("app.js", "text/javascript"), ("style.css", "text/css"), ("capture-worklet.js", "text/javascript")):
        with client.get(f"/static/{name}") as asset:
            assert asset.status_code == 200 and asset.mimetype == mimetype, name
            text = asset.get_data(as_text=True)
        assert "http://" not in text and "https://" not in text, name  # nothing loaded from elsewhere: works offline
    assert "http://" not in html and "https://" not in html
