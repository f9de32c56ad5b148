"""`instrument-id serve` (buffered workers, the default) under slow clients: 64 connections that trickle a body a
byte a second or stop part-way, while normal clients keep getting answers; the slow ones are answered 408 once
their read deadline passes. Also through the real server: chunked and Expect: 100-continue uploads, and a body
refused from its Content-Length alone, or headers past their limit. Every refusal is counted in /metrics by status
and reason. The uploads run in open mode and with keys on (every request carrying a client key, counted by the
rate limiter; /metrics read with an admin key); the refusals before the app, where no key is read, in open mode.
"""

from __future__ import annotations

import concurrent.futures
import http.client
import json
import socket
import threading
from dataclasses import dataclass

import pytest

pytest.importorskip("gunicorn")
pytest.importorskip("ai_edge_litert.interpreter")

from serve_process import Server, call, metric_total, running_serve  # noqa: E402
from serving.keys import add_key  # noqa: E402
from serving_fixture import app_config, encode, music_clip, needs_training, served_folders  # noqa: E402

pytestmark = needs_training
READ_TIMEOUT_SECONDS = 8  # long enough that the normal requests below finish while every slow one is still open
SLOW_CONNECTIONS = 64
NORMAL_REQUESTS = 48
REFUSED = "instrument_id_http_refused_total"
UNREACHED_LIMITS = {role: {"requests": "100000/minute", "audio_seconds": "10000000/minute"} for role in ("client", "admin")}


@dataclass(frozen=True)
class Served:
    """A running server and the headers its requests carry: a client key and an admin key ({} in open mode)."""

    running: Server
    client: dict[str, str]
    admin: dict[str, str]

    @property
    def port(self) -> int:
        return self.running.port

    @property
    def base(self) -> str:
        return self.running.base

    def key_line(self) -> str:
        """The client key as a raw header line ('' in open mode)."""
        return "".join(f"{name}: {value}\r\n" for name, value in self.client.items())


@pytest.fixture(scope="module", params=["open", "keys"])
def server(tmp_path_factory, request):
    folders = served_folders(tmp_path_factory)
    work = tmp_path_factory.mktemp(f"slow_clients_{request.param}")
    config_path = work / "serve.json"
    config_path.write_text(json.dumps(app_config(folders, work / "log.sqlite", max_upload_bytes=2_000_000,
                                                 rate_limits=UNREACHED_LIMITS)))
    extra_args, client, admin = ("--read-timeout", str(READ_TIMEOUT_SECONDS)), {}, {}
    if request.param == "keys":
        keys_path = work / "keys.txt"
        client = {"X-API-Key": add_key(keys_path, "client", "uploader")}
        admin = {"Authorization": f"Bearer {add_key(keys_path, 'admin', 'ops')}"}
        extra_args += ("--api-keys", str(keys_path))
    with running_serve(config_path, work, extra_args=extra_args) as running:
        yield Served(running, client, admin)


@pytest.fixture(scope="module")
def clip():
    return encode(music_clip(1.0), 44100, "WAV", "PCM_16")


def _head(port: int, body_bytes: int, extra: str = "") -> bytes:
    return (f"POST /v2/predict HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: audio/wav\r\n"
            f"Content-Length: {body_bytes}\r\n{extra}\r\n").encode()


def _still_open(sock: socket.socket) -> bool:
    """True when the server has neither answered nor closed the connection."""
    sock.setblocking(False)
    try:
        sock.recv(1, socket.MSG_PEEK)  # returns an answer's first byte, or b'' once closed
        return False
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        sock.setblocking(True)


def _final_answer(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes (b'' when it drops the connection without a word)."""
    sock.settimeout(READ_TIMEOUT_SECONDS * 6)
    received = b""
    try:
        while chunk := sock.recv(4096):
            received += chunk
    except ConnectionResetError:
        pass
    return received


def refused(server: Served, status: int, reason: str) -> float:
    """The refusals /metrics counts (over every worker) of one status and reason."""
    return metric_total(server.running.metrics(server.admin), REFUSED, status=str(status), reason=reason)


def test_normal_clients_are_served_while_64_slow_ones_hold_connections_then_those_get_408(server, clip):
    refused_before = refused(server, 408, "body_timeout")
    slow = []
    for i in range(SLOW_CONNECTIONS):  # even: trickle the body a byte a second; odd: send 100 bytes, then nothing
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        sock.sendall(_head(server.port, len(clip), server.key_line()) + (clip[:100] if i % 2 else b""))
        slow.append(sock)
    stop = threading.Event()

    def trickle() -> None:
        sent = 0
        while not stop.wait(1.0):
            for sock in slow[::2]:
                try:
                    sock.send(clip[sent:sent + 1])
                except OSError:
                    pass
            sent += 1

    trickler = threading.Thread(target=trickle, daemon=True)
    trickler.start()
    try:
        def predict(i: int) -> int:
            return call(f"{server.base}/v2/predict", clip,
                        {"Content-Type": "audio/wav", "X-Client-Id": f"n{i}", **server.client})[0]

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(predict, range(NORMAL_REQUESTS)))
        assert statuses == [200] * NORMAL_REQUESTS
        assert all(_still_open(sock) for sock in slow)  # the normal answers came while every slow client held on
        answers = [_final_answer(sock) for sock in slow]
    finally:
        stop.set()
        trickler.join()
        for sock in slow:
            sock.close()
    timed_out = [a for a in answers if a.startswith(b"HTTP/1.1 408 ")]
    assert len(timed_out) + answers.count(b"") == SLOW_CONNECTIONS, {a[:40] for a in answers}
    assert len(timed_out) == SLOW_CONNECTIONS  # the buffered worker answers rather than drops
    error = json.loads(timed_out[0].split(b"\r\n\r\n", 1)[1])["error"]
    assert "did not arrive in time" in error and f"waits {READ_TIMEOUT_SECONDS} s" in error
    assert refused(server, 408, "body_timeout") == refused_before + SLOW_CONNECTIONS
    assert call(f"{server.base}/v2/predict", clip, {"Content-Type": "audio/wav", **server.client})[0] == 200


def test_chunked_and_100_continue_uploads_are_read_whole_and_answered(server, clip):
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    pieces = [clip[i:i + 7000] for i in range(0, len(clip), 7000)]
    connection.request("POST", "/v2/predict", body=iter(pieces), encode_chunked=True,
                       headers={"Content-Type": "audio/wav", "Transfer-Encoding": "chunked", **server.client})
    response = connection.getresponse()
    assert response.status == 200 and len(json.loads(response.read())["results"]) == 11
    connection.close()

    with socket.create_connection(("127.0.0.1", server.port), timeout=60) as sock:
        sock.sendall(_head(server.port, len(clip), "Expect: 100-continue\r\n" + server.key_line()))
        assert sock.recv(64) == b"HTTP/1.1 100 Continue\r\n\r\n"  # sent before the body, once
        sock.sendall(clip)
        answer = _final_answer(sock)
    assert answer.startswith(b"HTTP/1.1 200 ") and b"100 Continue" not in answer


def test_a_body_over_the_limit_is_refused_from_its_content_length(server):
    before = refused(server, 413, "declared_body_too_large")
    with socket.create_connection(("127.0.0.1", server.port), timeout=60) as sock:
        sock.sendall(_head(server.port, 3_000_000, "Expect: 100-continue\r\n" + server.key_line()))
        answer = _final_answer(sock)
    head, body = answer.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 413 ") and b"application/json" in head
    assert json.loads(body) == {"error": "the request body is larger than the 2,000,000-byte limit"}
    assert refused(server, 413, "declared_body_too_large") == before + 1


# (what is sent, the status line answered, the reason /metrics counts it under)
REFUSED_HEADERS = [
    (b"POST /v2/predict HTTP/1.1\r\nHost: x\r\n", b"HTTP/1.1 408 Request Timeout", "headers_timeout"),  # never ends
    (b"GET /healthz HTTP/1.1\r\nX-Padding: " + b"a" * (70 * 1024),  # past the worker's 64 kB, still unfinished
     b"HTTP/1.1 431 Request Header Fields Too Large", "headers_too_large"),
    (b"GET /healthz HTTP/1.1\r\nX-Padding: " + b"a" * (10 * 1024) + b"\r\n\r\n",  # one field past gunicorn's 8 kB
     b"HTTP/1.1 431 Request Header Fields Too Large", "limit_request_headers"),
    (b"NOT A REQUEST\r\n\r\n", b"HTTP/1.1 400 Bad Request", "invalid_request_line"),
]


@pytest.mark.parametrize("server", ["open"], indirect=True)  # refused before the app: no key is read
def test_requests_refused_before_the_app_are_counted_by_status_and_reason(server):
    """The worker's own refusals and those of gunicorn's parser, each once per connection."""
    def counts() -> list[float]:
        return [refused(server, int(status.split(b" ")[1]), reason) for _, status, reason in REFUSED_HEADERS]

    before = counts()
    answers = []
    for sent, _, _ in REFUSED_HEADERS:
        with socket.create_connection(("127.0.0.1", server.port), timeout=60) as sock:
            sock.sendall(sent)
            answers.append(_final_answer(sock).split(b"\r\n", 1)[0])
    assert answers == [status for _, status, _ in REFUSED_HEADERS]
    assert counts() == [n + 1 for n in before]
