"""The web page at /: plain HTML, CSS and JavaScript from serving/static/ (no build step, nothing from the network)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Blueprint, Response, current_app, request
from werkzeug.exceptions import NotFound

bp = Blueprint("web", __name__)
# the page loads only its own files and talks only to this server; a CDN or inline script would be refused
CONTENT_SECURITY_POLICY = "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'"


@bp.url_value_preprocessor
def _only_the_root(endpoint: str | None, values: dict[str, Any] | None) -> None:
    """404 for anything but '/' itself: with merge_slashes off, werkzeug matches '//x' to the '/' rule."""
    if request.path != "/":
        raise NotFound()


@bp.get("/", strict_slashes=False)  # strict, an empty path (the root of a mount point) would get a 308 redirect
def index():
    """The page: upload or record a clip, see every arm's answer, send feedback, see a long file's timeline."""
    html = (Path(current_app.static_folder) / "index.html").read_bytes()  # read whole: no file handle outlives the request
    return Response(html, mimetype="text/html", headers={
        "Cache-Control": "no-cache", "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    })
