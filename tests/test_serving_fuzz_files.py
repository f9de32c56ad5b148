"""Fuzzing every decoder path with real files: WAV (PCM16, float32), FLAC, Ogg Vorbis, Ogg Opus and MP3 written by
soundfile, then damaged as a hostile client would (byte flips, truncation, absurd header fields, NaN and inf
samples, huge declared lengths, junk appended) and sent as a raw body, a multipart upload (whole or with its
envelope cut) or base64 PCM in JSON, to every audio route of the app.

Every answer must be 200 with 11 results or a 4xx JSON body whose message is one of the known, actionable ones;
never a 5xx, never an unexpected exception in the log. Each test prints a summary line (cases, statuses).
Each test runs in open mode and with keys on (each request carrying a valid, missing, unknown or junk key, every
one counted and charged its audio by the real limiter); the keyed run takes a quarter of the examples, since the
decoders behind the key check are the same.
"""

from __future__ import annotations

import base64
import collections
import json
import logging
import math
import re
import struct
from dataclasses import dataclass

import pytest

pytest.importorskip("flask")
pytest.importorskip("ai_edge_litert.interpreter")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from fuzz_keys import KEY_ERRORS, MODES, credentials, keyed_overrides  # noqa: E402
from fuzz_mutations import (  # noqa: E402
    CONTENT_TYPES, Field, header_fields, fix_ogg_crcs, put_float_samples, set_field, wav_data_span, writable_formats,
)
from serving.app import create_app  # noqa: E402
from serving_fixture import app_config, needs_training, served_folders  # noqa: E402

pytestmark = needs_training
EXAMPLES_PER_FORMAT = {"open": 1000, "keys": 250}
ROUTES = ["/v2/predict", "/v2/predict?model=rf", "/v2/compare", "/v2/analyze", "/v2/analyze?hop=0.25&model=rf", "/RNA"]
DELIVERIES = ["raw", "raw as octet-stream", "raw as another audio type", "multipart", "multipart, envelope cut",
              "multipart, wrong field name"]
NON_FINITE = [math.nan, math.inf, -math.inf, 3.4e38, -3.4e38, 1e-45]
SIZE_FIELDS = ("data chunk size", "riff size", "fact frames", "total samples", "granule position", "xing frames")
# every 4xx message must say what was wrong in one of these ways (a new kind of refusal is reviewed, then listed)
KNOWN_ERRORS = [re.compile(p) for p in (
    r"is not a readable audio file \(WAV, FLAC, OGG or MP3\): \S",
    r"not a readable audio file \(\S",  # /v2/analyze's streaming reader
    r"decoding failed part-way \(\S",
    r"contains NaN or infinite samples",
    r"features overflow \(samples far outside -1..1\?\)",
    r"sample rate -?\d+ Hz is outside the supported",
    r"-?\d+ channels; 1 to \d+ are supported",
    r"holds 0 samples|no audio: 0 samples",
    r"is empty: send an audio file",
    r"decodes to [\d,]+ bytes .* over the [\d,]+-byte analysis limit",
    r"the recording is [\d,.]+ s long, over the",
    r"the request body is larger than the [\d,]+-byte limit",
    r"a multipart upload needs the audio in a file field named 'audio'",
    r"'pcm_base64' is not valid base64",
    r"PCM bytes is not a whole number of",
    r"'format' must be one of",
    r"'(sample_rate|channels)' must be an integer",
    r"unsupported Content-Type",
    *KEY_ERRORS,
)]


@dataclass(frozen=True)
class Service:
    """The app's test client in one mode, its keys ({} when open) and how many cases each test sends."""

    client: object
    keys: dict[str, str]
    examples: int


@pytest.fixture(scope="module", params=MODES)
def service(tmp_path_factory, request) -> Service:
    folders = served_folders(tmp_path_factory)
    work = tmp_path_factory.mktemp(f"fuzz_files_{request.param}")
    overrides, keys = keyed_overrides(work, request.param)
    config = app_config(folders, work / "log.sqlite", max_upload_bytes=1_000_000, max_analyze_bytes=2_000_000,
                        max_analyze_upload_bytes=1_000_000, max_analyze_seconds=600, **overrides)
    return Service(create_app(config).test_client(), keys, EXAMPLES_PER_FORMAT[request.param])


@pytest.fixture(scope="module")
def files():
    return writable_formats()


def field_values(field: Field) -> st.SearchStrategy[int]:
    """Values a liar would put in a field: 0, 1, the extremes of its width, around its midpoint, or anything."""
    top = field.max_value
    return st.sampled_from([0, 1, 2, 3, top, top - 1, top >> 1, (top >> 1) + 1, 0x7FFF & top, 0x8000 & top]) | st.integers(0, top)


@st.composite
def damaged_file(draw, name: str, pristine: bytes) -> tuple[list[str], bytes]:
    """(what was done, the file's bytes after one to three kinds of damage)."""
    fields = header_fields(name, pristine)
    kinds = ["header field", "byte flips", "truncation", "junk appended", "huge declared size"]
    if name == "wav_float32":
        kinds.append("non-finite samples")
    data, done = bytearray(pristine), []
    for kind in draw(st.lists(st.sampled_from(kinds), min_size=1, max_size=3, unique=True)):
        fields = [f for f in fields if (f.bit_offset + f.bits) <= 8 * len(data)]  # a truncation may have cut some off
        if kind in ("header field", "huge declared size", "byte flips") and not fields:
            continue
        if kind in ("header field", "huge declared size"):
            sizes = [f for f in fields if f.name in SIZE_FIELDS or f.name.endswith("chunk size")]
            field = draw(st.sampled_from(sizes if kind == "huge declared size" and sizes else fields))
            value = draw(st.integers(field.max_value - 16, field.max_value) if kind == "huge declared size" else field_values(field))
            set_field(data, field, value)
            done.append(f"{field.name}={value}")
        elif kind == "byte flips":
            span = draw(st.sampled_from([64, 512, len(data)]))  # mostly the header, sometimes anywhere
            for _ in range(draw(st.integers(1, 8))):
                at = draw(st.integers(0, min(span, len(data)) - 1))
                data[at] ^= draw(st.integers(1, 255))
            done.append(f"byte flips in the first {span} bytes")
        elif kind == "truncation":
            data = data[:draw(st.integers(0, len(data)))]
            done.append(f"cut to {len(data)} bytes")
        elif kind == "junk appended":
            data += draw(st.binary(min_size=1, max_size=64))
            done.append("junk appended")
        else:
            indices = draw(st.lists(st.integers(0, 10**6), min_size=1, max_size=6))
            put_float_samples(data, wav_data_span(pristine), indices, [draw(st.sampled_from(NON_FINITE)) for _ in indices])
            done.append(f"{len(indices)} non-finite samples")
    if name.startswith("ogg") and draw(st.booleans()):
        fix_ogg_crcs(data)  # let the lie past libogg's page check, to the codec's header parser
        done.append("ogg CRCs fixed")
    return done, bytes(data)


@st.composite
def file_case(draw, name: str, files: dict[str, bytes], keys: dict[str, str]) -> "Case":
    """A damaged file of format `name`, sent one of the DELIVERIES ways to one of the ROUTES with some credentials."""
    damage, data = draw(damaged_file(name, files[name]))
    how, body, content_type = draw(delivery(name, data))
    return Case((name, *damage, how), draw(st.sampled_from(ROUTES)), body, content_type, draw(credentials(keys)))


def _multipart(data: bytes, field_name: str, cut_to: int | None) -> tuple[bytes, str]:
    """(body, content type) of a multipart upload of data, its envelope cut to cut_to bytes when given."""
    boundary = "fuzzboundary7d1e"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field_name}\"; filename=\"clip\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return (body if cut_to is None else body[:cut_to]), f"multipart/form-data; boundary={boundary}"


@st.composite
def delivery(draw, name: str, data: bytes) -> tuple[str, bytes, str]:
    """(how, body, content type) for sending data."""
    how = draw(st.sampled_from(DELIVERIES))
    if how == "raw":
        return how, data, CONTENT_TYPES[name]
    if how == "raw as octet-stream":
        return how, data, "application/octet-stream"
    if how == "raw as another audio type":
        return how, data, draw(st.sampled_from(sorted(set(CONTENT_TYPES.values()) - {CONTENT_TYPES[name]})))
    if how == "multipart, envelope cut":
        body, content_type = _multipart(data, "audio", None)
        return how, *_multipart(data, "audio", draw(st.integers(0, len(body) - 1)))
    return how, *_multipart(data, "audio" if how == "multipart" else draw(st.sampled_from(["file", "Audio", ""])), None)


class Case:
    """One request; its repr names what was done, not the bytes (hypothesis prints it on a failure)."""

    def __init__(self, what: tuple[str, ...], route: str, body: bytes, content_type: str,
                 headers: dict[str, str] | None = None) -> None:
        self.what, self.route, self.body, self.content_type = what, route, body, content_type
        self.headers = headers or {}  # the credentials (a key is test data: shown on a failure, never logged)

    def __repr__(self) -> str:
        auth = f" with {', '.join(self.headers)}" if self.headers else ""
        return f"<POST {self.route} {self.content_type} ({len(self.body)} bytes){auth}: {'; '.join(self.what)}>"

    def send(self, client):
        """The app's answer to this case."""
        return client.post(self.route, data=self.body, content_type=self.content_type, headers=self.headers)


def answered_all_instruments(route: str, answer) -> bool:
    """Whether a 200 answer of `route` carries a decision for each of the 11 instruments."""
    if route.startswith("/RNA"):
        return len(answer[0]["model_prediction"]) == 11
    if route.startswith("/v2/compare"):
        return all(len(model["results"]) == 11 for model in answer["models"])
    if route.startswith("/v2/analyze"):
        return answer["n_windows"] > 0 and all(len(row) == 11 for row in answer["windows"]["decisions"])
    return len(answer["results"]) == 11


def check_answer(response, statuses: collections.Counter, case: Case) -> None:
    """200 with all 11 instruments, or a 4xx JSON error that names the problem; count the status."""
    statuses[response.status_code] += 1
    assert response.status_code < 500, (case, response.status_code, response.data[:300])
    assert response.mimetype == "application/json", (case, response.data[:300])
    answer = json.loads(response.data)
    if response.status_code >= 400:
        assert 400 <= response.status_code < 500, (case, response.status_code)
        assert any(p.search(answer["error"]) for p in KNOWN_ERRORS), (case, response.status_code, answer["error"])
    else:
        assert response.status_code == 200 and answered_all_instruments(case.route, answer), (case, answer)


def _report(capsys, what: str, statuses: collections.Counter) -> None:
    total, errors_5xx = sum(statuses.values()), sum(n for s, n in statuses.items() if s >= 500)
    with capsys.disabled():
        print(f"\nfuzz {what}: {total} cases, {errors_5xx} answered 5xx, statuses {dict(sorted(statuses.items()))}")


def fuzz_settings(examples: int) -> settings:
    """Hypothesis settings of one fuzz run: derandomized, so a run repeats exactly."""
    return settings(max_examples=examples, deadline=None, database=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def check_run(service: Service, statuses: collections.Counter, caplog) -> None:
    """Both outcomes reached, every case sent, no error logged; with keys, keyless cases were refused."""
    assert sum(statuses.values()) >= service.examples
    assert statuses[200] > 0 and sum(n for s, n in statuses.items() if 400 <= s < 500) > 0  # both paths were reached
    assert not service.keys or statuses[401] > 0
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.parametrize("name", ["wav_pcm16", "wav_float32", "flac", "ogg_vorbis", "ogg_opus", "mp3"])
def test_damaged_files_of_every_format_get_200_or_a_named_4xx(service, files, name, caplog, capsys):
    if name not in files:
        pytest.skip(f"this libsndfile cannot write {name}")
    caplog.set_level(logging.WARNING, logger="instrument_id.serving")
    statuses = collections.Counter()

    @fuzz_settings(service.examples)
    @given(case=file_case(name, files, service.keys))
    def one_request(case):
        check_answer(case.send(service.client), statuses, case)

    one_request()
    _report(capsys, name, statuses)
    check_run(service, statuses, caplog)


LIES = ("format", "sample_rate", "channels", "base64", "non-finite samples")


@st.composite
def json_case(draw, files: dict[str, bytes], keys: dict[str, str]) -> Case:
    """The sample data of a real WAV, cut anywhere, as base64 PCM that lies about none, one or two of LIES."""
    fmt = draw(st.sampled_from(["s16le", "f32le"]))
    pristine = files["wav_pcm16" if fmt == "s16le" else "wav_float32"]
    data = pristine[slice(*wav_data_span(pristine))]
    raw = bytearray(data[:draw(st.sampled_from([len(data), len(data) // 3]) | st.integers(0, len(data)))])
    lies = draw(st.lists(st.sampled_from(LIES), max_size=2, unique=True))
    if "non-finite samples" in lies and fmt == "f32le" and len(raw) >= 4:
        for i in draw(st.lists(st.integers(0, len(raw) // 4 - 1), min_size=1, max_size=4)):
            raw[4 * i:4 * i + 4] = struct.pack("<f", draw(st.sampled_from(NON_FINITE)))
    encoded = base64.b64encode(bytes(raw)).decode()
    if "base64" in lies and encoded:
        at = draw(st.integers(0, len(encoded) - 1))
        encoded = encoded[:at] + draw(st.sampled_from(["!", "=", " ", "\n", "-", "é"])) + encoded[at + 1:]
    payload = {
        "pcm_base64": encoded,
        "format": draw(st.sampled_from(["s16le", "f32le", "u8", "", "S16LE"])) if "format" in lies else fmt,
        "sample_rate": draw(st.sampled_from([0, -1, 999, 1000, 384_000, 384_001, 2**31, 2**63]) | st.integers())
        if "sample_rate" in lies else 22050,
        "channels": draw(st.sampled_from([1, 0, -1, 3, 64, 65, 2**16]) | st.integers(-4, 100)) if "channels" in lies else 2,
    }
    what = (f"{len(raw)} {fmt} bytes", *lies, *(f"{key}={payload[key]!r}" for key in ("format", "sample_rate", "channels")))
    return Case(what, draw(st.sampled_from(ROUTES)), json.dumps(payload).encode(), "application/json",
                draw(credentials(keys)))


def test_json_pcm_from_damaged_wav_data_gets_200_or_a_named_4xx(service, files, caplog, capsys):
    """The sample data of real WAVs as base64 PCM, with absurd rates, channel counts, formats and damaged base64."""
    caplog.set_level(logging.WARNING, logger="instrument_id.serving")
    statuses = collections.Counter()

    @fuzz_settings(service.examples)
    @given(case=json_case(files, service.keys))
    def one_request(case):
        check_answer(case.send(service.client), statuses, case)

    one_request()
    _report(capsys, "json pcm", statuses)
    check_run(service, statuses, caplog)
