"""One connection's HTTP/1.1 request, read to its end before a worker computes anything: the buffering half of
`instrument-id serve`'s buffered worker (serving/worker.py), with no sockets in it.

A request must arrive within a deadline: its headers within read_timeout_seconds of the connection, its body
within read_timeout_seconds plus one second per min_upload_bytes_per_second bytes received (so a legitimate
upload of any size gets time in proportion to what it has sent, and a client trickling a byte a second is cut
off after read_timeout_seconds). Sizes are capped before they are read: headers at max_header_bytes, the body at
the route's limit (the app's own max_upload_bytes, or max_analyze_upload_bytes for /v2/analyze), refused from
the Content-Length alone when it says too much. The body is held in memory up to spool_memory_bytes, then in a
temporary file, so memory per connection stays bounded whatever the client declares.

Parsing proper (header syntax, chunk decoding, smuggling checks) is left to gunicorn's parser, which reads the
buffered bytes afterwards; here only what is needed to find the request's end is read.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from typing import IO, Iterator

CRLF2 = b"\r\n\r\n"
MAX_CHUNK_LINE_BYTES = 4096
READ_BLOCK_BYTES = 64 * 1024
REASONS = {400: "Bad Request", 408: "Request Timeout", 413: "Content Too Large", 431: "Request Header Fields Too Large"}
# why a request is refused before the app sees it -> its status: the label values of /metrics' refusal counter
REFUSAL_STATUS = {
    "headers_timeout": 408, "body_timeout": 408, "headers_too_large": 431, "declared_body_too_large": 413,
    "body_too_large": 413, "chunk_line_too_long": 400, "bad_chunk_size": 400,
}


@dataclass(frozen=True)
class ReadLimits:
    """How long and how large a request may be while it is read, and how many a worker reads at once."""

    read_timeout_seconds: float = 10.0
    min_upload_bytes_per_second: float = 16 * 1024
    max_header_bytes: int = 64 * 1024
    max_body_bytes: int = 10 * 1024 * 1024
    large_body_routes: tuple[tuple[str, int], ...] = ()  # (path prefix, its body limit), e.g. /v2/analyze
    spool_memory_bytes: int = 256 * 1024
    max_connections_per_worker: int = 256

    def body_limit(self, path: str) -> int:
        """The most body bytes a request to `path` may send."""
        return next((limit for prefix, limit in self.large_body_routes if path.startswith(prefix)), self.max_body_bytes)


class Refusal(Exception):
    """A request answered before the app sees it: why (a REFUSAL_STATUS key), its status, and a message a person
    can act on."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason, self.status, self.message = reason, REFUSAL_STATUS[reason], message


def refusal_response(status: int, message: str) -> bytes:
    """A complete HTTP/1.1 response with the JSON error body {"error": message}; the connection closes after it."""
    body = json.dumps({"error": message}).encode()
    head = (f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n")
    return head.encode("ascii") + body


class ChunkedEnd:
    """Finds where a chunked body (RFC 9112 section 7.1) ends, without decoding it: sizes, data, trailers."""

    def __init__(self) -> None:
        self.line = bytearray()
        self.data_left = 0  # bytes of the current chunk's data and its CRLF still to come
        self.in_trailer = False

    def feed(self, data: bytes) -> int | None:
        """The offset in data just past the body's end, or None while it goes on; a bad size line is a Refusal."""
        at = 0
        while at < len(data):
            if self.data_left:
                step = min(self.data_left, len(data) - at)
                at, self.data_left = at + step, self.data_left - step
                continue
            newline = data.find(b"\n", at)
            if newline < 0:
                self.line += data[at:]
                if len(self.line) > MAX_CHUNK_LINE_BYTES:
                    raise Refusal("chunk_line_too_long", f"a chunk-size or trailer line is longer than {MAX_CHUNK_LINE_BYTES} bytes")
                return None
            self.line += data[at:newline]
            at = newline + 1
            line = bytes(self.line).rstrip(b"\r")
            self.line.clear()
            if self.in_trailer:
                if not line:
                    return at
                continue
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise Refusal("bad_chunk_size", f"malformed chunk size line {line[:40]!r} in a chunked body") from None
            if size == 0:
                self.in_trailer = True
            else:
                self.data_left = size + 2
        return None


class PendingRequest:
    """The bytes of one request as they arrive: feed() until `complete`, then chunks() for gunicorn's parser."""

    def __init__(self, limits: ReadLimits, now: float) -> None:
        self.limits = limits
        self.head = bytearray()
        self.head_bytes: bytes | None = None  # the header block, Expect removed (this side answers it)
        self.path = ""
        self.body = bytearray()  # in memory up to spool_memory_bytes, then in self.spill
        self.spill: IO[bytes] | None = None
        self.body_bytes = 0
        self.body_limit = limits.max_body_bytes
        self.content_length: int | None = None
        self.chunked: ChunkedEnd | None = None
        self.wants_continue = False
        self.complete = False
        self.started = now
        self.headers_at: float | None = None

    @property
    def deadline(self) -> float:
        """When the request must have arrived: headers within the read timeout, the body in proportion to its bytes."""
        if self.headers_at is None:
            return self.started + self.limits.read_timeout_seconds
        return self.headers_at + self.limits.read_timeout_seconds + self.body_bytes / self.limits.min_upload_bytes_per_second

    def overdue(self, now: float) -> Refusal:
        """The 408 of a request still incomplete at its deadline: its headers late, or its body."""
        waited = now - self.started
        if self.headers_at is None:
            return Refusal("headers_timeout", f"the request headers did not arrive within "
                           f"{self.limits.read_timeout_seconds:g} s ({len(self.head):,} bytes received); "
                           "send the whole request at once")
        expected = f" of {self.content_length:,}" if self.content_length is not None else ""
        return Refusal("body_timeout", f"the request body did not arrive in time: {self.body_bytes:,}{expected} bytes "
                       f"in {waited:.1f} s (the server waits {self.limits.read_timeout_seconds:g} s plus 1 s per "
                       f"{self.limits.min_upload_bytes_per_second:,.0f} bytes received); send the body at once")

    def feed(self, data: bytes, now: float) -> None:
        """Take the next bytes received; a request the server will not read on raises Refusal."""
        if self.head_bytes is None:
            if not self.head and data[:2] == b"\r\n":  # empty lines before a request line are allowed and ignored
                data = data.lstrip(b"\r\n")
            buffer = data
            if self.head:  # the headers came in pieces
                self.head += data
                buffer = self.head
            end = buffer.find(CRLF2)
            if end < 0:
                if not self.head:
                    self.head = bytearray(data)
                if len(self.head) > self.limits.max_header_bytes:
                    raise Refusal("headers_too_large", f"the request headers are larger than {self.limits.max_header_bytes:,} bytes")
                return
            view = memoryview(buffer)
            self._read_head(bytes(view[:end + 4]), now)
            data = view[end + 4:]  # the body's first bytes, not copied
            self.head = bytearray()
        if len(data) and not self.complete:
            self._feed_body(data)

    def _read_head(self, head: bytes, now: float) -> None:
        """The request line's path and the headers that say where the body ends; Expect is answered here."""
        self.headers_at = now
        lines = head[:-4].split(b"\r\n")
        target = lines[0].split(b" ")
        self.path = target[1].split(b"?", 1)[0].decode("latin-1") if len(target) == 3 else ""
        self.body_limit = self.limits.body_limit(self.path)
        kept = [lines[0]]
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name, value = name.strip().lower(), value.strip().lower()
            if name == b"expect" and value == b"100-continue" and target[-1] == b"HTTP/1.1":
                self.wants_continue = True
                continue
            if name == b"transfer-encoding" and value.endswith(b"chunked"):
                self.chunked = ChunkedEnd()
            elif name == b"content-length" and value.isdigit() and self.content_length is None:
                self.content_length = int(value)
                if self.content_length > self.body_limit:
                    raise Refusal("declared_body_too_large", f"the request body is larger than the {self.body_limit:,}-byte limit")
            kept.append(line)
        self.head_bytes = b"\r\n".join(kept) + CRLF2
        # no body to wait for, or a framing gunicorn will refuse (several or malformed lengths): hand it on now
        self.complete = self.chunked is None and not self.content_length

    def _feed_body(self, data: bytes | memoryview) -> None:
        if self.chunked is not None:
            data = bytes(data)
            end = self.chunked.feed(data)
            data = data if end is None else data[:end]
            self.complete = end is not None
        else:
            data = data[:self.content_length - self.body_bytes]  # bytes past the body (pipelining) are not read
            self.complete = self.body_bytes + len(data) >= self.content_length
        self.body_bytes += len(data)
        if self.body_bytes > self.body_limit:
            raise Refusal("body_too_large", f"the request body is larger than the {self.body_limit:,}-byte limit")
        if self.spill is None and len(self.body) + len(data) > self.limits.spool_memory_bytes:
            self.spill = tempfile.TemporaryFile()
            self.spill.write(self.body)
            self.body = bytearray()
        if self.spill is None:
            self.body += data
        else:
            self.spill.write(data)

    def chunks(self) -> Iterator[bytes]:
        """The whole request as gunicorn's parser reads it: the header block, then the body in blocks."""
        yield self.head_bytes or b""
        if self.spill is None:
            yield self.body  # gunicorn copies what it reads into its own buffer
            return
        self.spill.seek(0)
        while block := self.spill.read(READ_BLOCK_BYTES):
            yield block

    def close(self) -> None:
        """Free the body buffer and its temporary file, if it spilled to one."""
        self.body = bytearray()
        if self.spill is not None:
            self.spill.close()
