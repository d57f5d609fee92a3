"""The security list: hostile text in every text field, traversal in ids, duplicate keys: a 4xx or stored verbatim."""

from __future__ import annotations

import io
from typing import Any

import pytest

from tests.helpers import image_bytes, table_counts

HOSTILE = [
    "'; DROP TABLE events; --",
    '" OR 1=1 --',
    "../../../etc/passwd",
    "..\\..\\boot.ini",
    "nul\x00byte",
    "\u202eevil\u202c",
    "👨‍👩‍👧 family",
    "Ａｄｍｉｎ",
    "\ufeffbom",
    "x" * 10_000,
    "<script>alert(1)</script>",
    "%00%2e%2e%2f",
    "line\r\nbreak",
    "${jndi:ldap://127.0.0.1/a}",
    "e\u0301",
    "",
]


def set_at(body: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    """Return a copy of ``body`` with ``value`` at ``path`` (keys and list indices)."""
    import copy

    out = copy.deepcopy(body)
    node = out
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value
    return out


TITLE = {"id": "tx", "name": "Heist", "genres": ["crime"], "maturity": "PG", "features": {"mood": "dark"}}
RANK = {
    "user": {"id": "u1", "features": {"mood": "dark", "history": ["a"]}},
    "slots": 1,
    "candidates": ["t00", "t01"],
    "exclude": ["t02"],
    "event_id": "e-client-1",
}
CASES = (
    [
        ("POST", "/v1/titles", TITLE, path)
        for path in [("id",), ("name",), ("genres", 0), ("maturity",), ("features", "mood"), ("features", "\u0000k")]
    ]
    + [
        ("POST", "/v1/rank", RANK, path)
        for path in [
            ("user", "id"),
            ("user", "features", "mood"),
            ("user", "features", "history", 0),
            ("candidates", 0),
            ("exclude", 0),
            ("event_id",),
        ]
    ]
    + [
        ("PUT", "/v1/policies/artwork", {"aggregation": "sum"}, ("aggregation",)),
        ("PUT", "/v1/policies/artwork", {"vw_args": "-q UA"}, ("vw_args",)),
        ("POST", "/v1/evaluations", {"policy": "artwork", "segment_by": "mood"}, ("segment_by",)),
        ("POST", "/v1/evaluations", {"policy": "artwork"}, ("policy",)),
    ]
)


@pytest.mark.parametrize(("method", "path", "body", "field"), CASES, ids=lambda v: str(v)[:40])
def test_hostile_text_is_refused_or_kept_verbatim(client, db, catalog, method, path, body, field):
    for hostile in HOSTILE:
        if field == ("features", "\u0000k"):  # the hostile text as a feature name
            sent = set_at(body, ("features",), {hostile: "x"})
        else:
            sent = set_at(body, field, hostile)
        before = table_counts(db)
        response = client.open(path, method=method, json=sent)
        assert response.status_code < 500, (field, hostile[:30], response.get_json())
        if response.status_code >= 400:
            assert response.get_json()["error"]["message"]
            if method != "POST" or path != "/v1/evaluations":
                assert table_counts(db) == before, (field, hostile[:30])  # a refused request stores nothing
        elif path == "/v1/titles":  # stored: it reads back exactly as sent
            stored = client.get(f"/v1/titles/{response.get_json()['id']}").get_json()
            for key in ("name", "genres", "maturity", "features"):
                assert stored[key] == response.get_json()[key] == sent[key], (key, hostile[:30])
            client.delete(f"/v1/titles/{response.get_json()['id']}")
            db.execute("DELETE FROM titles WHERE id = ?", [response.get_json()["id"]])
    if db.dialect == "sqlite":
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert {"events", "titles", "impressions"} <= set(db.table_names())


@pytest.mark.parametrize(
    "url",
    [
        "/v1/titles/..%2F..%2Fetc%2Fpasswd",
        "/v1/titles/%2e%2e",
        "/v1/artworks/..%2Fmarquee.sqlite3/image",
        "/v1/artworks/t00-dark-warm%00.jpg/image",
        "/v1/events/e%27%20OR%201%3D1",
        "/v1/titles/t00/../../healthz",
    ],
)
def test_traversal_in_ids_finds_nothing(client, catalog, url):
    response = client.get(url)
    assert response.status_code in (404, 422) or (response.status_code == 200 and url.endswith("healthz"))
    assert b"SQLite format" not in response.data and b"root:" not in response.data


def test_traversal_in_upload_names_stays_in_the_artwork_folder(client, app, catalog):
    from pathlib import Path

    response = client.post(
        "/v1/titles/t00/artworks",
        content_type="multipart/form-data",
        data={"file": (io.BytesIO(image_bytes()), "../../../../tmp/evil.png")},
    )
    assert response.status_code == 201
    stored = Path(app.config["DATA_DIR"]) / "artworks"
    assert any(p.name.startswith(response.get_json()["id"]) for p in stored.iterdir())
    assert not (Path("/tmp") / "evil.png").exists()
    refused = client.post(
        "/v1/titles/t00/artworks",
        content_type="multipart/form-data",
        data={"file": (io.BytesIO(image_bytes()), "x.png"), "id": "../escape"},
    )
    assert refused.status_code == 422


@pytest.mark.parametrize(
    ("path", "raw"),
    [
        ("/v1/rank", b'{"slots": 1, "slots": 50}'),
        ("/v1/titles", b'{"name": "a", "genres": [], "name": "b"}'),
        ("/v1/rank", b'{"user": {"id": "a", "id": "b"}}'),
    ],
)
def test_duplicate_keys_are_refused(client, db, catalog, path, raw):
    before = table_counts(db)
    response = client.post(path, data=raw, content_type="application/json")
    assert response.status_code == 422 and "twice in one object" in response.get_json()["error"]["message"]
    assert table_counts(db) == before


def test_error_messages_say_where_and_what_instead(tmp_path):
    from service import create_app

    app = create_app({"DATA_DIR": str(tmp_path), "LEARNER": False, "AUTH": "keys", "API_KEYS": "mq_client_example"})
    keyed = app.test_client()
    bearer = keyed.post("/v1/rank", headers={"Authorization": "Bearer abc"}, json={"slots": 1})
    assert bearer.status_code == 401
    assert bearer.get_json()["error"]["message"].startswith("Authorization: Bearer is not a way to send a Marquee key")
    client = create_app({"DATA_DIR": str(tmp_path / "open"), "LEARNER": False, "AUTH": "off"}).test_client()
    broken = client.post("/v1/rank", data='{"slots": 3,', content_type="application/json")
    assert broken.status_code == 422 and broken.get_json()["error"]["message"] == (
        "the request body is not valid JSON: Expecting property name enclosed in double quotes at line 1, column 13 "
        "(character 12)"
    )
    typo = client.post("/v1/rank", json={"slot": 3}).get_json()["error"]["message"]
    assert typo.startswith("slot: not a field (did you mean 'slots'?); the fields are user, slots, candidates")
    wrong_method = client.get("/v1/rank")
    assert wrong_method.status_code == 405 and wrong_method.get_json()["error"]["message"] == (
        "GET is not served at /v1/rank; use POST"
    )
    assert wrong_method.headers["Allow"]
