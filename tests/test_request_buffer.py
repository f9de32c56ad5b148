"""serving.request_buffer: where a request ends (Content-Length, chunked, none), its deadline, and what it refuses."""

from __future__ import annotations

import pytest

pytest.importorskip("gunicorn")

from serving.request_buffer import ChunkedEnd, PendingRequest, ReadLimits, Refusal, refusal_response  # noqa: E402

LIMITS = ReadLimits(read_timeout_seconds=10.0, min_upload_bytes_per_second=1000.0, max_header_bytes=200,
                    max_body_bytes=5000, large_body_routes=(("/v2/analyze", 50_000),), spool_memory_bytes=100)


@pytest.fixture
def new():
    """PendingRequest(LIMITS, now) for a test, closed afterwards (its body buffer is a temporary file)."""
    made = []

    def make(now: float = 0.0) -> PendingRequest:
        made.append(PendingRequest(LIMITS, now=now))
        return made[-1]

    yield make
    for pending in made:
        pending.close()


def _head(path: str = "/v2/predict", headers: str = "Content-Length: 10\r\n") -> bytes:
    return f"POST {path} HTTP/1.1\r\nHost: x\r\n{headers}\r\n".encode()


def _whole(pending: PendingRequest) -> bytes:
    return b"".join(pending.chunks())


def test_a_body_byte_by_byte_completes_at_its_content_length_and_spills_to_disk_past_the_spool_size(new):
    pending = new()
    for i, byte in enumerate(_head(headers="Content-Length: 300\r\n") + bytes(range(256)) + bytes(44) + b"pipelined"):
        assert not pending.complete, i
        pending.feed(bytes([byte]), now=float(i))
        if pending.complete:
            break
    assert pending.complete and pending.body_bytes == 300
    assert pending.spill is not None and not pending.body  # past spool_memory_bytes the body is in a temporary file
    assert _whole(pending) == _head(headers="Content-Length: 300\r\n") + bytes(range(256)) + bytes(44)


def test_deadlines_headers_within_the_read_timeout_then_a_second_per_min_rate_bytes(new):
    pending = new(100.0)
    pending.feed(b"POST /v2/predict HTTP/1.1\r\n", now=101.0)
    assert pending.deadline == 110.0
    late_headers = pending.overdue(110.0)
    assert (late_headers.status, late_headers.reason) == (408, "headers_timeout")
    assert "headers did not arrive within 10 s" in late_headers.message
    pending.feed(b"Content-Length: 4000\r\n\r\n" + bytes(2000), now=103.0)
    assert pending.deadline == 103.0 + 10.0 + 2.0  # 2000 bytes at 1000 bytes/s earn two seconds
    late_body = pending.overdue(115.0)
    assert (late_body.status, late_body.reason) == (408, "body_timeout")
    assert "2,000 of 4,000 bytes in 15.0 s" in late_body.message


def test_a_chunked_body_ends_at_its_last_chunk_and_trailers(new):
    chunked = b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\n"
    for split in range(len(chunked) + 1):
        pending = new()
        pending.feed(_head(headers="Transfer-Encoding: chunked\r\n") + chunked[:split], now=0.0)
        assert pending.complete == (split == len(chunked))
        if split < len(chunked):
            pending.feed(chunked[split:] + b"GET / HTTP/1.1\r\n\r\n", now=0.0)
        assert pending.complete and _whole(pending).endswith(chunked)
    scanner = ChunkedEnd()
    with pytest.raises(Refusal, match="malformed chunk size"):
        scanner.feed(b"zz\r\n")


def test_expect_100_continue_is_answered_here_and_left_out_of_what_gunicorn_parses(new):
    pending = new()
    pending.feed(_head(headers="Expect: 100-continue\r\nContent-Length: 3\r\n"), now=0.0)
    assert pending.wants_continue and not pending.complete
    pending.feed(b"abc", now=0.0)
    assert pending.complete and b"expect" not in _whole(pending).lower()


def test_no_body_or_a_framing_gunicorn_refuses_goes_on_at_once(new):
    for headers in ("", "Content-Length: 0\r\n", "Content-Length: ten\r\n"):
        pending = new()
        pending.feed(_head(headers=headers), now=0.0)
        assert pending.complete, headers


@pytest.mark.parametrize("path, declared, status", [
    ("/v2/predict", 5001, 413), ("/v2/analyze?hop=1", 5001, None), ("/v2/analyze", 50_001, 413),
])
def test_a_declared_length_over_the_routes_limit_is_refused_before_the_body(new, path, declared, status):
    pending = new()
    if status is None:
        pending.feed(_head(path, f"Content-Length: {declared}\r\n"), now=0.0)
        assert not pending.complete
        return
    with pytest.raises(Refusal, match="larger than the") as refused:
        pending.feed(_head(path, f"Content-Length: {declared}\r\n"), now=0.0)
    assert (refused.value.status, refused.value.reason) == (status, "declared_body_too_large")


def test_too_many_chunked_bytes_and_too_large_headers_are_refused(new):
    pending = new()
    pending.feed(_head(headers="Transfer-Encoding: chunked\r\n"), now=0.0)
    with pytest.raises(Refusal) as refused:
        pending.feed(b"1770\r\n" + bytes(6000), now=0.0)
    assert (refused.value.status, refused.value.reason) == (413, "body_too_large")
    with pytest.raises(Refusal) as refused:
        new().feed(b"GET / HTTP/1.1\r\nX-Long: " + b"a" * 300, now=0.0)
    assert (refused.value.status, refused.value.reason) == (431, "headers_too_large")


def test_a_refusal_is_a_whole_http_answer_with_a_json_error():
    answer = refusal_response(408, "too slow")
    head, body = answer.split(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 Request Timeout\r\n") and b"Connection: close" in head
    assert b"Content-Length: %d" % len(body) in head and body == b'{"error": "too slow"}'
