"""API keys: who may call what.

Two roles. A **client** key ranks, rewards, activates and reads events and the catalog: what a
product's backend needs. An **admin** key may do everything (catalog writes, policy settings, model
import and reset, evaluations, datasets, log export, the pages). Images, ``/healthz`` and
``/openapi.json`` need no key: artwork URLs go into pages that browsers load.

Keys arrive in ``X-API-Key``; the pages also take HTTP Basic authentication with an admin key as the
password, so a browser can open them. Keys come from ``MARQUEE_API_KEYS`` and ``MARQUEE_ADMIN_KEYS``
(comma-separated) and from the ``api_keys`` table (``flask keys create``). Only SHA-256 digests are
kept: the table never holds a key, and the configured ones are hashed when the app starts. A
presented key is hashed once; its digest is compared in constant time with each configured digest
and looked up in the table by its unique index, so a request costs the same with ten stored keys or
ten thousand. The lookup's time may depend on the digest, which tells nothing of any key: finding a
key from SHA-256 digests close to its own is no easier than from none.

``MARQUEE_AUTH=off`` turns the checks off; nothing else does.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from collections.abc import Mapping
from typing import Any

from flask import Flask, current_app, request

from bandits.storage import Database, write_transaction
from service.db import get_db
from service.errors import Conflict, Forbidden, Invalid, NotFound, TooManyRequests, Unauthorized
from service.ratelimit import Limiter, retry_after

CLIENT = "client"
ADMIN = "admin"
ROLES = (CLIENT, ADMIN)
HEADER = "X-API-Key"
PERSONALIZER_HEADER = "Ocp-Apim-Subscription-Key"  # what Azure Personalizer's clients send their key in
PREFIX = {CLIENT: "mq_client_", ADMIN: "mq_admin_"}
PUBLIC_ENDPOINTS = {"static", "ops.healthz", "ops.openapi_document", "catalog.artwork_image"}
# The Personalizer-compatible API is served under v1.0, under the v1.1-preview.1 path its multi-slot
# clients call, and under /personalizer with an api-version (service.views.personalizer); its rank,
# reward and activate calls are a client's, its administration an admin's.
PERSONALIZER_BLUEPRINTS = ("personalizer", "personalizer_preview", "personalizer_rest")
CLIENT_ENDPOINTS = {
    "decisions.rank",
    "decisions.reward",
    "decisions.activate_event",
    "decisions.show_event",
    "catalog.list_titles",
    "catalog.get_title",
    "catalog.list_artworks",
    *(
        f"{blueprint}.{view}"
        for blueprint in PERSONALIZER_BLUEPRINTS
        for view in ("rank", "reward", "activate_event", "multislot_rank", "multislot_reward", "multislot_activate")
    ),
}
PAGE_ENDPOINTS = {
    "live.live_page",
    "reports.evaluations_page",
    "reports.evaluation_page",
    "ops.prometheus_metrics",
    "dashboard.dashboard_page",
    "reports.optimizations_page",
}
# JSON the pages link to: a browser that opened a page with HTTP Basic opens these with it too (GET only).
LINKED_ENDPOINTS = {"evaluations.show_evaluation", "policies.apprentice_report", "optimizations.show_optimization"}


def _basic_allowed() -> bool:
    return request.endpoint in PAGE_ENDPOINTS or (request.endpoint in LINKED_ENDPOINTS and request.method == "GET")


def digest(key: str) -> str:
    """Return the SHA-256 hex digest of a key (keys are long random tokens: a fast hash is the right one)."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def configured_digests(config: Mapping[str, Any]) -> dict[str, str]:
    """Return digest -> role of the keys in ``API_KEYS`` and ``ADMIN_KEYS`` (comma-separated)."""
    found: dict[str, str] = {}
    for setting, role in (("API_KEYS", CLIENT), ("ADMIN_KEYS", ADMIN)):
        for key in str(config.get(setting) or "").split(","):
            if key.strip():
                found[digest(key.strip())] = role
    return found


def any_stored(db: Database) -> bool:
    """Return whether the table holds a key that is not revoked."""
    return db.execute("SELECT 1 FROM api_keys WHERE revoked_at IS NULL LIMIT 1").fetchone() is not None


def stored_role(db: Database, presented: str) -> str | None:
    """Return the role of the stored, unrevoked key whose digest is ``presented`` (None: no such key)."""
    row = db.execute("SELECT role FROM api_keys WHERE hash = ? AND revoked_at IS NULL", [presented]).fetchone()
    return None if row is None else str(row[0])


def role_of(presented: str, known: Mapping[str, str]) -> str | None:
    """Return the role of the key whose digest is ``presented`` among ``known``, comparing each in constant time."""
    role = None
    for candidate, candidate_role in known.items():
        if hmac.compare_digest(presented, candidate):
            role = candidate_role
    return role


def create_key(db: Database, *, name: str, role: str) -> str:
    """Make a new key, store its digest under ``name`` and return the key (shown this once).

    Raises:
        Invalid: unknown role or a bad name.
        Conflict: a key of that name exists.
    """
    if role not in ROLES:
        raise Invalid(f"role: must be one of {', '.join(ROLES)}")
    if not 0 < len(name) <= 64 or not name.replace("-", "").replace("_", "").isalnum():
        raise Invalid("name: 1 to 64 letters, digits, '-' or '_'")
    key = PREFIX[role] + secrets.token_urlsafe(32)
    with write_transaction(db):
        if db.execute("SELECT 1 FROM api_keys WHERE name = ?", [name]).fetchone():
            raise Conflict(f"name: a key named {name!r} exists; revoke it or choose another name")
        db.execute(
            "INSERT INTO api_keys (name, role, hash, created_at) VALUES (?, ?, ?, ?)",
            [name, role, digest(key), time.time()],
        )
    return key


def revoke_key(db: Database, name: str) -> None:
    """Revoke the key named ``name``; requests with it are refused from then on.

    Raises:
        NotFound: no key has that name.
    """
    with write_transaction(db):
        if not db.execute(
            "UPDATE api_keys SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL", [time.time(), name]
        ).rowcount:
            if not db.execute("SELECT 1 FROM api_keys WHERE name = ?", [name]).fetchone():
                raise NotFound(f"no key is named {name!r}")


def list_keys(db: Database) -> list[dict[str, Any]]:
    """Return the stored keys' names, roles and times (never a key or its digest)."""
    return [
        {"name": row[0], "role": row[1], "created_at": row[2], "revoked_at": row[3]}
        for row in db.execute("SELECT name, role, created_at, revoked_at FROM api_keys ORDER BY created_at")
    ]


def _presented_key() -> str | None:
    key = request.headers.get(HEADER) or request.headers.get(PERSONALIZER_HEADER)
    if key:
        return key
    header = request.headers.get("Authorization", "")
    if _basic_allowed() and header.startswith("Basic "):
        try:
            _, _, password = base64.b64decode(header[6:], validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return password or None
    return None


def check_request() -> None:
    """Refuse a request whose endpoint needs a key it does not carry (401) or a stronger one (403)."""
    config = current_app.config
    endpoint = request.endpoint
    if config["AUTH"] == "off" or endpoint is None or endpoint in PUBLIC_ENDPOINTS:
        return
    needed = CLIENT if endpoint in CLIENT_ENDPOINTS else ADMIN
    key = _presented_key()
    if not key:
        scheme = request.headers.get("Authorization", "").partition(" ")[0]
        if scheme and scheme != "Basic" or scheme == "Basic" and not _basic_allowed():
            raise _unauthorized(
                f"Authorization: {scheme} is not a way to send a Marquee key; send the key in "
                f"{HEADER} (or {PERSONALIZER_HEADER}); HTTP Basic is for the pages only"
            )
        raise _unauthorized(
            f"{HEADER}: missing; this needs {'a client or an admin' if needed == CLIENT else 'an admin'} "
            "key (flask keys create)"
        )
    presented = digest(key)  # once: the role lookup and the rate limit both use it
    role = stored_role(get_db(), presented) or role_of(presented, current_app.extensions["marquee_key_digests"])
    if role is None:
        raise _unauthorized(f"{HEADER}: not a key this service knows (or it was revoked)")
    if needed == ADMIN and role != ADMIN:
        raise Forbidden(f"{HEADER}: a client key may rank, reward and read the catalog; this needs an admin key")
    limiter = current_app.extensions.get("marquee_limiter")
    if limiter is not None:
        wait = limiter.take(presented)
        if wait > 0:
            error = TooManyRequests(
                f"{HEADER}: this key is over its limit of {limiter.rate:g} requests a second "
                f"(bursts of {limiter.burst:g}) on this serving process; retry in {wait:.2f} s"
            )
            error.retry_after = retry_after(wait)
            raise error


def _unauthorized(message: str) -> Unauthorized:
    error = Unauthorized(message)
    # Pages ask the browser for Basic credentials (an admin key as the password); the API names its header.
    error.challenge = (
        'Basic realm="Marquee", charset="UTF-8"'
        if request.endpoint in PAGE_ENDPOINTS
        else f'ApiKey realm="Marquee", header="{HEADER}"'
    )
    return error


def register(app: Flask) -> None:
    """Hash the configured keys once (the app keeps no plain key) and check every request."""
    app.extensions["marquee_key_digests"] = configured_digests(app.config)
    app.config["API_KEYS"] = app.config["ADMIN_KEYS"] = ""
    rate = float(app.config["RATE_LIMIT"])
    if rate > 0:
        app.extensions["marquee_limiter"] = Limiter(rate, float(app.config["RATE_BURST"]) or max(1.0, 2 * rate))
    app.before_request(check_request)


def first_keys(app: Flask, db: Database) -> dict[str, str]:
    """Create a client and an admin key if checks are on and no key exists at all; return them (else {})."""
    if app.config["AUTH"] == "off" or app.extensions["marquee_key_digests"] or any_stored(db):
        return {}
    return {role: create_key(db, name=f"first-{role}", role=role) for role in ROLES}
