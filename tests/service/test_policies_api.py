"""Policy settings, model export/import/reset over HTTP."""

from __future__ import annotations

import re
import struct
import time
from pathlib import Path

import pytest
import vowpal_wabbit_next as vw

from bandits.model import policy as policies_module
from service import create_app
from service.config import POLICY_DEFAULTS
from tests.helpers import serve_newest_models, table_counts


def test_settings_override_and_revert(client):
    body = client.put("/v1/policies/titles", json={"epsilon": 0.05, "reward_wait": 5}).get_json()
    assert body["settings"]["epsilon"] == 0.05 and body["settings"]["reward_wait"] == 5.0
    assert body["settings"]["overridden"] == ["epsilon", "reward_wait"]
    assert body["model"]["version"] == 0  # options unchanged: same model
    reverted = client.put("/v1/policies/titles", json={}).get_json()
    assert reverted["settings"]["epsilon"] == 0.2 and reverted["settings"]["overridden"] == []
    assert reverted["removed"] == ["epsilon", "reward_wait"]  # a PUT says what it put back to the defaults


def test_patch_changes_only_what_it_names(client, db):
    client.put("/v1/policies/titles", json={"reward_values": {"click": 0.2}, "reward_wait": 30})
    patched = client.patch("/v1/policies/titles", json={"epsilon": 0.05})
    assert patched.status_code == 200, patched.get_json()
    settings = patched.get_json()["settings"]
    assert settings["epsilon"] == 0.05 and settings["reward_wait"] == 30.0 and settings["reward_values"]["click"] == 0.2
    assert settings["overridden"] == ["epsilon", "reward_values", "reward_wait"] and patched.get_json()["removed"] == []
    # null puts one setting back to the deployment default, and only that one
    back = client.patch("/v1/policies/titles", json={"reward_wait": None}).get_json()
    assert back["removed"] == ["reward_wait"] and back["settings"]["reward_wait"] == 60.0
    assert back["settings"]["overridden"] == ["epsilon", "reward_values"]
    before = table_counts(db)
    for body, message in (({"epsilon": 2}, "epsilon: must be a number in [0, 1]"), ({"epsilonn": 0.1}, "epsilonn: ")):
        refused = client.patch("/v1/policies/titles", json=body)
        assert refused.status_code == 422 and refused.get_json()["error"]["message"].startswith(message)
    assert table_counts(db) == before
    assert client.get("/v1/policies/titles").get_json()["settings"]["overridden"] == ["epsilon", "reward_values"]
    version = client.get("/v1/policies/titles").get_json()["model"]["version"]
    assert (
        client.patch("/v1/policies/titles", json={"vw_args": "-q UT -l 0.1"}).get_json()["model"]["version"]
        == version + 1
    )
    # reward_values merges too: one type changes, null puts one back, the others stay
    merged = client.patch("/v1/policies/titles", json={"reward_values": {"completed": 0.5}}).get_json()["settings"]
    assert (merged["reward_values"]["click"], merged["reward_values"]["completed"]) == (0.2, 0.5)
    back = client.patch("/v1/policies/titles", json={"reward_values": {"click": None}}).get_json()["settings"]
    assert (back["reward_values"]["click"], back["reward_values"]["completed"]) == (1.0, 0.5)
    refused = client.patch("/v1/policies/titles", json={"reward_values": {"purchase": None}})
    assert refused.status_code == 422 and refused.get_json()["error"]["message"].startswith("reward_values.purchase")


def test_new_epsilon_is_served_at_once(app, client, learner, catalog):
    for _ in range(30):  # teach the model something, so that no two titles tie
        body = client.post("/v1/rank", json={"slots": 6}).get_json()
        for slot in body["slots"]:
            client.post(
                f"/v1/events/{body['event_id']}/reward",
                json={"title_id": slot["title_id"], "value": 1.0 / (1 + int(slot["title_id"][1:]))},
            )
    learner.run_once(now=time.time() + 61)
    serve_newest_models(app)
    client.put("/v1/policies/titles", json={"epsilon": 0.0})
    client.put("/v1/policies/artwork", json={"epsilon": 0.0})
    slots = client.post("/v1/rank", json={"slots": 3}).get_json()["slots"]
    assert all(s["title_probability"] == 1.0 and s["artwork_probability"] == 1.0 for s in slots)


def test_changing_vw_args_starts_a_new_model(client, db):
    body = client.put("/v1/policies/titles", json={"vw_args": "-q UT --lrq IT4 -l 0.2"}).get_json()
    assert body["settings"]["vw_args"] == ["-q", "UT", "--lrq", "IT4", "-l", "0.2"]
    assert body["model"]["version"] == 1 and body["model"]["origin"] == "vw_args changed"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"epsilon": 1.5}, "epsilon"),
        ({"epsilon": "high"}, "epsilon"),
        ({"reward_wait": -1}, "reward_wait"),
        ({"default_reward": 2}, "default_reward"),
        ({"aggregation": "median"}, "aggregation"),
        ({"learn_on_first_reward": "yes"}, "learn_on_first_reward"),
        ({"vw_args": "--bogus_option"}, "'--bogus_option' is not accepted"),
        ({"vw_args": "--cb_explore_adf"}, "not accepted"),
        ({"vw_args": ["--epsilon", "0.3"]}, "not accepted"),
        ({"vw_args": ["-q", "UTX"]}, "not a valid value for -q"),
        ({"vw_args": ["-l"]}, "needs a value"),
        ({"vw_args": ["-b", "40"]}, "not a valid value for -b"),
        ({"vw_args": ["--clip_p", "1.5"]}, "not a valid value for --clip_p"),
        ({"vw_args": ["--coin", "0.5"]}, "'0.5' is not accepted"),
        ({"vw_args": '"'}, "No closing quotation"),
        ({"vw_args": ["-q", "\ud800T"]}, "surrogate"),
        ({"vw_args": 5}, "vw_args"),
        ({"temperature": 1}, "temperature"),
    ],
)
def test_bad_settings_are_refused_and_change_nothing(client, db, body, message):
    before = table_counts(db)
    response = client.put("/v1/policies/artwork", json=body)
    assert response.status_code == 422
    assert message in response.get_json()["error"]["message"]
    assert table_counts(db) == before


def test_unknown_policy(client):
    assert client.get("/v1/policies/ghost").status_code == 404
    assert client.put("/v1/policies/ghost", json={}).status_code == 404
    assert client.get("/v1/policies/ghost/model").status_code == 404


def test_model_export_import_round_trip(client, db, learner, catalog):
    for _ in range(20):
        body = client.post("/v1/rank", json={"user": {"features": {"segment": "a"}}, "slots": 2}).get_json()
        client.post(
            f"/v1/events/{body['event_id']}/reward", json={"title_id": body["slots"][0]["title_id"], "value": 1}
        )
    learner.run_once(now=time.time() + 61)
    exported = client.get("/v1/policies/artwork/model")
    assert exported.status_code == 200 and exported.headers["X-Marquee-Model-Version"] == "1"
    vw.Workspace(model_data=exported.data)  # VW itself reads the export
    client.post("/v1/policies/artwork/reset")
    imported = client.put("/v1/policies/artwork/model", data=exported.data, content_type="application/octet-stream")
    assert imported.status_code == 201 and imported.get_json()["version"] == 3
    round_trip = client.get("/v1/policies/artwork/model").data
    example = [
        "shared |U segment=a |T id=t00 |G comedy",
        "|A id=t00-dark-warm tag=dark-warm",
        "|A id=t00-neutral tag=neutral",
    ]
    predictions = []
    for blob in (exported.data, round_trip):
        workspace = vw.Workspace(model_data=blob)
        parser = vw.TextFormatParser(workspace)
        predictions.append(workspace.predict_one([parser.parse_line(line) for line in example]))
    assert predictions[0] == predictions[1] and any(score != 0 for _, score in predictions[0])
    listing = client.get("/v1/policies/artwork").get_json()
    assert listing["model"]["origin"] == "import"


@pytest.mark.parametrize(
    ("data", "content_type", "status"),
    [
        (b"not a model", "application/octet-stream", 422),
        (b"", "application/octet-stream", 422),
        (b"{}", "application/json", 415),
    ],
)
def test_bad_model_imports_are_refused(client, db, data, content_type, status):
    before = table_counts(db)
    assert client.put("/v1/policies/titles/model", data=data, content_type=content_type).status_code == status
    assert table_counts(db) == before


def test_model_of_another_kind_is_refused(client, db):
    regression = vw.Workspace([]).serialize()
    response = client.put("/v1/policies/titles/model", data=regression, content_type="application/octet-stream")
    assert response.status_code == 422 and "cb_adf" in response.get_json()["error"]["message"]


def test_reset_publishes_an_empty_model(client, db):
    body = client.post("/v1/policies/titles/reset").get_json()
    assert body == {"policy": "titles", "version": 1}
    assert client.get("/v1/policies/titles").get_json()["model"]["origin"] == "reset"


def file_size(database: str) -> int | None:
    """The SQLite file's size (a VW option that wrote to it would change it); None for a PostgreSQL store."""
    return None if database.startswith("postgresql://") else Path(database).stat().st_size


@pytest.mark.parametrize(
    "args",
    [
        ["-p", "{db}"],
        ["--predictions={db}"],
        ["-r", "{db}"],
        ["--help"],
        ["-h"],
        ["--version"],
        ["--port", "0"],
        ["--daemon"],
        ["-t"],
        ["--data={db}"],
        ["--cache_file", "{db}"],
        ["--audit"],
        ["-f", "{db}"],
    ],
)
def test_dangerous_vw_options_never_reach_vw(app, client, db, args):
    database = app.config["DATABASE"]
    size = file_size(database)
    before = table_counts(db)
    response = client.put("/v1/policies/titles", json={"vw_args": [a.format(db=database) for a in args]})
    assert response.status_code == 422 and "not accepted" in response.get_json()["error"]["message"]
    assert file_size(database) == size and table_counts(db) == before


def _with_header_options(blob: bytes, options: bytes) -> bytes:
    """Rewrite the options string in a VW model header (as an attacker would)."""
    offset = 0
    for _ in range(2):
        (length,) = struct.unpack_from("<I", blob, offset)
        offset += 4 + length
    offset += 1 + 4 * 4 + 8
    (length,) = struct.unpack_from("<I", blob, offset)
    return blob[:offset] + struct.pack("<I", len(options) + 1) + options + b"\0" + blob[offset + 4 + length :]


@pytest.mark.parametrize("extra", [b"--predictions {db}", b"--port 0", b"--audit", b"--testonly"])
def test_models_with_dangerous_options_in_their_header_are_refused(app, client, db, extra):
    database = app.config["DATABASE"]
    size = file_size(database)
    blob = vw.Workspace(["--cb_adf", "-q", "UA"]).serialize()
    crafted = _with_header_options(
        blob, b" --cb_adf --cb_type mtr --csoaa_ldf multiline --csoaa_rank " + extra.replace(b"{db}", database.encode())
    )
    before = table_counts(db)
    response = client.put("/v1/policies/artwork/model", data=crafted, content_type="application/octet-stream")
    assert response.status_code == 422 and "not accepted" in response.get_json()["error"]["message"]
    assert file_size(database) == size and table_counts(db) == before


def test_truncated_model_is_refused(client, db, learner, catalog):
    for _ in range(10):
        body = client.post("/v1/rank", json={"slots": 2}).get_json()
        client.post(
            f"/v1/events/{body['event_id']}/reward", json={"title_id": body["slots"][0]["title_id"], "value": 1}
        )
    learner.run_once(now=time.time() + 61)
    blob = client.get("/v1/policies/titles/model").data
    for cut in (len(blob) // 2, len(blob) - 8):
        response = client.put("/v1/policies/titles/model", data=blob[:cut], content_type="application/octet-stream")
        assert response.status_code == 422, cut
        assert (
            "incomplete" in response.get_json()["error"]["message"]
            or "could not load" in response.get_json()["error"]["message"]
        )


@pytest.mark.parametrize("key", sorted(policies_module.RANGES))
def test_every_range_is_checked_at_its_ends_with_one_message(key):
    bounds = policies_module.RANGES[key]
    step = 1e-6 * max(1.0, abs(bounds.high))
    inside = [bounds.high, bounds.low + step] + ([] if bounds.low_open else [bounds.low])
    outside = [bounds.high + step, bounds.low - step, True, "0.5"] + ([bounds.low] if bounds.low_open else [])
    for value in inside:
        assert policies_module.validate_overrides({key: value}) == {key: float(value)}
    for value in outside:
        with pytest.raises(policies_module.PolicyError) as refused:
            policies_module.validate_overrides({key: value})
        assert str(refused.value) == f"{key}: must be {bounds.says()}"


def test_the_published_policy_schema_states_the_ranges_the_checks_apply(client):
    """One set of ranges: what /openapi.json tells a client is what a PUT refuses."""
    body = client.get("/openapi.json").get_json()["paths"]["/v1/policies/{name}"]["put"]["requestBody"]
    schema = body["content"]["application/json"]["schema"]
    if "$ref" in schema:
        schema = client.get("/openapi.json").get_json()["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    assert set(schema["properties"]) == set(policies_module.OVERRIDABLE)
    for key, bounds in policies_module.RANGES.items():
        number = schema["properties"][key]["anyOf"][0]
        assert number["type"] == "number" and number["maximum"] == bounds.high
        assert number["exclusiveMinimum" if bounds.low_open else "minimum"] == bounds.low
        refused = client.put("/v1/policies/titles", json={key: bounds.high * 2 + 1})
        assert (
            refused.status_code == 422 and refused.get_json()["error"]["message"] == f"{key}: must be {bounds.says()}"
        )
    for key, choices in policies_module.CHOICES.items():
        assert schema["properties"][key]["enum"] == [*choices, None]
    assert client.get("/v1/policies/titles").get_json()["settings"]["overridden"] == []


def test_a_patch_with_several_settings_stores_none_when_one_is_bad(client):
    before = client.get("/v1/policies/artwork").get_json()["settings"]
    refused = client.patch("/v1/policies/artwork", json={"epsilon": 0.05, "reward_values": {"click": 0.5, "play": 7}})
    assert refused.status_code == 422
    assert refused.get_json()["error"]["message"] == "reward_values.play: must be a number in [-1, 1]"
    refused = client.patch("/v1/policies/artwork", json={"epsilon": 0.05, "max_per_genre": 2})
    assert refused.status_code == 422
    assert refused.get_json()["error"]["message"].startswith("max_per_genre: a setting of the titles policy only")
    assert client.get("/v1/policies/artwork").get_json()["settings"] == before


@pytest.mark.parametrize("name", sorted(POLICY_DEFAULTS))
def test_a_deployment_default_outside_its_policy_range_stops_the_service(tmp_path, name):
    bounds = policies_module.RANGES[POLICY_DEFAULTS[name]]
    with pytest.raises(ValueError, match=rf"{name} must be in {re.escape(bounds.bounds())}"):
        create_app({"DATA_DIR": str(tmp_path), "LEARNER": False, name: bounds.high + 1.0})
