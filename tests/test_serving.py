"""The HTTP service through Flask's test client: every encoding, windows, compare, models, feedback, A/B, errors."""

from __future__ import annotations

import base64
import io
import json
import logging
import shutil
import sqlite3
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("flask")
pytest.importorskip("ai_edge_litert.interpreter")

from instrument_id.audio import load_mono  # noqa: E402
from instrument_id.errors import InstrumentIdError  # noqa: E402
from instrument_id.instruments import INSTRUMENTS, column_names  # noqa: E402
from model_zoo import verify_model_dir  # noqa: E402
from serving.app import create_app  # noqa: E402
from serving.config import load_config, parse_config  # noqa: E402
from serving_fixture import app, app_config, client, encode, folders, music_clip, needs_training, pcm_json  # noqa: E402,F401 (fixtures)
from model_zoo.tflite_model import EdgeModel  # noqa: E402

pytestmark = needs_training
NAMES = [inst.name for inst in INSTRUMENTS]


@pytest.fixture(scope="module")
def wav_3s():
    return encode(music_clip(3.0), 44100, "WAV", "PCM_16")


def logged(app) -> list[dict]:
    with sqlite3.connect(app.extensions["instrument_id"].config.log_db) as connection:
        connection.row_factory = sqlite3.Row
        return [dict(row) for row in connection.execute("SELECT * FROM predictions")]


def probabilities(body: dict) -> np.ndarray:
    return np.array([entry["probability"] for entry in body["results"]])


def check_prediction(body: dict) -> None:
    assert [entry["instrument"] for entry in body["results"]] == NAMES
    assert [entry["program"] for entry in body["results"]] == [inst.program for inst in INSTRUMENTS]
    assert body["instruments"] == [entry["instrument"] for entry in body["results"] if entry["decision"]]
    assert all(0.0 <= entry["probability"] <= 1.0 for entry in body["results"])
    assert set(body["latency_ms"]) == {"decode", "features", "model", "total"}
    assert body["latency_ms"]["total"] >= body["latency_ms"]["model"] > 0


def test_rna_keeps_the_reference_answer(client, app, wav_3s):
    response = client.post("/RNA", data={"file1": (io.BytesIO(wav_3s), "clip.wav"), "test": "YES"})
    assert response.status_code == 200
    answer = response.get_json()
    assert isinstance(answer, list) and len(answer) == 1
    answer = answer[0]
    assert list(answer) == ["All_instruments", "instruments_predict", "model_prediction", "time predic"]
    assert answer["All_instruments"] == column_names() and answer["All_instruments"][0] == "piano(1)"
    assert len(answer["model_prediction"]) == 11 and all(isinstance(v, bool) for v in answer["model_prediction"])
    assert answer["instruments_predict"] == [c for c, d in zip(column_names(), answer["model_prediction"]) if d]
    assert isinstance(answer["time predic"], float) and answer["time predic"] > 0
    [row] = logged(app)
    assert row["route"] == "/RNA" and row["arm"] in ("A", "B")
    assert json.loads(row["instruments"]) == answer["instruments_predict"]
    usage = client.get("/RNA")
    assert usage.status_code == 200 and "POST /RNA" in usage.get_json()["usage"]


def test_every_encoding_gives_the_edge_runtimes_answer(client, folders):
    """WAV, FLAC, OGG (raw body and multipart) and JSON PCM of one 44.1 kHz stereo clip, against EdgeModel directly."""
    stereo = music_clip(2.5, channels=2)
    stereo[:, 1] *= 0.5  # channels differ, so the mono mixdown matters
    pcm16 = np.round(stereo * 32767) / 32767  # what 16-bit files hold
    wav, flac = encode(stereo, 44100, "WAV", "PCM_16"), encode(stereo, 44100, "FLAC", "PCM_16")
    ogg = encode(stereo, 44100, "OGG", "VORBIS")
    edge = EdgeModel(folders.mlp / "model_float32.tflite")
    expected = edge.predict_clip(load_mono(wav, edge.params)).probabilities
    requests = {
        "wav body": dict(data=wav, content_type="audio/wav"),
        "flac body": dict(data=flac, content_type="audio/flac"),
        "octet-stream body": dict(data=wav, content_type="application/octet-stream"),
        "multipart wav": dict(data={"audio": (io.BytesIO(wav), "a.wav")}, content_type="multipart/form-data"),
        "multipart flac": dict(data={"audio": (io.BytesIO(flac), "a.flac")}, content_type="multipart/form-data"),
        "json s16le": dict(json=pcm_json(pcm16, 44100, "s16le")),
        "json f32le": dict(json=pcm_json(pcm16.astype(np.float32), 44100, "f32le")),
    }
    for name, kwargs in requests.items():
        response = client.post("/v2/predict?model=mlp", **kwargs)
        assert response.status_code == 200, (name, response.get_json())
        body = response.get_json()
        check_prediction(body)
        assert body["model"] == "mlp" and body["arm"] is None and body["n_windows"] == 1 and body["windows"] == []
        np.testing.assert_allclose(probabilities(body), expected, atol=2e-5, err_msg=name)
    lossy = client.post("/v2/predict?model=mlp", data=ogg, content_type="audio/ogg")
    assert lossy.status_code == 200
    check_prediction(lossy.get_json())
    assert lossy.get_json()["clip_seconds"] == pytest.approx(2.5, abs=0.01)


def test_a_long_clip_is_scored_per_window_and_by_its_best_window(client, folders):
    clip = music_clip(5.5, rate_hz=22050)
    body = client.post("/v2/predict?model=rf", data=encode(clip, 22050, "WAV", "FLOAT"), content_type="audio/wav").get_json()
    check_prediction(body)
    assert body["n_windows"] == 4  # 2 s windows every 1 s over 5.5 s
    assert [w["start_seconds"] for w in body["windows"]] == [0.0, 1.0, 2.0, 3.0]
    assert [w["end_seconds"] for w in body["windows"]] == [2.0, 3.0, 4.0, 5.0]
    per_window = np.array([[w["probabilities"][name] for name in NAMES] for w in body["windows"]])  # (4, 11)
    np.testing.assert_allclose(probabilities(body), per_window.max(axis=0), atol=1e-6)
    anywhere = sorted({name for w in body["windows"] for name in w["instruments"]}, key=NAMES.index)
    assert body["instruments"] == anywhere
    assert body["warnings"] == []


def test_a_short_clip_is_zero_padded_and_says_so(client):
    body = client.post("/v2/predict?model=mlp", data=encode(music_clip(0.5), 44100, "WAV", "PCM_16"),
                       content_type="audio/wav").get_json()
    check_prediction(body)
    assert body["n_windows"] == 1 and len(body["warnings"]) == 1 and "zero-padded" in body["warnings"][0]


def test_compare_scores_every_model_on_one_clip_and_logs_a_group(client, app, wav_3s):
    response = client.post("/v2/compare", data=wav_3s, content_type="audio/wav")
    assert response.status_code == 200
    body = response.get_json()
    assert [m["model"] for m in body["models"]] == ["mlp", "rf"] and [m["arm"] for m in body["models"]] == ["A", "B"]
    for entry in body["models"]:
        alone = client.post(f"/v2/predict?model={entry['model']}", data=wav_3s, content_type="audio/wav").get_json()
        np.testing.assert_allclose(probabilities(entry), probabilities(alone), atol=1e-6)
        assert entry["model_version"] == alone["model_version"]
    decisions = {m["model"]: [r["decision"] for r in m["results"]] for m in body["models"]}
    disagreeing = [name for j, name in enumerate(NAMES) if decisions["mlp"][j] != decisions["rf"][j]]
    assert body["agreement"]["disagreeing"] == disagreeing and body["agreement"]["all_agree"] == (not disagreeing)
    group = [row for row in logged(app) if row["compare_group"] == body["compare_group"]]
    assert sorted(row["id"] for row in group) == sorted(m["prediction_id"] for m in body["models"])


def test_models_lists_versions_fingerprints_and_test_metrics(client, folders):
    body = client.get("/v2/models").get_json()
    by_name = {m["name"]: m for m in body["models"]}
    assert sorted(by_name) == ["mlp", "rf"]
    for name, folder in (("mlp", folders.mlp), ("rf", folders.rf)):
        manifest = verify_model_dir(folder)
        metrics = json.loads((folder / "metrics.json").read_text())
        assert by_name[name]["version"] == manifest["version"]
        assert by_name[name]["training_fingerprint"] == manifest["training_data"]["corpus_fingerprint"]
        assert by_name[name]["test_metrics"]["macro_f1"] == metrics["splits"]["test"]["macro_f1"]
    assert by_name["mlp"]["runtime"] == "tflite" and by_name["rf"]["runtime"] == "zoo"
    assert body["ab"]["arms"] == [{"name": "A", "model": "mlp", "weight": 0.5}, {"name": "B", "model": "rf", "weight": 0.5}]


def test_feedback_feeds_the_ab_report(client, app):
    answers = {"A": [], "B": []}
    for seed in range(6):
        arm = "AB"[seed % 2]
        body = client.post(f"/v2/predict?arm={arm}", data=encode(music_clip(2.0, seed=seed), 44100, "WAV", "PCM_16"),
                           content_type="audio/wav").get_json()
        assert body["arm"] == arm and body["model"] == {"A": "mlp", "B": "rf"}[arm]
        answers[arm].append(body)
    truth = [["piano", "violin(41)"], [], ["cello"], ["flute", "oboe"]]
    tp = fp = fn = 0
    for body, labels in zip(answers["A"][:2] + answers["B"][:2], truth):
        response = client.post("/v2/feedback", json={"prediction_id": body["prediction_id"], "instruments": labels})
        assert response.status_code == 200
        true = {name.split("(")[0] for name in labels}
        assert response.get_json()["instruments"] == [c for c in column_names() if c.split("(")[0] in true]
        if body["arm"] == "A":
            tp, fp, fn = tp + len(set(body["instruments"]) & true), fp + len(set(body["instruments"]) - true), fn + len(true - set(body["instruments"]))
    for _ in range(2):
        client.post("/v2/compare", data=encode(music_clip(2.0, seed=9), 44100, "WAV", "PCM_16"), content_type="audio/wav")
    report = client.get("/v2/ab/report").get_json()["arms"]
    assert report["A"]["count"] == 3 and report["B"]["count"] == 3  # compare predictions are not A/B traffic
    expected_latency = sorted(row["latency_ms"] for row in logged(app) if row["arm"] == "A" and not row["compare_group"])
    assert report["A"]["latency_ms"]["p50"] == pytest.approx(float(np.median(expected_latency)), abs=1e-3)
    scores = report["A"]["feedback"]
    assert scores["n"] == 2 and (scores["true_positives"], scores["false_positives"], scores["false_negatives"]) == (tp, fp, fn)
    if tp + fp:
        assert scores["precision"] == pytest.approx(tp / (tp + fp))
    assert scores["recall"] == pytest.approx(tp / (tp + fn))
    assert report["A"]["agreement"]["B"]["clips"] == 2 and report["B"]["agreement"]["A"]["clips"] == 2
    unknown = client.post("/v2/feedback", json={"prediction_id": "no-such-id", "instruments": ["piano"]})
    assert unknown.status_code == 404 and "no-such-id" in unknown.get_json()["error"]
    wrong = client.post("/v2/feedback", json={"prediction_id": answers["A"][0]["prediction_id"], "instruments": ["kazoo"]})
    assert wrong.status_code == 400 and "kazoo" in wrong.get_json()["error"]


def test_ab_assignment_is_sticky_and_follows_the_weights(folders, tmp_path):
    config = app_config(folders, tmp_path / "log.sqlite",
                        ab={"arms": {"A": {"model": "mlp", "weight": 3}, "B": {"model": "rf", "weight": 1}}})
    client = create_app(config).test_client()
    clip = {"json": pcm_json(music_clip(0.2, rate_hz=22050), 22050, "s16le")}
    arms = {client.post("/v2/predict", headers={"X-Client-Id": "listener-7"}, **clip).get_json()["arm"] for _ in range(50)}
    assert len(arms) == 1
    split = [client.post("/v2/predict?model=ab", headers={"X-Client-Id": f"client-{i}"}, **clip).get_json()["arm"]
             for i in range(400)]
    share_a = split.count("A") / len(split)
    assert abs(share_a - 0.75) < 0.08, share_a  # 0.75 +- 3.7 standard deviations of a 400-client binomial
    anonymous = {client.post("/v2/predict", **clip).get_json()["arm"] for _ in range(40)}
    assert anonymous == {"A", "B"}  # random without a client id (both arms: 1 - 0.75**40 - 0.25**40)


BAD_REQUESTS = {
    "non-audio bytes": (dict(data=b"hello, this is not audio" * 10, content_type="audio/wav"), 400, "not a readable audio"),
    "empty body": (dict(data=b"", content_type="audio/wav"), 400, "empty"),
    "truncated wav": (dict(data=encode(music_clip(1.0), 44100, "WAV", "PCM_16")[:30], content_type="audio/wav"), 400, "not a readable"),
    "0-sample wav": (dict(data=encode(np.zeros((0, 1), np.float32), 44100, "WAV", "PCM_16"), content_type="audio/wav"), 400, "0 samples"),
    "NaN PCM": (dict(json={"pcm_base64": base64.b64encode(np.array([0.1, np.nan] * 100, "<f4").tobytes()).decode(),
                           "sample_rate": 22050, "format": "f32le"}), 400, "NaN"),
    "inf in float wav": (dict(data=encode(np.array([[0.1], [np.inf]] * 100, np.float32), 22050, "WAV", "FLOAT"),
                              content_type="audio/wav"), 400, "NaN or infinite"),
    "huge float samples": (dict(json={"pcm_base64": base64.b64encode(np.full(4000, 1e30, "<f4").tobytes()).decode(),
                                      "sample_rate": 22050, "format": "f32le"}), 400, "overflow"),
    "odd PCM length": (dict(json={"pcm_base64": base64.b64encode(b"abc").decode(), "sample_rate": 22050}), 400, "whole number"),
    "bad base64": (dict(json={"pcm_base64": "%%%", "sample_rate": 22050}), 400, "base64"),
    "absurd sample rate": (dict(json={"pcm_base64": "AAAAAA==", "sample_rate": 10**12}), 400, "sample rate"),
    "wrong JSON fields": (dict(json={"audio": "AAAA"}), 400, "unknown JSON key"),
    "JSON not an object": (dict(json=[1, 2, 3]), 400, "object"),
    "malformed JSON": (dict(data=b'{"pcm_base64": ', content_type="application/json"), 400, "malformed JSON"),
    "wrong content type": (dict(data=b"abc", content_type="text/plain"), 415, "unsupported Content-Type"),
    "no content type": (dict(data=b"abc"), 415, "unsupported Content-Type"),
    "multipart without audio": (dict(data={"other": "x"}, content_type="multipart/form-data"), 400, "'audio'"),
}


def test_bad_input_gets_a_json_4xx_and_never_a_500(client, caplog):
    caplog.set_level(logging.INFO, logger="instrument_id.serving")
    for name, (kwargs, status, fragment) in BAD_REQUESTS.items():
        response = client.post("/v2/predict?model=mlp", **kwargs)
        assert response.status_code == status, (name, response.get_json())
        assert fragment in response.get_json()["error"], (name, response.get_json())
    silence = client.post("/v2/predict", data=encode(np.zeros((44100, 1), np.float32), 44100, "WAV", "PCM_16"),
                          content_type="audio/wav")
    assert silence.status_code == 200
    check_prediction(silence.get_json())
    others = {
        "unknown model": (client.post("/v2/predict?model=gpt", data=b"x", content_type="audio/wav"), 404, "unknown model"),
        "unknown arm": (client.post("/v2/predict?arm=Z", data=b"x", content_type="audio/wav"), 404, "unknown A/B arm"),
        "model and arm": (client.post("/v2/predict?model=mlp&arm=A", data=b"x", content_type="audio/wav"), 400, "either"),
        "unknown route": (client.get("/v3/predict"), 404, "no such route"),
        "wrong method": (client.get("/v2/predict"), 405, "not allowed"),
        "feedback not JSON": (client.post("/v2/feedback", data=b"x", content_type="text/plain"), 415, "application/json"),
        "feedback without id": (client.post("/v2/feedback", json={"instruments": []}), 400, "prediction_id"),
    }
    for name, (response, status, fragment) in others.items():
        assert response.status_code == status, (name, response.get_json())
        assert fragment in response.get_json()["error"], name
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_an_upload_over_the_limit_is_413(folders, tmp_path):
    client = create_app(app_config(folders, tmp_path / "log.sqlite", max_upload_bytes=50_000, max_analyze_bytes=100_000)).test_client()
    big = client.post("/v2/predict", data=encode(music_clip(1.0), 44100, "WAV", "PCM_16"), content_type="audio/wav")
    assert big.status_code == 413 and "50,000-byte limit" in big.get_json()["error"]
    multipart = client.post("/v2/predict", data={"audio": (io.BytesIO(b"\0" * 60_000), "a.wav")})
    assert multipart.status_code == 413
    flac = encode(np.zeros((30_000, 1), np.float32), 44100, "FLAC", "PCM_16")  # a small file, 120,000 decoded bytes
    assert len(flac) < 50_000
    inflated = client.post("/v2/predict", data=flac, content_type="audio/flac")
    assert inflated.status_code == 413 and "analysis limit" in inflated.get_json()["error"]


def test_health_readiness_metrics_and_request_logs(client, caplog, wav_3s):
    caplog.set_level(logging.INFO, logger="instrument_id.serving")
    assert client.get("/healthz").get_json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and sorted(ready.get_json()["models"]) == ["mlp", "rf"]
    body = client.post("/v2/predict?arm=B", data=wav_3s, content_type="audio/wav").get_json()
    client.post("/v2/predict?model=mlp", data=b"junk", content_type="audio/wav")
    text = client.get("/metrics").get_data(as_text=True)
    assert 'instrument_id_http_requests_total{arm="B",method="POST",model="rf",route="/v2/predict",status="200"} 1.0' in text
    assert 'instrument_id_http_errors_total{arm="none",route="/v2/predict",status="400"} 1.0' in text
    assert 'instrument_id_http_request_duration_seconds_count{arm="B",model="rf",route="/v2/predict"} 1.0' in text
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.getMessage().startswith('{"event": "request"')]
    predicted = [line for line in lines if line["prediction_id"] == body["prediction_id"]]
    assert len(predicted) == 1 and predicted[0]["route"] == "/v2/predict" and predicted[0]["status"] == 200
    assert predicted[0]["arm"] == "B" and predicted[0]["model"] == "rf" and predicted[0]["latency_ms"] > 0


def test_the_raw_audio_tflite_file_serves_the_same_answers(folders, tmp_path, wav_3s):
    config = app_config(folders, tmp_path / "log.sqlite")
    config["models"]["raw"] = {"path": str(folders.mlp), "runtime": "tflite", "tflite_file": "model_raw_audio.tflite"}
    client = create_app(config).test_client()
    body = client.post("/v2/compare", data=wav_3s, content_type="audio/wav").get_json()
    by_model = {m["model"]: probabilities(m) for m in body["models"]}
    np.testing.assert_allclose(by_model["raw"], by_model["mlp"], atol=5e-3)  # graph vs numpy features, as test_tflite


def test_config_files_and_their_errors(folders, tmp_path):
    (tmp_path / "serve.toml").write_text(
        f'log_db = "logs/p.sqlite"\n[models.m]\npath = "{folders.mlp}"\nruntime = "tflite"\n'
        '[ab.arms.only]\nmodel = "m"\n'
    )
    config = load_config(tmp_path / "serve.toml")
    assert config.log_db == tmp_path / "logs" / "p.sqlite" and [a.name for a in config.arms] == ["only"]
    (tmp_path / "serve.json").write_text(json.dumps({"models": {"r": {"path": str(folders.rf)}}}))
    assert [a.model for a in load_config(tmp_path / "serve.json").arms] == ["r"]
    errors = {
        "unknown key 'modles'": {"modles": {}},
        "ab.arms.A.model 'nope' is not a configured model": {"models": {"m": {"path": "x"}}, "ab": {"arms": {"A": {"model": "nope"}}}},
        "runtime must be one of": {"models": {"m": {"path": "x", "runtime": "onnx"}}},
        "weight must be a positive number": {"models": {"m": {"path": "x"}}, "ab": {"arms": {"A": {"model": "m", "weight": -1}}}},
        "max_upload_bytes": {"models": {"m": {"path": "x"}}, "max_upload_bytes": "10MB"},
    }
    for message, data in errors.items():
        with pytest.raises(InstrumentIdError, match=message.replace("(", r"\(")):
            parse_config(data)
    with pytest.raises(InstrumentIdError, match="not listed in"):
        create_app({"models": {"rf": {"path": str(folders.rf), "runtime": "tflite"}}, "log_db": str(tmp_path / "l.sqlite")})


def test_an_altered_model_folder_is_refused(folders, tmp_path):
    copy = shutil.copytree(folders.mlp, tmp_path / "mlp")
    data = bytearray((copy / "model_float32.tflite").read_bytes())
    data[-100] ^= 0xFF
    (copy / "model_float32.tflite").write_bytes(bytes(data))
    with pytest.raises(InstrumentIdError, match="altered"):
        create_app({"models": {"mlp": {"path": str(copy), "runtime": "tflite"}}, "log_db": str(tmp_path / "l.sqlite")})



def test_an_unexpected_failure_is_a_logged_json_500_and_readyz_reports_missing_models(client, app, caplog, wav_3s):
    caplog.set_level(logging.INFO, logger="instrument_id.serving")
    with sqlite3.connect(app.extensions["instrument_id"].config.log_db) as connection:
        connection.execute("DROP TABLE predictions")  # the log broken under a running server
    response = client.post("/v2/predict?model=mlp", data=wav_3s, content_type="audio/wav")
    assert response.status_code == 500 and "OperationalError" in response.get_json()["error"]
    [record] = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert record.exc_info is not None and "no such table" in str(record.exc_info[1])
    app.extensions["instrument_id"].models.pop("rf")
    not_ready = client.get("/readyz")
    assert not_ready.status_code == 503 and "rf" in not_ready.get_json()["error"]


def test_serving_imports_neither_train_nor_tensorflow(folders, tmp_path):
    """The served path (TFLite MLP, skops RF) runs without the training code or TensorFlow."""
    config = json.dumps(app_config(folders, tmp_path / "log.sqlite"))
    script = (
        "import json, sys\n"
        "from serving.app import create_app\n"
        f"app = create_app(json.loads({config!r}))\n"
        "import serving.serve_cli, serving.openapi\n"
        "loaded = [m for m in sys.modules if m.split('.')[0] in ('train', 'tensorflow', 'keras', 'librosa')]\n"
        "print(json.dumps(loaded))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []
