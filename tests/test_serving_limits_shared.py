"""Rate limits in the real `instrument-id serve`: two replicas of two gunicorn workers each, one client flooding
both. With a shared Redis the client gets exactly its limit overall; with the default store (a private SQLite file
per replica) exactly its limit from each replica, its two workers counting together; with memory:// every worker
counts on its own, and serve warns so at start."""

from __future__ import annotations

import concurrent.futures
import json
from contextlib import ExitStack
from pathlib import Path

import pytest

pytest.importorskip("gunicorn")
pytest.importorskip("limits")
pytest.importorskip("ai_edge_litert.interpreter")

from redis_fixture import redis_url  # noqa: E402,F401 (fixture)
from serve_process import call, free_port, running_serve  # noqa: E402
from serving.keys import add_key  # noqa: E402
from serving_fixture import app_config, encode, folders, music_clip, needs_training  # noqa: E402,F401 (fixtures)

pytestmark = needs_training
LIMIT = 8  # requests per hour: no window edge can pass during the test
REPLICAS = 2
WORKERS = 2


@pytest.mark.parametrize("storage", ["redis", "default", "memory"])
def test_a_client_is_held_at_its_limit_per_replica_by_default_and_across_replicas_with_redis(folders, tmp_path, request,
                                                                                              storage):
    uri = {"redis": request.getfixturevalue("redis_url") if storage == "redis" else None, "memory": "memory://"}
    keys_path = tmp_path / "keys.txt"
    alice, bob = add_key(keys_path, "client", "alice"), add_key(keys_path, "client", "bob")
    config_path = tmp_path / "serve.json"
    limits = {"client": {"requests": f"{LIMIT}/hour", "audio_seconds": "100000/hour"}}
    storage_config = {"rate_limit_storage": uri[storage]} if storage in uri else {}  # default: none given
    config_path.write_text(json.dumps(app_config(folders, tmp_path / "log.sqlite", rate_limits=limits, **storage_config)))
    wav = encode(music_clip(0.5, rate_hz=16000), 16000, "WAV", "PCM_16")
    with ExitStack() as stack:
        servers = [stack.enter_context(running_serve(config_path, tmp_path, workers=WORKERS, name=f"replica{n}",
                                                     extra_args=("--api-keys", str(keys_path))))
                   for n in range(REPLICAS)]

        def predict(n: int, key: str) -> tuple[int, int, dict]:
            """(replica, status, body) of one prediction sent to replica n % REPLICAS."""
            replica = n % REPLICAS
            status, body = call(f"{servers[replica].base}/v2/predict", wav,
                                {"Content-Type": "audio/wav", "X-API-Key": key})
            return replica, status, body

        with concurrent.futures.ThreadPoolExecutor(2 * REPLICAS * WORKERS) as pool:
            answers = list(pool.map(lambda n: predict(n, alice), range(4 * LIMIT)))
        logs = [server.stderr_path.read_text() for server in servers]
        bob_statuses = [predict(n, bob)[1] for n in range(REPLICAS)]
    statuses = [status for _, status, _ in answers]
    assert set(statuses) == {200, 429}, statuses
    refused = [body for _, status, body in answers if status == 429]
    assert all(f"{LIMIT} requests per 1 hour" in body["error"] for body in refused)
    assert bob_statuses == [200] * REPLICAS  # another client's budget is its own
    passed = [sum(1 for where, status, _ in answers if where == replica and status == 200) for replica in range(REPLICAS)]
    warned = ['"event": "rate_limits_per_worker"' in log for log in logs]
    private_files = [Path(json.loads(line)["file"]) for log in logs for line in log.splitlines()
                     if '"event": "rate_limits_per_replica"' in line]
    if storage == "redis":
        assert statuses.count(200) == LIMIT  # one budget across 2 replicas x 2 workers
        for replica in range(REPLICAS):  # each replica got 2 * LIMIT of the requests and refused at least LIMIT
            assert sum(1 for where, status, _ in answers if where == replica and status == 429) >= LIMIT
        assert warned == [False] * REPLICAS and private_files == []
    elif storage == "default":
        assert passed == [LIMIT] * REPLICAS  # one budget per replica, whichever of its 2 workers answered
        assert warned == [False] * REPLICAS and len(set(private_files)) == REPLICAS
        assert not any(file.parent.exists() for file in private_files)  # each master removed its folder on stopping
    else:
        # each worker counts alone, so a replica lets through its limit or more: how much more depends on which worker
        # accepts each connection, which a loaded machine skews to one (flaky as an equality; the exact per-worker
        # excess is shown with forked processes in test_serving_limits_sqlite.py); serve says so at start
        assert min(passed) >= LIMIT
        assert warned == [True] * REPLICAS and private_files == []


def test_an_unreachable_store_is_warned_at_start_and_answers_503_not_500(folders, tmp_path):
    keys_path = tmp_path / "keys.txt"
    alice = add_key(keys_path, "client", "alice")
    config_path = tmp_path / "serve.json"
    dead_store = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    config_path.write_text(json.dumps(app_config(folders, tmp_path / "log.sqlite", rate_limit_storage=dead_store)))
    wav = encode(music_clip(0.5, rate_hz=16000), 16000, "WAV", "PCM_16")
    with running_serve(config_path, tmp_path, workers=1, extra_args=("--api-keys", str(keys_path))) as server:
        status, body = call(f"{server.base}/v2/predict", wav, {"Content-Type": "audio/wav", "X-API-Key": alice})
        assert call(f"{server.base}/healthz")[0] == 200  # open routes are not counted, so they still answer
        log = server.stderr_path.read_text()
    assert status == 503 and "rate-limit store cannot be reached" in body["error"]
    assert '"event": "rate_limit_store_unreachable"' in log and "Traceback" not in log
