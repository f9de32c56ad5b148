"""Who may call what: every route's role in one table, checked before the request is computed.

With a key file (`serve --api-keys FILE`), a request names its key in `Authorization: Bearer KEY` or `X-API-Key:
KEY`; a missing or unknown key is a 401 with WWW-Authenticate, a key whose role is too low a 403. The key's client
name then stands for the client everywhere: its A/B arm, the owner of its predictions, its rate limits, the log.
Without a key file the service is open (bound to 127.0.0.1 unless --insecure-open): every request may do
everything, and the client is its X-Client-Id header (A/B stickiness) and its address (rate limits).
No key, nor any part of one, is ever logged or echoed.
"""

from __future__ import annotations

import math

from flask import Flask, current_app, g, request

from serving.errors import ApiError
from serving.keys import ROLE_RANK, KeyRing
from serving.rate_limits import RateLimiter

OPEN, CLIENT, ADMIN = "open", "client", "admin"
# endpoint -> the least role that may call it; an endpoint missing here needs an admin (a new route stays closed)
ENDPOINT_ROLES = {
    "ops.healthz": OPEN, "ops.readyz": OPEN, "web.index": OPEN, "static": OPEN, "openapi.openapi_json": OPEN,
    "compat.usage": OPEN,
    "v2.predict": CLIENT, "v2.compare": CLIENT, "v2.feedback": CLIENT, "analyze.analyze": CLIENT, "compat.predict": CLIENT,
    "v2.models": ADMIN, "v2.report": ADMIN, "ops.metrics": ADMIN,
}
MAX_CLIENT_ID_CHARS = 200
REALM = 'Bearer realm="instrument-id"'


def presented_key() -> str | None:
    """The key of `Authorization: Bearer KEY` or `X-API-Key: KEY`, or None."""
    authorization = request.headers.get("Authorization", "")
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.headers.get("X-API-Key", "").strip() or None


def endpoint_role(endpoint: str | None) -> str:
    """The least role an endpoint needs (None: no route matched, which answers 404 to anyone)."""
    if endpoint is None:
        return OPEN
    return ENDPOINT_ROLES.get(endpoint, ADMIN)


def authorize(keys: KeyRing | None) -> None:
    """Set g.role and g.client for this request, or raise the 401/403 it gets."""
    if keys is None:
        g.role = OPEN
        g.client = request.headers.get("X-Client-Id", "").strip()[:MAX_CLIENT_ID_CHARS] or None
        g.limit_identity = f"addr:{request.remote_addr}"
        return
    needed = endpoint_role(request.endpoint)
    key = presented_key()
    entry = keys.identify(key) if key else None
    g.role = entry.role if entry else "none"
    g.client = entry.name if entry else None
    g.limit_identity = f"key:{entry.name}" if entry else f"addr:{request.remote_addr}"
    if needed == OPEN:
        return
    if key is None:
        raise ApiError(401, "this route needs an API key: send 'Authorization: Bearer KEY' or 'X-API-Key: KEY'",
                       {"WWW-Authenticate": REALM})
    if entry is None:
        raise ApiError(401, "unknown API key", {"WWW-Authenticate": f'{REALM}, error="invalid_token"'})
    if ROLE_RANK[entry.role] < ROLE_RANK[needed]:
        raise ApiError(403, f"the {entry.role} role may not call {request.method} {request.path[:80]}; "
                             f"it needs an {needed} key")


def install_auth(app: Flask, keys: KeyRing | None, limiter: RateLimiter | None = None) -> None:
    """Check every request's key, then count it against its client's request budget (after the request timer,
    before any route runs; routes with no role, like /healthz, are not counted)."""

    @app.before_request
    def _authorize() -> None:
        authorize(keys)
        if limiter is not None and endpoint_role(request.endpoint) != OPEN:
            limiter.charge(g.role, "requests", g.limit_identity)


def charge_audio(seconds: float) -> None:
    """Count a decoded request's seconds of audio against its client's budget (429 when spent), before computing."""
    limiter = current_app.extensions["instrument_id"].limiter
    if limiter is not None and "role" in g:
        limiter.charge(g.role, "audio_seconds", g.limit_identity, math.ceil(seconds))
