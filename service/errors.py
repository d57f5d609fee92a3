"""Error types with an HTTP status; every error body has the shape ``{"error": {code, message, details}}``."""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException


class MarqueeError(Exception):
    """Base of every error a client can cause."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str | None = None, *, details: Any = None) -> None:
        super().__init__(message or (self.__doc__ or self.code).strip())
        self.message = message or (self.__doc__ or self.code).strip()
        self.details = details


class NotFound(MarqueeError):
    """The resource does not exist."""

    status = 404
    code = "not_found"


class Conflict(MarqueeError):
    """The request conflicts with what is stored."""

    status = 409
    code = "conflict"


class Invalid(MarqueeError):
    """The request is malformed or a value is out of range."""

    status = 422
    code = "invalid"


class UnsupportedMedia(MarqueeError):
    """The request body has the wrong content type."""

    status = 415
    code = "unsupported_media_type"


class InvalidImage(Invalid):
    """The upload is not an image Marquee accepts."""

    code = "invalid_image"


class Unauthorized(MarqueeError):
    """The request needs an API key (X-API-Key) that Marquee knows."""

    status = 401
    code = "unauthorized"
    challenge = ""  # the WWW-Authenticate header of the answer


class Forbidden(MarqueeError):
    """The API key is known but may not do this."""

    status = 403
    code = "forbidden"


class TooManyRequests(MarqueeError):
    """This key sent more requests than its rate limit allows; retry after the given seconds."""

    status = 429
    code = "rate_limited"
    retry_after = 1


class Unavailable(MarqueeError):
    """The service cannot serve this request right now; try again."""

    status = 503
    code = "unavailable"


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    """Return the one JSON error shape."""
    return {"error": {"code": code, "message": message, "details": details}}


def render(exc: MarqueeError) -> Response:
    """Return the JSON response of one of our errors."""
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
