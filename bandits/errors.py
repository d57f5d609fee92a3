"""Every error a client can cause, each with the HTTP ``status`` and ``code`` it is answered with.

A leaf: it imports nothing of Marquee's, so every layer raises these and ``service.errors`` renders
them all through one handler, ``{"error": {code, message, details}}`` with ``status``. A domain
error (a bad evaluation spec, a refused import, ...) subclasses the one whose status it is.
"""

from __future__ import annotations

from typing import Any


class MarqueeError(Exception):
    """Base of every error a client can cause."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str | None = None, *, details: Any = None) -> None:
        text = message or (self.__doc__ or self.code).strip()
        super().__init__(text)
        self.message = text
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


class SpecError(Invalid, ValueError):
    """An evaluation request is malformed; the message starts with the offending field."""


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


class StorageUnavailable(Unavailable):
    """The store cannot take the request now; ``reason`` says why, ``cause`` is the engine's own words (for logs)."""

    reason = "the database is unavailable"

    def __init__(self, cause: str) -> None:
        super().__init__(f"{self.reason}; retry shortly", details=None)
        self.cause = cause

    def __str__(self) -> str:
        return f"{self.reason} ({self.cause})"


class StorageBusy(StorageUnavailable):
    """The database stayed locked by other writers for longer than the busy timeout."""

    reason = "the database is busy"


class StorageUnreachable(StorageUnavailable):
    """The database server could not be reached (or had no free connection) in time; nothing was changed."""

    reason = "the database cannot be reached right now; nothing was changed"


class Rejected(MarqueeError):
    """A request that cannot be carried out; ``status`` (404, 409 or 422) says why, as its class would."""

    CODES = {NotFound.status: NotFound.code, Conflict.status: Conflict.code, Invalid.status: Invalid.code}

    def __init__(self, message: str, *, status: int = 422, details: Any = None) -> None:
        if status not in self.CODES:
            raise ValueError(f"status: one of {sorted(self.CODES)}, got {status!r}")
        super().__init__(message, details=details)
        self.status = status
        self.code = self.CODES[status]
