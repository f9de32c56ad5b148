"""Per-client rate limits: requests and seconds of audio per role, 429 with Retry-After before any work, never
logged; /metrics counts 401, 403 and 429 by route and role."""

from __future__ import annotations

import sqlite3

import pytest

pytest.importorskip("flask")
pytest.importorskip("limits")
pytest.importorskip("ai_edge_litert.interpreter")

from instrument_id.errors import InstrumentIdError  # noqa: E402
from serving.app import create_app  # noqa: E402
from serving.config import parse_config  # noqa: E402
from serving.keys import add_key  # noqa: E402
from serve_process import metric_total  # noqa: E402
from serving_fixture import app_config, encode, folders, music_clip, needs_training  # noqa: E402,F401 (fixtures)

pytestmark = needs_training


def keyed_app(folders, tmp_path, rate_limits: dict):
    """(app, {name: key}) with clients alice and bob and an admin, and the given rate_limits table."""
    path = tmp_path / "keys.txt"
    keys = {name: add_key(path, role, name) for name, role in (("alice", "client"), ("bob", "client"), ("ops", "admin"))}
    app = create_app(app_config(folders, tmp_path / "log.sqlite", api_keys=str(path), rate_limits=rate_limits))
    return app, keys


def logged_rows(app) -> int:
    with sqlite3.connect(app.extensions["instrument_id"].config.log_db) as connection:
        return connection.execute("SELECT COUNT(*) FROM predictions").fetchone()[0]


def predict(client, key: str, wav: bytes):
    return client.post("/v2/predict", data=wav, content_type="audio/wav", headers={"X-API-Key": key})


def test_a_client_over_its_request_budget_gets_429_and_others_do_not(folders, tmp_path):
    app, keys = keyed_app(folders, tmp_path, {"client": {"requests": "3/minute"}})
    client = app.test_client()
    wav = encode(music_clip(1.0), 16000, "WAV", "PCM_16")
    assert [predict(client, keys["alice"], wav).status_code for _ in range(3)] == [200] * 3
    limited = predict(client, keys["alice"], wav)
    assert limited.status_code == 429 and limited.is_json
    assert 1 <= int(limited.headers["Retry-After"]) <= 60 and "3 requests per 1 minute" in limited.get_json()["error"]
    assert logged_rows(app) == 3  # the refused request was neither computed nor logged
    assert predict(client, keys["bob"], wav).status_code == 200
    assert client.get("/healthz").status_code == 200  # not counted, not limited
    client.get("/metrics")  # no key: a 401
    client.get("/v2/ab/report", headers={"X-API-Key": keys["bob"]})  # a client: a 403
    metrics = client.get("/metrics", headers={"X-API-Key": keys["ops"]}).get_data(as_text=True)
    denied = "instrument_id_http_denied_total"
    assert metric_total(metrics, denied, route="/v2/predict", role="client", status="429") == 1
    assert metric_total(metrics, denied, route="/metrics", role="none", status="401") == 1
    assert metric_total(metrics, denied, route="/v2/ab/report", role="client", status="403") == 1


def test_seconds_of_audio_have_their_own_budget(folders, tmp_path):
    app, keys = keyed_app(folders, tmp_path, {"client": {"requests": "100/minute", "audio_seconds": "5/minute"}})
    client = app.test_client()
    wav = encode(music_clip(2.0, rate_hz=16000), 16000, "WAV", "PCM_16")
    assert [predict(client, keys["alice"], wav).status_code for _ in range(2)] == [200, 200]
    limited = predict(client, keys["alice"], wav)
    assert limited.status_code == 429 and "seconds of audio" in limited.get_json()["error"]
    assert "Retry-After" in limited.headers and logged_rows(app) == 2
    analyzed = client.post("/v2/analyze", data=wav, content_type="audio/wav", headers={"X-API-Key": keys["alice"]})
    assert analyzed.status_code == 429
    short = encode(music_clip(0.5, rate_hz=16000), 16000, "WAV", "PCM_16")
    assert predict(client, keys["alice"], short).status_code == 200  # one second left of five
    assert predict(client, keys["bob"], wav).status_code == 200


def test_open_mode_limits_by_address_when_configured(folders, tmp_path):
    app = create_app(app_config(folders, tmp_path / "log.sqlite", rate_limits={"open": {"requests": "2/minute"}}))
    client = app.test_client()
    wav = encode(music_clip(1.0), 16000, "WAV", "PCM_16")
    statuses = [client.post("/v2/predict", data=wav, content_type="audio/wav",
                            headers={"X-Client-Id": f"c{i}"}).status_code for i in range(3)]
    assert statuses == [200, 200, 429]  # a new X-Client-Id is not a new budget: the address is


@pytest.mark.parametrize("overrides, message", [
    ({"rate_limits": {"client": {"requests": "lots"}}}, "rate_limits.client.requests: 'lots' is not a rate"),
    ({"rate_limits": {"guest": {}}}, "rate_limits.guest: unknown role"),
    ({"rate_limits": {"client": {"bytes": "1/second"}}}, "rate_limits.client takes only requests, audio_seconds"),
    ({"rate_limit_storage": "carrier-pigeon://loft"}, "rate_limit_storage carrier-pigeon:// cannot be used"),
    ({"rate_limit_storage": "sqlite://runs/limits.sqlite"}, "sqlite:// cannot be used .*ABSOLUTE/PATH"),
])
def test_bad_limits_are_refused_naming_the_key(folders, tmp_path, overrides, message):
    with pytest.raises(InstrumentIdError, match=message):
        parse_config(app_config(folders, tmp_path / "log.sqlite", **overrides))
