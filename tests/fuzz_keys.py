"""Keys for the keyed variants of the fuzz suites: a key file with a client and an admin, limits too generous to be
reached (so every request is still counted, and charged its audio, by the real limiter), and a strategy of the
credentials a request may carry: mostly a valid key, sometimes none, an unknown one or junk in either header."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from serving.keys import add_key

MODES = ["open", "keys"]
# counted and charged on every request, never reached by a fuzz run
GENEROUS_LIMITS = {role: {"requests": "1000000/minute", "audio_seconds": "1000000000/minute"} for role in ("client", "admin")}
HEADER_TEXT = st.text(st.characters(min_codepoint=32, max_codepoint=255), max_size=40)
KEY_ERRORS = (r"this route needs an API key", r"unknown API key", r"the client role may not call")


def keyed_overrides(folder: Path, mode: str) -> tuple[dict[str, Any], dict[str, str]]:
    """(app_config overrides, {role: key}) for a mode: nothing in open mode; a key file in folder with one client
    and one admin key, and GENEROUS_LIMITS, with keys."""
    if mode == "open":
        return {}, {}
    path = folder / "keys.txt"
    keys = {"client": add_key(path, "client", "fuzzer"), "admin": add_key(path, "admin", "ops")}
    return {"api_keys": str(path), "rate_limits": GENEROUS_LIMITS}, keys


def credentials(keys: dict[str, str]) -> st.SearchStrategy[dict[str, str]]:
    """Headers presenting a key ({} in open mode): a valid client key (as Bearer or X-API-Key) three times in five,
    else the admin key, no key, an unknown key, or any text in Authorization or X-API-Key."""
    if not keys:
        return st.just({})

    @st.composite
    def one(draw) -> dict[str, str]:
        kind = draw(st.sampled_from(["client", "client", "client", "admin", "none", "unknown", "junk"]))
        if kind == "none":
            return {}
        if kind == "junk":
            return {draw(st.sampled_from(["Authorization", "X-API-Key"])): draw(HEADER_TEXT)}
        key = keys[kind] if kind in keys else "iid_" + draw(st.text("abcdefXYZ0123456789-_", min_size=1, max_size=43))
        if draw(st.booleans()):
            return {"Authorization": f"{draw(st.sampled_from(['Bearer', 'bearer', 'BEARER']))} {key}"}
        return {"X-API-Key": key}

    return one()


def valid_key_headers(keys: dict[str, str]) -> dict[str, str]:
    """The client key's header ({} in open mode), for the good requests a test sends after fuzzing."""
    return {"X-API-Key": keys["client"]} if keys else {}
