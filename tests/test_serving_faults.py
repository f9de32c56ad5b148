"""`instrument-id serve` under faults: workers killed with SIGKILL mid-load, and a log locked by another process."""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import socket
import sqlite3
import threading
import time
import uuid

import pytest

pytest.importorskip("gunicorn")
pytest.importorskip("ai_edge_litert.interpreter")

from serving.keys import add_key  # noqa: E402
from serve_process import call, call_retrying, metric_total, running_serve, worker_pids  # noqa: E402
from serving_fixture import app_config, encode, folders, music_clip, needs_training  # noqa: E402,F401 (fixtures)

pytestmark = needs_training
UNLOGGED = "instrument_id_predictions_unlogged_total"
REPLAYED = "instrument_id_predictions_replayed_total"


@pytest.fixture(scope="module")
def clips():
    return [encode(music_clip(seconds, seed=i), 44100, "WAV", "PCM_16") for i, seconds in enumerate((0.5, 1.0, 2.0))]


def logged_ids(path) -> set[str]:
    with sqlite3.connect(path) as connection:
        ids = {row[0] for row in connection.execute("SELECT id FROM predictions")}
    connection.close()
    return ids


def wait_until(condition, timeout_s: float = 60.0, what: str = "condition") -> None:
    """Poll for an outcome (how long it takes is not what is tested)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"{what} not reached in {timeout_s} s"
        time.sleep(0.05)


@pytest.mark.parametrize("keys_on", [False, True], ids=["open", "keys"])
def test_sigkilled_workers_are_replaced_and_the_log_holds_exactly_the_answered_predictions(folders, clips, tmp_path, capsys,
                                                                                         keys_on):
    """Eight clients send 240 predictions, each with an Idempotency-Key of its own that every retry repeats; one
    worker, later both at once, are SIGKILLed while requests are in flight. The master starts new ones, every
    client gets its answer by retrying, and the log holds exactly the answered prediction ids: none missing (the
    row is committed before the answer leaves) and none extra (a worker that died between its commit and its
    answer left a row under the key's id, which the retry answers instead of logging a second one)."""
    config_path = tmp_path / "serve.json"
    unlimited = {"client": {"requests": "100000/minute", "audio_seconds": "100000/minute"}}
    config_path.write_text(json.dumps(app_config(folders, tmp_path / "log.sqlite", rate_limits=unlimited)))
    jobs = 240
    keys_path, client_keys, admin = tmp_path / "keys.txt", [], {}
    if keys_on:  # four clients and an admin; each request carries its client's key instead of X-Client-Id
        client_keys = [add_key(keys_path, "client", f"c{n}") for n in range(4)]
        admin = {"X-API-Key": add_key(keys_path, "admin", "ops")}
    extra_args = ("--api-keys", str(keys_path)) if keys_on else ()
    with running_serve(config_path, tmp_path, workers=2, extra_args=extra_args) as server:
        master = server.process.pid
        # serve is ready once one worker answers; the master may still be forking the second
        wait_until(lambda: len(worker_pids(master)) == 2, what="both workers started")
        first_workers = worker_pids(master)
        answered_count = threading.Semaphore(0)

        def one(i: int) -> tuple[int, dict, int]:
            headers = {"Content-Type": "audio/wav", "X-Client-Id": f"c{i % 40}", "Idempotency-Key": str(uuid.uuid4())}
            if keys_on:
                headers["Authorization"] = f"Bearer {client_keys[i % 4]}"
            status, body, failures = call_retrying(f"{server.base}/v2/predict", clips[i % 3], headers)
            answered_count.release()
            return status, body, failures

        killed, waited = [], 0
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            futures = [pool.submit(one, i) for i in range(jobs)]
            for after in (40, 120):  # answers to wait for before each kill, so requests are in flight
                while waited < after:
                    assert answered_count.acquire(timeout=120), server.log_tail()
                    waited += 1
                victims = sorted(worker_pids(master))[:1] if not killed else sorted(worker_pids(master))
                for victim in victims:  # first one worker, then every worker at once
                    os.kill(victim, signal.SIGKILL)
                killed += victims
                wait_until(lambda: len(worker_pids(master) - set(killed)) == 2, what="replacement workers")
            results = [future.result() for future in futures]
        assert server.process.poll() is None, "the master must survive its workers"
        replaced = worker_pids(master)
        assert len(replaced) == 2 and not replaced & set(killed) and replaced != first_workers
        assert [status for status, _, _ in results] == [200] * jobs
        answered = {body["prediction_id"] for _, body, _ in results}
        logged = logged_ids(tmp_path / "log.sqlite")
        assert metric_total(server.metrics(admin), UNLOGGED) == 0
        replayed = metric_total(server.metrics(admin), REPLAYED)  # retries whose row a killed worker had committed
    retried = sum(failures for _, _, failures in results)
    with capsys.disabled():
        print(f"\nSIGKILL of {len(killed)} workers: {len(answered)} answered, {len(logged)} logged, "
              f"{len(answered - logged)} answered but not logged, {retried} client retries, {replayed:.0f} of them "
              "answered from a row their killed worker had committed")
    assert len(answered) == jobs
    assert logged == answered  # none missing, none extra


def test_an_answer_lost_after_its_commit_is_answered_again_from_the_log_by_its_key(folders, clips, tmp_path):
    """The fault the key exists for, made on purpose: the client sends its whole request and hangs up, so the worker
    commits the row and its answer goes nowhere; the retry with the same key answers that row's id, logs nothing
    more, and /metrics counts it as a replay."""
    config_path = tmp_path / "serve.json"
    config_path.write_text(json.dumps(app_config(folders, tmp_path / "log.sqlite")))
    key = str(uuid.uuid4())
    with running_serve(config_path, tmp_path, workers=1) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(f"POST /v2/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: audio/wav\r\n"
                         f"Idempotency-Key: {key}\r\nContent-Length: {len(clips[1])}\r\n\r\n".encode() + clips[1])
        wait_until(lambda: len(logged_ids(tmp_path / "log.sqlite")) == 1, what="the lost answer's row")
        lost = logged_ids(tmp_path / "log.sqlite")
        status, body = call(f"{server.base}/v2/predict", clips[1], {"Content-Type": "audio/wav", "Idempotency-Key": key})
        assert status == 200 and {body["prediction_id"]} == lost
        assert logged_ids(tmp_path / "log.sqlite") == lost
        assert metric_total(server.metrics(), REPLAYED, route="/v2/predict") == 1


def test_a_locked_log_still_answers_counts_unlogged_and_logs_them_once_released(folders, clips, tmp_path):
    """Another process holds SQLite's write lock: predictions answer 200 all the same, /metrics counts them as
    unlogged, feedback says 503 (retry); once the lock is gone every answered prediction reaches the log."""
    log_path = tmp_path / "log.sqlite"
    config_path = tmp_path / "serve.json"
    config_path.write_text(json.dumps(app_config(folders, log_path)))
    headers = {"Content-Type": "audio/wav"}
    with running_serve(config_path, tmp_path, workers=2) as server:
        before = [call(f"{server.base}/v2/predict?model=mlp", clips[0], headers) for _ in range(2)]
        assert [status for status, _ in before] == [200, 200]
        holder = sqlite3.connect(log_path, isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")
        try:
            with concurrent.futures.ThreadPoolExecutor(4) as pool:
                during = list(pool.map(lambda i: call(f"{server.base}/v2/predict", clips[i % 3], headers), range(8)))
            assert [status for status, _ in during] == [200] * 8
            metrics = server.metrics()
            assert metric_total(metrics, UNLOGGED, reason="locked") == 8
            assert metric_total(metrics, "instrument_id_prediction_log_queue") == 8
            feedback = json.dumps({"prediction_id": during[0][1]["prediction_id"], "instruments": ["piano"]}).encode()
            status, body = call(f"{server.base}/v2/feedback", feedback, {"Content-Type": "application/json"})
            assert status == 503 and "retry" in body["error"]
            assert logged_ids(log_path) == {body["prediction_id"] for _, body in before}
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        answered = {body["prediction_id"] for _, body in before + during}
        wait_until(lambda: logged_ids(log_path) == answered, what="the queued predictions in the log")
        wait_until(lambda: metric_total(server.metrics(), "instrument_id_predictions_logged_late_total") == 8,
                   what="logged_late = 8")
        assert metric_total(server.metrics(), "instrument_id_prediction_log_queue") == 0
        status, _ = call(f"{server.base}/v2/feedback", feedback, {"Content-Type": "application/json"})
        assert status == 200
