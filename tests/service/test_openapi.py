"""/openapi.json: every route described, examples that the API accepts, and schemathesis finding no 5xx."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from bench.coffee_log import foreign_log
from service import create_app, openapi
from service.views import personalizer
from tests.helpers import add_catalog, table_counts

EXAMPLES_PER_OPERATION = 25
# The Personalizer API answers at three places (service.views.personalizer): the same blueprint, and
# the same declared operation, or the same plus ``api-version``. Fuzzed in full at /personalizer/v1.0,
# its other two places get a few cases each, enough to show they route to it and check their version.
EXAMPLES_PER_ALIAS = 5


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory):
    app = create_app({"DATA_DIR": str(tmp_path_factory.mktemp("openapi") / "data"), "LEARNER": False})
    add_catalog(app.test_client(), titles=4)
    return app


def test_every_route_is_an_operation(app):
    document = app.test_client().get("/openapi.json").get_json()
    described = {(method.upper(), path) for path, item in document["paths"].items() for method in item}
    served = {(method, path) for method, path, _ in openapi.routes(app)}
    assert described == served
    assert set(openapi.OPERATIONS) == served  # no description left over for a route that is gone
    for path, item in document["paths"].items():
        for method, operation in item.items():
            assert operation["summary"] and "4XX" in operation["responses"], (method, path)
            body = operation.get("requestBody")
            if body and "application/json" in body["content"]:
                assert "example" in body["content"]["application/json"], (method, path)
    for name in ("RankResponse", "RewardReceipt", "ErrorBody"):  # the answers clients handle most show an example
        assert document["components"]["schemas"][name]["examples"], name


def test_each_request_body_is_its_own_component(app):
    """Two bodies of one name would share a component, and one route would document the other's fields."""
    models = {spec.body.model for spec in openapi.OPERATIONS.values() if spec.body and spec.body.model}
    names = sorted(model.__name__ for model in models)
    assert len(names) == len(set(names)), [name for name in names if names.count(name) > 1]
    document = app.test_client().get("/openapi.json").get_json()
    for path, model in openapi.OPERATIONS.items():
        if model.body and model.body.model:
            body = document["paths"][path[1]][path[0].lower()]["requestBody"]["content"][model.body.media]["schema"]
            component = document["components"]["schemas"][body["$ref"].rsplit("/", 1)[1]]
            assert set(component["properties"]) == set(model.body.model.model_fields), path
    personalizer_rank = document["paths"]["/personalizer/v1.0/rank"]["post"]["requestBody"]["content"]
    ref = personalizer_rank["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    assert {"contextFeatures", "actions"} <= set(document["components"]["schemas"][ref]["properties"])


def test_the_json_examples_are_accepted(app):
    """Each JSON request example, sent as it is, is not refused as malformed (a 422)."""
    client = app.test_client()
    document = client.get("/openapi.json").get_json()
    event = client.post("/v1/rank", json={"slots": 2}).get_json()
    values = {
        "event_id": event["event_id"],
        "title_id": "t00",
        "name": "artwork",
        "run_id": "ev-none",
        "evaluation_id": "pz-none",
        "importance_id": "fi-none",
        "artwork_id": "t00-dark-warm",
        "dataset_id": "ds-none",
    }
    log = "\n".join(foreign_log(30, seed=1)[0])
    dataset = client.post("/v1/datasets?policy=actions", data=log, content_type="application/x-ndjson").get_json()
    for path, item in document["paths"].items():
        for method, operation in item.items():
            content = operation.get("requestBody", {}).get("content", {}).get("application/json")
            if content is None:
                continue
            example = dict(content["example"])
            if path == "/v1/events/{event_id}/reward":
                example["title_id"] = event["slots"][0]["title_id"]
            url = path.format(**values)
            if path == "/v1/policies/{name}/warm-start":  # a dataset in the actions policy's encoding
                example["dataset"], url = dataset["id"], path.format(name="actions")
            response = client.open(url, method=method.upper(), json=example)
            assert response.status_code != 422, (method, path, response.get_json())
            assert response.status_code < 500


# The log import reads any text as lines; schemathesis sends generated text for it as it sends text/plain.
schemathesis.serializer.alias("application/x-ndjson", "text/plain")


def _examples(path: str) -> int:
    """Return how many cases to generate for an operation at ``path``."""
    if path.startswith(personalizer.REST_PREFIX + "/") and not path.startswith(personalizer.V1_PREFIX + "/"):
        return EXAMPLES_PER_ALIAS  # the v1.1-preview.1 path, or /personalizer with the api-version asked for
    return EXAMPLES_PER_OPERATION


def _fuzz(operation, mode: GenerationMode, checks: list) -> None:
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=_examples(operation.path),
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    def run(case: schemathesis.Case) -> None:
        case.call_and_validate(checks=checks)

    run()


def test_schemathesis_finds_no_server_error_and_no_undeclared_answer(app, tmp_path):
    """Generated requests for every operation: never a 5xx; statuses, media types and bodies as declared.

    Valid inputs (by the document) are checked against every declaration; invalid ones (wrong types,
    out-of-range values, malformed bodies and parameters) only for a 5xx, since any 4xx is right for them.
    """
    db_before = table_counts(_db(app))
    schema = schemathesis.openapi.from_wsgi("/openapi.json", app)
    failures: list[str] = []
    fuzzed = set()
    for result in schema.get_all_operations():
        operation = result.ok()
        fuzzed.add((operation.method.upper(), operation.path))
        takes_input = bool(operation.body) or bool(list(operation.iter_parameters()))
        runs = [
            (
                GenerationMode.POSITIVE,
                [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance],
            )
        ]
        if takes_input:
            runs.append((GenerationMode.NEGATIVE, [not_a_server_error]))
        for mode, checks in runs:
            try:
                _fuzz(operation, mode, checks)
            except Exception as exc:  # collect every operation's failure, then report them all
                failures.append(f"{mode.value} {operation.method.upper()} {operation.path}: {exc}")
    # schemathesis does not fuzz the document it reads; every other operation it does.
    assert fuzzed == set(openapi.OPERATIONS) - {("GET", "/openapi.json")}
    # Each place fuzzed lightly is another place of an operation fuzzed in full at v1.0.
    for method, path in fuzzed:
        if _examples(path) < EXAMPLES_PER_OPERATION:
            rest = path.removeprefix(personalizer.PREVIEW_PREFIX).removeprefix(personalizer.REST_PREFIX)
            assert (method, personalizer.V1_PREFIX + rest) in fuzzed, (method, path)
            assert _examples(personalizer.V1_PREFIX + rest) == EXAMPLES_PER_OPERATION
    assert not failures, "\n\n".join(failures)
    check = _db(app).execute("PRAGMA integrity_check").fetchone()[0]
    assert check == "ok" and table_counts(_db(app))["titles"] >= db_before["titles"]


def _db(app):
    from bandits.storage import connect

    return connect(app.config["DATABASE"])
