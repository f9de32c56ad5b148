"""Idempotency-Key on the prediction routes, through Flask's test client: a retried request logs no second row and
answers the logged prediction id; a malformed key is a 400 naming what is wrong; a key reused for another request
is a 422; a keyed retry while the log is locked still ends as one row; a key is scoped to its client."""

from __future__ import annotations

import sqlite3
import time

import pytest

pytest.importorskip("flask")
pytest.importorskip("ai_edge_litert.interpreter")

from serving.app import create_app  # noqa: E402
from serving.keys import add_key  # noqa: E402
from serving_fixture import app, app_config, client, encode, folders, music_clip, needs_training  # noqa: E402,F401

pytestmark = needs_training
WAV = {"Content-Type": "audio/wav"}


@pytest.fixture(scope="module")
def clips():
    return [encode(music_clip(1.0, seed=seed), 44100, "WAV", "PCM_16") for seed in (0, 1)]


def logged(app) -> list[dict]:
    with sqlite3.connect(app.extensions["instrument_id"].config.log_db) as connection:
        connection.row_factory = sqlite3.Row
        rows = [dict(row) for row in connection.execute("SELECT * FROM predictions")]
    connection.close()
    return rows


def post(client, path: str, body: bytes, key: str | None = None, **headers: str):
    sent = {**WAV, **headers, **({"Idempotency-Key": key} if key is not None else {})}
    return client.post(path, data=body, headers=sent)


def test_a_retried_prediction_logs_one_row_and_answers_the_logged_id(client, app, clips):
    """No X-Client-Id: the arm comes from the key, so every retry is the same prediction."""
    first = post(client, "/v2/predict", clips[0], "5b1d0c1e-retry-me")
    again = [post(client, "/v2/predict", clips[0], key) for key in ("5b1d0c1e-retry-me", '"5b1d0c1e-retry-me"')]
    assert [r.status_code for r in [first, *again]] == [200, 200, 200]
    for answer in again:  # the quoted (Structured Field) form is the same key
        for field in ("prediction_id", "model", "arm", "results"):
            assert answer.json[field] == first.json[field], field
    rows = logged(app)
    assert [row["id"] for row in rows] == [first.json["prediction_id"]]
    assert rows[0]["idempotency_key"] == "5b1d0c1e-retry-me" and len(rows[0]["request_fingerprint"]) == 64
    other = post(client, "/v2/predict", clips[0], "another-key")
    assert other.status_code == 200 and other.json["prediction_id"] != first.json["prediction_id"]
    unkeyed = [post(client, "/v2/predict", clips[0]) for _ in range(2)]
    assert len({r.json["prediction_id"] for r in unkeyed}) == 2 and len(logged(app)) == 4
    feedback = {"prediction_id": first.json["prediction_id"], "instruments": ["piano"]}
    assert client.post("/v2/feedback", json=feedback).status_code == 200
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'instrument_id_predictions_replayed_total{route="/v2/predict"} 2.0' in metrics


def test_a_retried_compare_and_rna_log_once(client, app, clips):
    first, again = (post(client, "/v2/compare", clips[1], "compare-1") for _ in range(2))
    assert first.status_code == again.status_code == 200
    assert again.json["compare_group"] == first.json["compare_group"]
    ids = [m["prediction_id"] for m in first.json["models"]]
    assert [m["prediction_id"] for m in again.json["models"]] == ids and len(set(ids)) == 2
    rna = [post(client, "/RNA", clips[1], "rna-1") for _ in range(2)]
    assert [r.status_code for r in rna] == [200, 200]
    assert rna[0].json[0]["model_prediction"] == rna[1].json[0]["model_prediction"]
    rows = logged(app)
    assert sorted(row["id"] for row in rows if row["route"] == "/v2/compare") == sorted(ids)
    assert [row["idempotency_key"] for row in rows if row["route"] == "/RNA"].count("rna-1") == 1


@pytest.mark.parametrize("value, says", [
    ("", "is empty"),
    ('""', "is empty"),
    ("k" * 256, "256 characters long; at most 255"),
    ("two words", "' ' (U+0020) at character 4"),
    ("caf\u00e9", "'\u00e9' (U+00E9) at character 4"),
    ('a"b', "'\"' (U+0022) at character 2"),
    ("back\\slash", "'\\\\' (U+005C) at character 5"),
    ("a,b", "send one Idempotency-Key header holding one key"),
])
def test_a_malformed_key_is_a_400_that_says_what_is_wrong(client, app, clips, value, says):
    for path in ("/v2/predict", "/v2/compare", "/RNA"):
        answer = client.post(path, data=clips[0], headers=[("Content-Type", "audio/wav"), ("Idempotency-Key", value)])
        assert answer.status_code == 400 and "Idempotency-Key" in answer.json["error"], path
        assert says in answer.json["error"], answer.json["error"]
    assert logged(app) == []


def test_two_keys_in_one_request_are_a_400(client, app, clips):
    headers = [("Content-Type", "audio/wav"), ("Idempotency-Key", "a"), ("Idempotency-Key", "b")]
    answer = client.post("/v2/predict", data=clips[0], headers=headers)
    assert answer.status_code == 400 and answer.json["error"].startswith("send one Idempotency-Key header holding one key")


def test_a_key_reused_for_another_request_is_a_422_and_logs_nothing(client, app, clips):
    assert post(client, "/v2/predict?model=mlp", clips[0], "used-once").status_code == 200
    for path, body in (("/v2/predict?model=mlp", clips[1]), ("/v2/predict?model=rf", clips[0]),
                       ("/v2/compare", clips[0]), ("/RNA", clips[0])):
        answer = post(client, path, body, "used-once")
        assert answer.status_code == 422, path
        assert "already used for a different request" in answer.json["error"]
    assert len(logged(app)) == 1


def test_a_keyed_retry_while_the_log_is_locked_still_ends_as_one_row(client, app, clips):
    """Both attempts are answered with the id their key derives, queued in memory, and logged once."""
    holder = sqlite3.connect(app.extensions["instrument_id"].config.log_db, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        answers = [post(client, "/v2/predict", clips[0], "while-locked", **{"X-Client-Id": "c1"}) for _ in range(2)]
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert [a.status_code for a in answers] == [200, 200]
    assert answers[0].json["prediction_id"] == answers[1].json["prediction_id"]
    store = app.extensions["instrument_id"].store
    deadline = time.monotonic() + 30
    while store.queued():
        assert time.monotonic() < deadline, "the queued rows never reached the log"
        time.sleep(0.05)
    assert [row["id"] for row in logged(app)] == [answers[0].json["prediction_id"]]
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'instrument_id_predictions_unlogged_total{reason="locked"} 2.0' in metrics


@pytest.mark.parametrize("mode", ["keys", "open"])
def test_a_key_is_scoped_to_its_client(folders, tmp_path, clips, mode):
    """Bob repeating Alice's key and bytes gets a prediction of his own, not her id; each one's retry answers their
    own id; a key Alice used is no 422 for Bob. With API keys the client is the key's name, in open mode X-Client-Id."""
    overrides = {}
    if mode == "keys":
        keys_path = tmp_path / "keys.txt"
        who = {name: {"X-API-Key": add_key(keys_path, "client", name)} for name in ("alice", "bob")}
        overrides["api_keys"] = str(keys_path)
    else:
        who = {name: {"X-Client-Id": name} for name in ("alice", "bob")}
    app = create_app(app_config(folders, tmp_path / "log.sqlite", **overrides))
    client = app.test_client()
    for path in ("/v2/predict?model=mlp", "/v2/compare"):  # one model, so only the client can tell the ids apart
        alice, bob, alice_again, bob_again = (post(client, path, clips[0], f"shared-key{path}", **who[name])
                                              for name in ("alice", "bob", "alice", "bob"))
        assert [a.status_code for a in (alice, bob, alice_again, bob_again)] == [200] * 4, path
        ids = [answer.json["prediction_id"] if "prediction_id" in answer.json
               else [m["prediction_id"] for m in answer.json["models"]] for answer in (alice, bob, alice_again, bob_again)]
        assert ids[0] != ids[1] and ids[2] == ids[0] and ids[3] == ids[1], path
    assert post(client, "/v2/predict?model=mlp", clips[1], "alice-only", **who["alice"]).status_code == 200
    assert post(client, "/v2/predict?model=mlp", clips[0], "alice-only", **who["bob"]).status_code == 200  # no 422
    assert post(client, "/v2/predict?model=mlp", clips[0], "alice-only", **who["alice"]).status_code == 422
    rows = logged(app)
    assert len(rows) == 1 + 1 + 2 + 2 + 1 + 1  # predict: alice, bob; compare: two models each; alice-only: two
    assert {row["client_id"] for row in rows} == {"alice", "bob"}
