"""A key rotated under load in the real `instrument-id serve` (gunicorn): SIGHUP makes the master read the key file
again and replace its workers gracefully, so the old key gets 401, the new one 200, and no request in flight fails."""

from __future__ import annotations

import concurrent.futures
import http.client
import json
import os
import signal
import threading
import time

import pytest

pytest.importorskip("gunicorn")
pytest.importorskip("ai_edge_litert.interpreter")

from serve_process import call, running_serve  # noqa: E402
from serving.keys import add_key, revoke_key  # noqa: E402
from serving_fixture import app_config, encode, folders, music_clip, needs_training  # noqa: E402,F401 (fixtures)

pytestmark = needs_training


def test_sighup_rotates_a_key_without_failing_a_request_in_flight(folders, tmp_path):
    keys_path = tmp_path / "keys.txt"
    old_key = add_key(keys_path, "client", "alice")
    steady_key = add_key(keys_path, "client", "steady")
    admin_key = add_key(keys_path, "admin", "ops")
    config_path = tmp_path / "serve.json"
    unlimited = {"client": {"requests": "100000/minute", "audio_seconds": "100000/minute"}}  # limits: another test
    config_path.write_text(json.dumps(app_config(folders, tmp_path / "log.sqlite", rate_limits=unlimited)))
    wav = encode(music_clip(1.0, rate_hz=16000), 16000, "WAV", "PCM_16")
    predict = {"Content-Type": "audio/wav"}
    with running_serve(config_path, tmp_path, workers=2, extra_args=("--api-keys", str(keys_path))) as server:
        url = f"{server.base}/v2/predict"
        assert call(url, wav, {**predict, "X-API-Key": old_key})[0] == 200
        assert call(f"{server.base}/metrics")[0] == 401
        stop = threading.Event()
        outcomes: list[int | str] = []

        def steady_client() -> None:
            while not stop.is_set():
                try:
                    outcomes.append(call(url, wav, {**predict, "Authorization": f"Bearer {steady_key}"})[0])
                except (OSError, http.client.HTTPException) as exc:  # a dropped connection is a failure here
                    outcomes.append(type(exc).__name__)

        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            for _ in range(4):
                pool.submit(steady_client)
            time.sleep(1.0)
            revoke_key(keys_path, "alice")
            new_key = add_key(keys_path, "client", "alice")
            os.kill(server.process.pid, signal.SIGHUP)
            deadline = time.monotonic() + 60
            while call(url, wav, {**predict, "X-API-Key": new_key})[0] != 200:  # the new workers have forked
                assert time.monotonic() < deadline, server.log_tail()
                time.sleep(0.2)
            time.sleep(1.0)
            stop.set()
        status, body = call(url, wav, {**predict, "X-API-Key": old_key})
        assert status == 401 and body == {"error": "unknown API key"}
        assert call(url, wav, {**predict, "X-API-Key": new_key})[0] == 200
        assert call(f"{server.base}/metrics", headers={"X-API-Key": admin_key})[0] == 200
        assert len(outcomes) > 8 and set(outcomes) == {200}, outcomes
        log = server.stderr_path.read_text()
        assert '"event": "keys_reloaded"' in log
        for key in (old_key, new_key, steady_key, admin_key):
            assert key[4:14] not in log  # no key, not even part of one, in the server's log
