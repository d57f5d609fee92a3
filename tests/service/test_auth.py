"""API keys: client keys decide and read, admin keys do everything, nobody else does anything but look at images."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from bandits.storage import connect
from service import auth, create_app, openapi
from service import config as settings
from tests.helpers import ROOT, add_catalog, sqlite_steps, table_counts

CLIENT, ADMIN = "client-key-0123456789", "admin-key-0123456789"


@pytest.fixture
def app(tmp_path: Path):
    app = create_app(
        {
            "DATA_DIR": str(tmp_path / "data"),
            "LEARNER": False,
            "AUTH": "keys",
            "API_KEYS": f"other-client, {CLIENT}",
            "ADMIN_KEYS": ADMIN,
        }
    )
    client = app.test_client()
    client.environ_base["HTTP_X_API_KEY"] = ADMIN
    add_catalog(client, titles=3)
    return app


def as_key(app, key: str | None):
    client = app.test_client()
    if key is not None:
        client.environ_base["HTTP_X_API_KEY"] = key
    return client


def test_without_a_key_only_images_health_and_the_document(app):
    anonymous = as_key(app, None)
    assert anonymous.get("/healthz").status_code == 200
    assert anonymous.get("/openapi.json").status_code == 200
    assert anonymous.get("/v1/artworks/t00-dark-warm/image?w=92").status_code == 200
    response = anonymous.post("/v1/rank", json={"slots": 2})
    assert response.status_code == 401 and response.headers["WWW-Authenticate"].startswith("ApiKey")
    assert response.get_json()["error"]["message"].startswith("X-API-Key: missing")
    wrong = as_key(app, "guess").post("/v1/rank", json={"slots": 2})
    assert wrong.status_code == 401 and "not a key this service knows" in wrong.get_json()["error"]["message"]


def _path(path: str) -> str:
    return path.format(
        event_id="e-x",
        title_id="t00",
        artwork_id="t00-dark-warm",
        name="artwork",
        run_id="ev-x",
        dataset_id="ds-x",
        optimization_id="op-x",
        evaluation_id="pz-x",
        importance_id="fi-x",
    )


def test_a_client_key_decides_and_reads_and_is_refused_everything_else(app):
    client = as_key(app, CLIENT)
    body = client.post("/v1/rank", json={"slots": 2}).get_json()
    assert (
        client.post(
            f"/v1/events/{body['event_id']}/reward", json={"title_id": body["slots"][0]["title_id"], "value": 1}
        ).status_code
        == 201
    )
    assert client.get(f"/v1/events/{body['event_id']}").status_code == 200
    assert client.get("/v1/titles").status_code == client.get("/v1/titles/t00/artworks").status_code == 200
    db = connect(app.config["DATABASE"])
    before = table_counts(db)
    refused = 0
    for method, path, endpoint in openapi.routes(app):
        if endpoint in auth.PUBLIC_ENDPOINTS or endpoint in auth.CLIENT_ENDPOINTS:
            continue
        response = client.open(_path(path), method=method, json={} if method in ("POST", "PUT") else None)
        assert response.status_code == 403, (method, path, response.status_code)
        assert "needs an admin key" in response.get_json()["error"]["message"]
        refused += 1
    assert refused >= 25
    assert table_counts(db) == before  # nothing a refused request asked for happened
    document = client.get("/openapi.json").get_json()  # the document says which role each operation needs
    roles = {
        (m.upper(), p): op.get("x-marquee-role") for p, item in document["paths"].items() for m, op in item.items()
    }
    assert roles["POST", "/v1/rank"] == "client" and roles["PUT", "/v1/policies/{name}"] == "admin"
    assert roles["GET", "/healthz"] is None and document["paths"]["/healthz"]["get"]["security"] == []


def test_an_admin_key_does_everything(app):
    admin = as_key(app, ADMIN)
    assert admin.post("/v1/titles", json={"id": "new", "name": "New"}).status_code == 201
    assert admin.put("/v1/policies/artwork", json={"epsilon": 0.05}).status_code == 200
    assert admin.get("/v1/policies/artwork/model").status_code == 200
    assert admin.post("/v1/rank", json={"slots": 2}).status_code == 200
    assert admin.get("/live").status_code == 200


def test_pages_ask_browsers_for_an_admin_key(app):
    anonymous = as_key(app, None)
    page = anonymous.get("/live")
    assert page.status_code == 401 and page.headers["WWW-Authenticate"].startswith("Basic realm=")

    def basic(password: str) -> dict[str, str]:
        return {"Authorization": "Basic " + base64.b64encode(f"me:{password}".encode()).decode()}

    assert anonymous.get("/live", headers=basic(ADMIN)).status_code == 200
    assert anonymous.get("/evaluations", headers=basic(ADMIN)).status_code == 200
    assert anonymous.get("/live", headers=basic(CLIENT)).status_code == 403
    assert anonymous.get("/live", headers={"Authorization": "Basic !!!"}).status_code == 401
    # Basic credentials open pages, and the JSON the pages link to; the rest of the API wants its header.
    assert anonymous.post("/v1/rank", json={"slots": 2}, headers=basic(ADMIN)).status_code == 401
    assert anonymous.post("/v1/evaluations", json={"policy": "artwork"}, headers=basic(ADMIN)).status_code == 401
    assert anonymous.get("/v1/evaluations/ev-nope", headers=basic(ADMIN)).status_code == 404  # past the key check
    assert anonymous.get("/v1/policies/titles/apprentice", headers=basic(ADMIN)).status_code == 200
    assert anonymous.get("/v1/evaluations/ev-nope", headers=basic(CLIENT)).status_code == 403


def test_every_link_a_page_shows_opens_with_the_pages_credentials(app):
    """The pages' links are pages or JSON that takes HTTP Basic, so one browser session follows them."""
    import re

    templates = ROOT / "service" / "templates"
    linked = set(re.findall(r"url_for\('([\w.]+)'", "".join(p.read_text() for p in templates.glob("*.html"))))
    linked |= (
        {"policies.apprentice_report"}
        if "/v1/policies/{{ m.name }}/apprentice" in (templates / "dashboard.html").read_text()
        else set()
    )
    assert linked and all(
        endpoint in auth.PAGE_ENDPOINTS | auth.LINKED_ENDPOINTS | auth.PUBLIC_ENDPOINTS for endpoint in linked
    ), linked - auth.PAGE_ENDPOINTS - auth.LINKED_ENDPOINTS


def test_stored_keys_are_made_listed_and_revoked_and_never_kept(app):
    runner = app.test_cli_runner()
    made = runner.invoke(args=["keys", "create", "--name", "web-backend", "--role", "client"])
    assert made.exit_code == 0
    key = made.stdout.strip()  # the key alone on standard output, for scripts
    assert made.stderr.startswith("client key 'web-backend', shown this once")
    assert key.startswith("mq_client_") and len(key) > 40
    assert as_key(app, key).post("/v1/rank", json={"slots": 2}).status_code == 200
    assert runner.invoke(args=["keys", "create", "--name", "web-backend"]).exit_code == 1  # the name is taken
    listed = runner.invoke(args=["keys", "list"]).output
    assert "web-backend\tclient" in listed and key not in listed and auth.digest(key) not in listed
    database = Path(app.config["DATABASE"])
    connect(str(database)).execute("PRAGMA wal_checkpoint(TRUNCATE)")
    assert key.encode() not in database.read_bytes()  # only its digest is stored
    assert runner.invoke(args=["keys", "revoke", "web-backend"]).exit_code == 0
    assert as_key(app, key).post("/v1/rank", json={"slots": 2}).status_code == 401
    assert runner.invoke(args=["keys", "revoke", "nobody"]).exit_code == 1
    assert CLIENT not in str(app.config.get("API_KEYS"))  # configured keys are kept hashed only


def test_a_request_reads_only_its_own_key_however_many_are_stored(app):
    """A rank with 3,000 stored keys runs no more of SQLite's steps than with 3, and each key keeps its role."""
    runner = app.test_cli_runner()
    made = {
        role: runner.invoke(args=["keys", "create", "--name", f"first-{role}", "--role", role]).stdout.strip()
        for role in ("client", "admin")
    }
    gone = runner.invoke(args=["keys", "create", "--name", "gone"]).stdout.strip()
    assert runner.invoke(args=["keys", "revoke", "gone"]).exit_code == 0

    def steps(key: str) -> int:
        counted, answer = sqlite_steps(
            app, lambda: as_key(app, key).post("/v1/rank", json={"slots": 2, "user": {"id": "u1"}})
        )
        assert answer.status_code == 200
        return counted or 0

    few = min(steps(made["client"]) for _ in range(3))
    connect(app.config["DATABASE"]).executemany(
        "INSERT INTO api_keys (name, role, hash, created_at) VALUES (?, 'client', ?, 0)",
        [(f"bulk-{index}", auth.digest(f"bulk-key-{index}")) for index in range(3000)],
    )
    many = min(steps(made["client"]) for _ in range(3))
    assert many < 1.1 * few, (few, many)  # a scan of the table would add some 3,000 rows' steps
    assert as_key(app, "bulk-key-2999").post("/v1/rank", json={"slots": 2}).status_code == 200
    assert as_key(app, "bulk-key-7").post("/v1/titles", json={"name": "x"}).status_code == 403
    assert as_key(app, made["admin"]).post("/v1/titles", json={"name": "x"}).status_code != 403
    assert as_key(app, gone).post("/v1/rank", json={"slots": 2}).status_code == 401
    assert as_key(app, ADMIN).get("/v1/policies").status_code == 200  # configured keys beside the table's
    assert as_key(app, CLIENT).post("/v1/rank", json={"slots": 2}).status_code == 200


def test_the_demo_catalog_prints_first_keys_once(tmp_path: Path):
    app = create_app({"DATA_DIR": str(tmp_path / "data"), "LEARNER": False, "AUTH": "keys"})
    runner = app.test_cli_runner()
    first = runner.invoke(args=["demo-catalog", "--titles", "2"])
    assert first.exit_code == 0, first.output
    keys = dict(
        line.split(" key (shown once; X-API-Key): ") for line in first.output.splitlines() if "shown once" in line
    )
    assert set(keys) == {"client", "admin"}
    assert as_key(app, keys["client"]).post("/v1/rank", json={"slots": 2}).status_code == 200
    assert as_key(app, keys["client"]).post("/v1/titles", json={"name": "x"}).status_code == 403
    again = runner.invoke(args=["demo-catalog", "--titles", "2"])
    assert again.exit_code == 0 and "shown once" not in again.output


def test_checks_are_off_only_when_said(tmp_path: Path):
    with pytest.raises(ValueError, match="AUTH must be keys or off"):
        settings.load(environ={"MARQUEE_AUTH": "no"})
    assert settings.load(environ={})["AUTH"] == "keys"
    app = create_app({"DATA_DIR": str(tmp_path / "data"), "LEARNER": False, "AUTH": "off"})
    assert app.test_client().post("/v1/titles", json={"name": "x"}).status_code == 201


def test_a_key_over_its_rate_gets_429_and_changes_nothing(tmp_path: Path):
    keys = {
        "DATA_DIR": str(tmp_path / "data"),
        "LEARNER": False,
        "AUTH": "keys",
        "API_KEYS": CLIENT,
        "ADMIN_KEYS": ADMIN,
    }
    add_catalog(as_key(create_app(keys), ADMIN), titles=3)
    app = create_app({**keys, "RATE_LIMIT": 0.01, "RATE_BURST": 5})
    client = as_key(app, CLIENT)
    db = connect(app.config["DATABASE"])
    statuses = [client.post("/v1/rank", json={"slots": 2}).status_code for _ in range(5)]
    assert statuses == [200] * 5  # the burst
    before = table_counts(db)
    refused = client.post("/v1/rank", json={"slots": 2})
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 60  # a token every 100 s
    assert "over its limit of 0.01 requests a second" in refused.get_json()["error"]["message"]
    assert table_counts(db) == before
    assert as_key(app, "other").post("/v1/rank", json={"slots": 2}).status_code == 401  # unknown keys spend nothing
    assert as_key(app, None).get("/v1/artworks/t00-dark-warm/image?w=92").status_code == 200  # images are not limited


def test_buckets_refill_at_the_rate():
    from service.ratelimit import Limiter, retry_after

    now = [0.0]
    limiter = Limiter(2.0, 3, clock=lambda: now[0])
    assert [limiter.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.take("a") == pytest.approx(0.5)  # two tokens a second: the next in half a second
    assert limiter.take("b") == 0.0  # keys do not share
    now[0] += 0.5
    assert limiter.take("a") == 0.0 and limiter.take("a") == pytest.approx(0.5)
    now[0] += 100
    assert [limiter.take("a") for _ in range(4)][-1] == pytest.approx(0.5)  # refilled to the burst, not beyond
    assert retry_after(0.01) == 1 and retry_after(2.2) == 3
    with pytest.raises(ValueError):
        Limiter(0, 1)
