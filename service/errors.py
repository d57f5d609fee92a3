"""The one handler of every error: each renders as ``{"error": {code, message, details}}`` with its status.

The error types live in ``bandits.errors`` (each with its ``status`` and ``code``), so every layer
raises them and none translates them by hand.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, current_app, jsonify, request
from werkzeug.exceptions import HTTPException

from bandits.errors import (  # noqa: F401  (re-exported: the service raises them as errors.X)
    Conflict,
    Forbidden,
    Invalid,
    InvalidImage,
    MarqueeError,
    NotFound,
    Rejected,
    TooManyRequests,
    Unauthorized,
    Unavailable,
    UnsupportedMedia,
)


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    """Return the one JSON error shape."""
    return {"error": {"code": code, "message": message, "details": details}}


def render(exc: MarqueeError) -> Response:
    """Return the JSON response of one of our errors (a 5xx is logged: it is ours to look into)."""
    if exc.status >= 500:
        current_app.logger.error("%s %s: %s", exc.status, exc.code, exc.message)
    response = jsonify(error_body(exc.code, exc.message, exc.details))
    response.status_code = exc.status
    if exc.status == 503:
        response.headers["Retry-After"] = "1"
    if isinstance(exc, TooManyRequests):
        response.headers["Retry-After"] = str(exc.retry_after)
    if isinstance(exc, Unauthorized) and exc.challenge:
        response.headers["WWW-Authenticate"] = exc.challenge
    return response


def register(app: Flask) -> None:
    """Render every error, ours and werkzeug's, as JSON with the right status."""
    app.register_error_handler(MarqueeError, render)

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> Response:
        code = (exc.name or "error").lower().replace(" ", "_")
        message = exc.description or exc.name or "error"
        if exc.code == 413:
            limit = request.max_content_length or 0
            size = f" ({limit / 2**20:g} MiB)" if limit >= 2**20 else ""
            message = (
                f"request body is larger than the limit of {limit} bytes{size} (MARQUEE_MAX_CONTENT_LENGTH); "
                "an artwork image may be at most 10 MiB"
            )
        if exc.code == 405:
            allowed = sorted(set(exc.valid_methods or []) - {"HEAD", "OPTIONS"})  # type: ignore[attr-defined]
            message = f"{request.method} is not served at {request.path}; use {' or '.join(allowed)}"
        if exc.code in (404, 405) and request.path.startswith("/personalizer/"):
            code = "ResourceNotFound" if exc.code == 404 else "OperationNotAllowed"
            message = (
                f"{request.method} {request.path} is not an operation of Personalizer's API as Marquee serves it: "
                "/personalizer/{operation}?api-version=2022-09-01-preview, /personalizer/v1.0/{operation} and "
                "/personalizer/v1.1-preview.1/{operation} (docs/personalizer.md lists every operation)"
            )
        response = jsonify(error_body(code, message))
        response.status_code = exc.code or 500
        if exc.code == 405:
            response.headers["Allow"] = ", ".join(exc.valid_methods or [])  # type: ignore[attr-defined]
        return response
