"""The Idempotency-Key request header (IETF draft-ietf-httpapi-idempotency-key-header) of the prediction routes.

A client names one logical prediction with a key and sends the same key again when it retries. Without one, a
worker killed between committing a prediction's row and sending its answer leaves a row the client never saw,
and the retry logs a second one.

With a key, the prediction id is derived from the key and the model (sha256), not drawn at random, and the log
stores the key under a unique (idempotency_key, model) index with an insert-or-ignore: every attempt of one logical
request computes the same id and only the first row is kept. So a retry answers the id that was logged, whichever
attempt's row it was, even when the row waited in memory for a log that was down, or two attempts ran at once on
two replicas. The prediction itself is recomputed (the models are deterministic); a client without X-Client-Id is
routed by its key, so a retry lands on the same A/B arm.

Each keyed row also stores its request's fingerprint (route, the model and arm asked for, the decoded audio): a key
sent again with a different request is answered 422, as the draft asks, whenever the earlier row can be read.
A key is scoped to its client (the key's client name with API keys on, else X-Client-Id): the log stores and hashes
"CLIENT\\KEY", so another client sending the same key and bytes gets a prediction of its own, never the first
client's id, and cannot learn by a 422 which keys others used. A request with no client (open mode without
X-Client-Id) keeps the bare key, shared by every such request: send a fresh UUID per prediction.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from werkzeug.datastructures import Headers

from serving.decode import DecodedClip
from serving.errors import ApiError

if TYPE_CHECKING:
    from serving.app import ServingState

HEADER = "Idempotency-Key"
MAX_KEY_CHARS = 255
KEY_CHAR = r"[!#-+\--\[\]-~]"  # visible ASCII but '"' and '\' (no quoting or escapes) and ',' (no lists)
KEY_PATTERN = re.compile(KEY_CHAR + "+")
ALLOWED = "visible ASCII characters ('!' to '~') other than '\"', '\\' and ',', e.g. a UUID"
SCOPE_SEPARATOR = "\\"  # never in a key, so the last one parts client from key, and no scoped key is a bare one


def _digest(*parts: str) -> str:
    """32 hex digits, the length of a uuid4().hex prediction id."""
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:32]


def idempotency_key(headers: Headers) -> str | None:
    """The request's key (None without the header); a malformed one is a 400 that says what is wrong. The draft's
    Structured Field form, "key" in double quotes, and a bare key are both accepted."""
    values = headers.getlist(HEADER)
    if not values:
        return None
    key = ",".join(values).strip()
    if "," in key:  # several headers of one name reach the app as one comma-separated value
        raise ApiError(400, f"send one {HEADER} header holding one key; this one is a list ({key[:60]!r})")
    if len(key) >= 2 and key[0] == key[-1] == '"':
        key = key[1:-1]
    if not key:
        raise ApiError(400, f"the {HEADER} header is empty; send a fresh key per prediction, e.g. a UUID")
    if len(key) > MAX_KEY_CHARS:
        raise ApiError(400, f"the {HEADER} header is {len(key)} characters long; at most {MAX_KEY_CHARS} are allowed")
    if not KEY_PATTERN.fullmatch(key):
        at = next(i for i, char in enumerate(key) if not KEY_PATTERN.fullmatch(char))
        raise ApiError(400, f"the {HEADER} header holds {key[at]!r} (U+{ord(key[at]):04X}) at character {at + 1}; "
                            f"a key may hold only {ALLOWED}")
    return key


def request_fingerprint(route: str, asked: tuple[str | None, ...], clip: DecodedClip) -> str:
    """sha256 of the route, the model and arm asked for, and the decoded audio (so the same clip sent as WAV or as
    FLAC is the same request)."""
    digest = hashlib.sha256("\0".join([route, *(name or "" for name in asked), str(clip.source_rate_hz)]).encode())
    digest.update(clip.mono.tobytes())  # (samples,) float32
    return digest.hexdigest()


@dataclass(frozen=True)
class KeyedRequest:
    """A request sent with an Idempotency-Key: its key and fingerprint, and the ids every attempt of it shares."""

    key: str
    fingerprint: str

    def prediction_id(self, model_name: str) -> str:
        """The id of this request's prediction by one model (the same in every attempt)."""
        return _digest("prediction", self.key, model_name)

    def compare_group(self) -> str:
        """The compare group of this /v2/compare request (the same in every attempt)."""
        return _digest("compare_group", self.key)


def scoped_key(key: str, client: str | None) -> str:
    """The key as the log stores and hashes it: "CLIENT\\KEY", or the bare key for a request with no client."""
    return key if client is None else f"{client}{SCOPE_SEPARATOR}{key}"


def keyed_request(current: "ServingState", key: str | None, client: str | None, route: str,
                  asked: tuple[str | None, ...], clip: DecodedClip) -> KeyedRequest | None:
    """None without a key; else the KeyedRequest of this client's key, or a 422 when the client logged the key for a
    different request. A key logged for this same request (a retry after a lost answer) is counted as a replay."""
    if key is None:
        return None
    keyed = KeyedRequest(scoped_key(key, client), request_fingerprint(route, asked, clip))
    logged = current.store.logged_fingerprints(keyed.key)
    if logged - {keyed.fingerprint}:
        raise ApiError(422, f"the {HEADER} {key[:60]!r} was already used for a different request (another clip, "
                            "route, model or arm); send a fresh key per prediction")
    if logged:
        current.metrics.replayed.labels(route).inc()
    return keyed
