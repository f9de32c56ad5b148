"""Property-based tests of the HTTP service: 1000 malformed or random requests, and schemathesis over the OpenAPI.

Every answer must be a well-formed JSON body with a 2xx or 4xx status, and the server must still answer a good
clip afterwards; the OpenAPI document must validate and the API must conform to it. The bad requests run in open
mode and with keys on (each request carrying a valid, missing, unknown or junk key: tests/fuzz_keys.py).
"""

from __future__ import annotations

import base64
import json
import logging
import struct
from urllib.parse import quote

import numpy as np
import pytest

pytest.importorskip("flask")
pytest.importorskip("ai_edge_litert.interpreter")
schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    ignored_auth,
    response_schema_conformance,
    status_code_conformance,
)

from fuzz_keys import MODES, credentials, keyed_overrides, valid_key_headers  # noqa: E402
from serving.app import create_app  # noqa: E402
from serving_fixture import app_config, encode, folders, music_clip, needs_training, pcm_json  # noqa: E402,F401 (fixtures)

pytestmark = needs_training
CONTENT_TYPES = [
    "audio/wav", "audio/flac", "audio/ogg", "audio/mpeg", "application/octet-stream", "application/json",
    "multipart/form-data", "multipart/form-data; boundary=xyz", "text/plain", "application/x-www-form-urlencoded",
    "", "audio/", "image/png",
]
PATHS = ["/v2/predict", "/v2/compare", "/v2/analyze", "/RNA", "/v2/feedback", "/v2/models", "/v2/ab/report", "/healthz",
         "/readyz", "/metrics", "/openapi.json", "/"]
METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]
PCM_KEYS = ["pcm_base64", "sample_rate", "channels", "format"]


class AudioFiles(list):
    """Encoded clips; a short repr keeps hypothesis' failure reports readable."""

    def __repr__(self) -> str:
        return f"<{len(self)} encoded audio files>"


@pytest.fixture(scope="module")
def real_files():
    clip = music_clip(1.2, rate_hz=22050, channels=2)
    return AudioFiles([encode(clip, 22050, "WAV", "PCM_16"), encode(clip, 22050, "FLAC", "PCM_16"),
            encode(clip, 22050, "OGG", "VORBIS"), encode(clip, 22050, "WAV", "FLOAT")])


def _huge_wav_header(frames: int, channels: int, rate_hz: int) -> bytes:
    """A WAV header declaring `frames` 16-bit frames, followed by only a few real bytes."""
    data_bytes = min(frames * channels * 2, 0xFFFFFFFF - 36)
    fmt = struct.pack("<HHIIHH", 1, channels, rate_hz, rate_hz * channels * 2, channels * 2, 16)
    return b"RIFF" + struct.pack("<I", 36 + data_bytes) + b"WAVEfmt " + struct.pack("<I", 16) + fmt + b"data" + struct.pack("<I", data_bytes) + b"\0" * 64


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


@st.composite
def bad_requests(draw, real_files, auth=st.just({})):
    """(method, path, headers, body) of a malformed or random request, with the credentials auth draws."""
    kind = draw(st.sampled_from(["random bytes", "truncated file", "json fields", "nan pcm", "huge sizes", "random route"]))
    path = draw(st.sampled_from(["/v2/predict", "/v2/compare", "/v2/analyze", "/RNA"]))
    query = draw(st.dictionaries(st.sampled_from(["model", "arm", "hop", "plot", "x"]), st.text(max_size=12), max_size=2))
    if query:
        path += "?" + "&".join(f"{quote(k)}={quote(v)}" for k, v in query.items())
    headers = {"Content-Type": draw(st.sampled_from(CONTENT_TYPES))}
    if draw(st.booleans()):
        headers["X-Client-Id"] = draw(st.text(st.characters(min_codepoint=32, max_codepoint=255), max_size=30))
    headers.update(draw(auth))
    method = "POST"
    if kind == "random bytes":
        body = draw(st.binary(max_size=2048))
    elif kind == "truncated file":
        data = draw(st.sampled_from(real_files))
        body = data[: draw(st.integers(0, len(data)))]
        headers["Content-Type"] = draw(st.sampled_from(["audio/wav", "audio/flac", "audio/ogg", "application/octet-stream"]))
    elif kind == "json fields":
        payload = draw(st.dictionaries(st.sampled_from(PCM_KEYS + ["audio", "rate"]), json_values, max_size=5) | json_values)
        body, headers["Content-Type"] = json.dumps(payload).encode(), "application/json"
    elif kind == "nan pcm":
        samples = np.array(draw(st.lists(st.floats(width=32), min_size=1, max_size=400)), dtype="<f4")
        payload = {"pcm_base64": base64.b64encode(samples.tobytes()).decode(), "sample_rate": draw(st.integers(-10, 200_000)),
                   "channels": draw(st.integers(-2, 4)), "format": draw(st.sampled_from(["f32le", "s16le", "u8"]))}
        body, headers["Content-Type"] = json.dumps(payload).encode(), "application/json"
    elif kind == "huge sizes":
        frames, channels = draw(st.integers(1, 2**40)), draw(st.integers(1, 8))
        body = _huge_wav_header(frames, channels, draw(st.integers(1, 400_000)))
        headers["Content-Type"] = "audio/wav"
    else:
        method = draw(st.sampled_from(METHODS))
        path = draw(st.sampled_from(PATHS) | st.text(max_size=30).map(lambda s: "/" + quote(s)))
        body = draw(st.binary(max_size=64))
    return method, path, headers, body


@pytest.mark.parametrize("mode", MODES)
def test_a_thousand_bad_requests_get_json_2xx_or_4xx_and_the_server_survives(folders, tmp_path, real_files, caplog, mode):
    caplog.set_level(logging.WARNING, logger="instrument_id.serving")
    overrides, keys = keyed_overrides(tmp_path, mode)
    app = create_app(app_config(folders, tmp_path / "log.sqlite", max_upload_bytes=1_000_000, max_analyze_bytes=2_000_000,
                                **overrides))
    client = app.test_client()
    statuses = []

    @settings(max_examples=1000, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(request=bad_requests(real_files, credentials(keys)))
    def one_request(request):
        method, path, headers, body = request
        response = client.open(path, method=method, headers=headers, data=body)
        statuses.append(response.status_code)
        assert 200 <= response.status_code < 300 or 400 <= response.status_code < 500, (request, response.data[:300])
        if method == "HEAD":
            return
        if path.startswith("/metrics") and response.status_code == 200 and method != "OPTIONS":  # OPTIONS: JSON Allow
            assert response.mimetype == "text/plain"
            return
        if path == "/" and method == "GET" and response.status_code == 200:  # the web page
            assert response.mimetype == "text/html"
            return
        assert response.mimetype == "application/json", (request, response.data[:300])
        answer = json.loads(response.data)
        if response.status_code >= 400:
            assert isinstance(answer, dict) and isinstance(answer["error"], str) and answer["error"], answer

    one_request()
    assert len(statuses) >= 1000
    assert sum(400 <= s < 500 for s in statuses) > 500  # mostly refused, as bad input should be
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]  # no unexpected exception was logged
    if keys:  # requests without a valid key were refused, and requests with one reached the routes
        assert 401 in statuses and statuses.count(200) > 10
    good = client.post("/v2/predict", data=real_files[0], content_type="audio/wav", headers=valid_key_headers(keys))
    assert good.status_code == 200 and len(good.get_json()["results"]) == 11


@pytest.fixture(scope="module", params=MODES)
def served_api(folders, tmp_path_factory, request):
    """(schemathesis' view of the app's own /openapi.json, {role: key}) in open mode and with keys on."""
    work = tmp_path_factory.mktemp(f"schemathesis_{request.param}")
    overrides, keys = keyed_overrides(work, request.param)
    app = create_app(app_config(folders, work / "log.sqlite", **overrides))
    return schemathesis.openapi.from_wsgi("/openapi.json", app), keys


def test_the_openapi_document_validates_and_covers_every_route(served_api):
    api_schema, keys = served_api
    try:
        from openapi_spec_validator import validate
    except ImportError:
        validate = None
    if validate is not None:
        validate(api_schema.raw_schema)
    api_schema.validate()  # against the OpenAPI 3.0 meta-schema (schemathesis' own validator)
    document = api_schema.raw_schema
    assert document["openapi"].startswith("3.")
    rules = {
        (rule.rule, method.lower())
        for rule in api_schema.app.url_map.iter_rules() if rule.endpoint != "static"
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    documented = {(path, method) for path, item in document["paths"].items() for method in item}
    assert documented == rules
    for path, item in document["paths"].items():
        for method, operation in item.items():
            assert "200" in operation["responses"], (path, method)
            for ref in json.dumps(operation).split('"$ref": "#/components/schemas/')[1:]:
                assert ref.split('"')[0] in document["components"]["schemas"]
    check_documented_access(api_schema.app.test_client(), document, keys)


def check_documented_access(client, document: dict, keys: dict[str, str]) -> None:
    """The document's security and 401/403/429 answers against what the server does: with keys, an operation
    documented as secured answers 401 without a key (anything else does not), one documenting a 403 answers it to a
    client key, and every secured one documents its 429 with Retry-After (clients and admins have budgets). In open
    mode nothing is secured and no role is limited by default."""
    schemes = document["components"].get("securitySchemes")
    if keys:
        assert schemes["bearer"]["type"] == "http" and schemes["bearer"]["scheme"] == "bearer"
        assert (schemes["apiKey"]["type"], schemes["apiKey"]["in"], schemes["apiKey"]["name"]) == ("apiKey", "header", "X-API-Key")
    else:
        assert schemes is None
    secured = 0
    for path, item in document["paths"].items():
        for method, operation in item.items():
            answers = operation["responses"]
            if not keys:
                assert "security" not in operation and not {"401", "403", "429"} & set(answers), (path, method)
                continue
            is_secured = operation.get("security") == [{"bearer": []}, {"apiKey": []}]
            secured += is_secured
            keyless = client.open(path, method=method.upper())
            assert (keyless.status_code == 401) == is_secured == ("401" in answers), (path, method, keyless.status_code)
            as_client = client.open(path, method=method.upper(), headers={"X-API-Key": keys["client"]})
            assert (as_client.status_code == 403) == ("403" in answers), (path, method, as_client.status_code)
            assert ("429" in answers) == is_secured and (not is_secured or "Retry-After" in answers["429"]["headers"])
            if is_secured:
                assert "WWW-Authenticate" in answers["401"]["headers"]
    assert not keys or secured == 8  # predict, compare, analyze, feedback, POST /RNA; models, report, metrics (admin)


def test_the_api_conforms_to_its_openapi_document(served_api):
    """Schemathesis cases (valid and invalid per the document) for every operation: no 5xx, documented statuses,
    content types and response bodies. With keys on, every case carries the admin key, and schemathesis' ignored_auth
    check sends it again without a key and with a wrong one, which must be refused; a client key on the admin
    operations is a documented 403. (schemathesis.pytest.from_fixture fails under pytest 9, whose nodes no longer
    have _nodeid, so the strategies run under plain hypothesis.)"""
    api_schema, keys = served_api
    checks = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
    if keys:
        checks.append(ignored_auth)
    auth = {"Authorization": f"Bearer {keys['admin']}"} if keys else {}
    operations = [result.ok() for result in api_schema.get_all_operations()]
    documented = {f"{method.upper()} {path}" for path, item in api_schema.raw_schema["paths"].items() for method in item}
    assert {operation.label for operation in operations} == documented - {"GET /openapi.json"}  # its own location
    calls = []
    for operation in operations:
        definition = api_schema.raw_schema["paths"][operation.path][operation.method.lower()]
        has_input = "parameters" in definition or "requestBody" in definition  # else there is nothing to make invalid
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE) if has_input else (GenerationMode.POSITIVE,):

            @settings(max_examples=20, deadline=None, database=None, suppress_health_check=list(HealthCheck))
            @given(case=operation.as_strategy(generation_mode=mode))
            def call(case):
                calls.append((case.operation.label, case.call_and_validate(headers=auth, checks=checks).status_code))

            call()
    assert {label for label, _ in calls} == {operation.label for operation in operations}
    # generated bodies are almost never audio, so the 200 answers of the audio routes are checked on real clips too
    pcm = pcm_json(music_clip(2.5, rate_hz=22050), 22050, "s16le")
    by_label = {operation.label: operation for operation in operations}
    for label, query in (("POST /v2/predict", {"model": "rf"}), ("POST /v2/predict", {}), ("POST /v2/compare", None),
                         ("POST /RNA", None), ("POST /v2/analyze", {"model": "mlp", "hop": "0.5", "plot": "true"})):
        case = by_label[label].Case(body=pcm, media_type="application/json", query=query)
        assert case.call_and_validate(headers=auth, checks=checks).status_code == 200, label
    for operation in operations if keys else ():  # a client key where an admin one is needed: the documented 403
        definition = api_schema.raw_schema["paths"][operation.path][operation.method.lower()]
        if "403" in definition["responses"]:
            case = operation.Case()
            answer = case.call_and_validate(headers={"X-API-Key": keys["client"]}, checks=checks)
            assert answer.status_code == 403, operation.label
    assert all(status < 500 for _, status in calls)
