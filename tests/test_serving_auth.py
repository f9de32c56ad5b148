"""API keys and roles: the key file and `instrument-id keys`, 401/403 per route, feedback bound to its client, the
bind rule of `serve` (open mode only on loopback unless --insecure-open)."""

from __future__ import annotations

import io
import json
import logging
import os
import sqlite3
import subprocess
import sys

import pytest

pytest.importorskip("flask")
pytest.importorskip("ai_edge_litert.interpreter")

from instrument_id.cli import main  # noqa: E402
from instrument_id.errors import InstrumentIdError  # noqa: E402
from serving.app import create_app  # noqa: E402
from serving.keys import KeyRing, add_key, read_key_file, revoke_key  # noqa: E402
from serving_fixture import app_config, encode, folders, music_clip, needs_training  # noqa: E402,F401 (fixtures)

LINE = "client alice sha256:" + "0" * 64


def keys_cli(capsys, *argv: str) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `instrument-id keys ...`."""
    code = main(["keys", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_keys_add_prints_the_key_once_and_keeps_only_its_hash(tmp_path, capsys):
    path = tmp_path / "keys.txt"
    code, out, _ = keys_cli(capsys, "add", str(path), "--role", "client", "--name", "alice")
    key = out.strip()
    assert code == 0 and key.startswith("iid_") and len(key) > 40
    assert key not in path.read_text() and key[:12] not in path.read_text()
    assert os.stat(path).st_mode & 0o777 == 0o600
    code, out, _ = keys_cli(capsys, "add", str(path), "--role", "admin", "--name", "ops")
    admin_key = out.strip()
    ring = KeyRing(path)
    assert ring.identify(key).role == "client" and ring.identify(key).name == "alice"
    assert ring.identify(admin_key).role == "admin" and ring.identify(key[:-1]) is None
    code, _, err = keys_cli(capsys, "add", str(path), "--role", "client", "--name", "alice")
    assert code == 2 and "already has a key" in err
    assert keys_cli(capsys, "revoke", str(path), "alice")[0] == 0
    assert [k.name for k in read_key_file(path)] == ["ops"] and os.stat(path).st_mode & 0o777 == 0o600
    code, _, err = keys_cli(capsys, "revoke", str(path), "alice")
    assert code == 2 and "no key for client 'alice'" in err


@pytest.mark.parametrize("text, message", [
    ("# comment\n\nclient alice\n", ":3: expected 'ROLE NAME sha256:HEX'"),
    (f"{LINE}\nowner bob sha256:{'1' * 64}\n", ":2: unknown role 'owner'"),
    (f"{LINE}\nadmin alice sha256:{'1' * 64}\n", ":2: client name 'alice' is already used on line 1"),
    ("client alice sha256:abc\n", ":1: the third field must be sha256:"),
    ("client al/ice sha256:" + "0" * 64 + "\n", ":1: client name 'al/ice'"),
])
def test_a_bad_key_file_is_refused_naming_its_line(tmp_path, text, message):
    path = tmp_path / "keys.txt"
    path.write_text(text)
    path.chmod(0o600)
    with pytest.raises(InstrumentIdError, match=f"^{path}{message}"):
        read_key_file(path)


def test_a_world_readable_key_file_is_refused_unless_allowed(tmp_path):
    path = tmp_path / "keys.txt"
    path.write_text(LINE + "\n")
    path.chmod(0o644)
    with pytest.raises(InstrumentIdError, match="readable by every user.*--allow-world-readable-keys"):
        read_key_file(path)
    assert [k.name for k in read_key_file(path, allow_world_readable=True)] == ["alice"]


@pytest.fixture
def keyed(folders, tmp_path, capsys):
    """An app with keys on: {'app', 'alice', 'bob', 'admin', 'path'}."""
    path = tmp_path / "keys.txt"
    keys = {}
    for name, role in (("alice", "client"), ("bob", "client"), ("admin", "admin")):
        keys[name] = keys_cli(capsys, "add", str(path), "--role", role, "--name", name)[1].strip()
    app = create_app(app_config(folders, tmp_path / "log.sqlite", api_keys=str(path)))
    return {"app": app, "path": path, **keys}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@needs_training
def test_routes_answer_by_role(keyed, caplog):
    client = keyed["app"].test_client()
    wav = encode(music_clip(1.0), 16000, "WAV", "PCM_16")
    caplog.set_level(logging.INFO, logger="instrument_id.serving")
    for method, path in (("post", "/v2/predict"), ("post", "/v2/feedback"), ("get", "/v2/ab/report"),
                         ("get", "/metrics"), ("get", "/v2/models"), ("post", "/RNA"), ("post", "/v2/compare")):
        missing = getattr(client, method)(path)
        assert missing.status_code == 401 and missing.headers["WWW-Authenticate"].startswith("Bearer")
        assert "API key" in missing.get_json()["error"]
        wrong = getattr(client, method)(path, headers={"X-API-Key": keyed["alice"] + "x"})
        assert wrong.status_code == 401 and wrong.get_json() == {"error": "unknown API key"}
    for path in ("/healthz", "/readyz", "/", "/openapi.json"):
        assert client.get(path).status_code == 200, path
    for path in ("/v2/ab/report", "/metrics", "/v2/models"):
        forbidden = client.get(path, headers=bearer(keyed["alice"]))
        assert forbidden.status_code == 403 and "admin" in forbidden.get_json()["error"]
        assert client.get(path, headers=bearer(keyed["admin"])).status_code == 200
    response = client.post("/v2/predict", data=wav, content_type="audio/wav", headers={"X-API-Key": keyed["alice"]})
    assert response.status_code == 200
    assert client.post("/v2/predict", data=wav, content_type="audio/wav", headers=bearer(keyed["admin"])).status_code == 200
    logs = caplog.text + json.dumps([r.getMessage() for r in caplog.records])
    for name in ("alice", "bob", "admin"):
        assert keyed[name][4:12] not in logs  # not even a part of a key


@needs_training
def test_feedback_only_from_the_client_that_asked(keyed):
    app, client = keyed["app"], keyed["app"].test_client()
    wav = encode(music_clip(1.0), 16000, "WAV", "PCM_16")
    answer = client.post("/v2/predict", data=wav, content_type="audio/wav", headers=bearer(keyed["alice"])).get_json()
    prediction_id, arm = answer["prediction_id"], answer["arm"]
    feedback = {"prediction_id": prediction_id, "instruments": ["piano"]}
    stolen = client.post("/v2/feedback", json=feedback, headers=bearer(keyed["bob"]))
    unknown = client.post("/v2/feedback", json={**feedback, "prediction_id": "0" * 32}, headers=bearer(keyed["bob"]))
    assert stolen.status_code == unknown.status_code == 404
    assert stolen.get_json()["error"].replace(prediction_id, "ID") == unknown.get_json()["error"].replace("0" * 32, "ID")
    first = client.post("/v2/feedback", json=feedback, headers=bearer(keyed["alice"]))
    assert first.status_code == 200 and first.get_json()["changes"] == 0
    second = client.post("/v2/feedback", json={**feedback, "instruments": ["violin"]}, headers=bearer(keyed["alice"]))
    assert second.status_code == 200 and second.get_json()["changes"] == 1
    report = client.get("/v2/ab/report", headers=bearer(keyed["admin"])).get_json()
    assert report["arms"][arm]["feedback"]["n"] == 1  # one label per prediction, the latest
    with sqlite3.connect(app.extensions["instrument_id"].config.log_db) as connection:
        [(labels, changed, owner)] = connection.execute(
            "SELECT true_labels, changed_count, client_id FROM feedback JOIN predictions ON id = prediction_id").fetchall()
    assert json.loads(labels) == ["violin(41)"] and changed == 1 and owner == "alice"


@needs_training
def test_feedback_window_closes(folders, tmp_path, keyed):
    config = app_config(folders, tmp_path / "log.sqlite", api_keys=str(keyed["path"]), feedback_window_seconds=0.001)
    client = create_app(config).test_client()
    wav = encode(music_clip(1.0), 16000, "WAV", "PCM_16")
    answer = client.post("/v2/predict", data=wav, content_type="audio/wav", headers=bearer(keyed["alice"])).get_json()
    late = client.post("/v2/feedback", json={"prediction_id": answer["prediction_id"], "instruments": []},
                       headers=bearer(keyed["alice"]))
    assert late.status_code == 404 and "days" in late.get_json()["error"]


@needs_training
def test_the_arm_follows_the_key_not_the_header(keyed):
    client = keyed["app"].test_client()
    wav = encode(music_clip(1.0), 16000, "WAV", "PCM_16")
    arms = {client.post("/v2/predict", data=wav, content_type="audio/wav",
                        headers={**bearer(keyed["alice"]), "X-Client-Id": f"c{i}"}).get_json()["arm"] for i in range(8)}
    assert len(arms) == 1


@needs_training
def test_reload_swaps_keys_and_keeps_them_on_a_broken_file(keyed, capsys):
    client, path = keyed["app"].test_client(), keyed["path"]
    revoke_key(path, "alice")
    new_key = add_key(path, "client", "alice")
    ring = keyed["app"].extensions["instrument_id"].keys
    assert ring.reload()
    assert client.get("/v2/models", headers=bearer(keyed["admin"])).status_code == 200
    assert client.post("/v2/feedback", json={}, headers=bearer(keyed["alice"])).status_code == 401
    assert client.post("/v2/feedback", json={}, headers=bearer(new_key)).status_code == 400  # past auth
    path.write_text(path.read_text() + "nonsense\n")
    assert not ring.reload() and client.post("/v2/feedback", json={}, headers=bearer(new_key)).status_code == 400


def serve_refusal(tmp_path, *args: str) -> subprocess.CompletedProcess:
    config = tmp_path / "serve.json"
    config.write_text(json.dumps({"models": {"m": {"path": str(tmp_path / "absent")}}}))
    return subprocess.run([sys.executable, "-m", "instrument_id.cli", "serve", "--config", str(config), *args],
                          capture_output=True, text=True, timeout=120)


def test_serve_refuses_an_open_public_bind(tmp_path):
    refused = serve_refusal(tmp_path, "--host", "0.0.0.0")
    assert refused.returncode == 2 and "--insecure-open" in refused.stderr and "--api-keys" in refused.stderr
    # with --insecure-open it gets past the bind check (and stops at the missing model folder)
    allowed = serve_refusal(tmp_path, "--host", "0.0.0.0", "--insecure-open")
    assert allowed.returncode == 2 and "--insecure-open" not in allowed.stderr and "absent" in allowed.stderr
    keys = tmp_path / "keys.txt"
    keys.write_text("client alice\n")
    keys.chmod(0o600)
    broken = serve_refusal(tmp_path, "--host", "0.0.0.0", "--api-keys", str(keys))
    assert broken.returncode == 2 and f"{keys}:1: expected" in broken.stderr
