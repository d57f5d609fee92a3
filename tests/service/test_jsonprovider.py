"""Answers written by orjson are the documents Flask's own provider wrote, and its fallbacks hold."""

from __future__ import annotations

import dataclasses
import datetime
import json

from flask import Flask
from flask.json.provider import DefaultJSONProvider

from service.jsonprovider import FastJSONProvider


def compact(obj: object) -> str:
    """What Flask's provider writes for ``obj`` once its ASCII escapes are undone: the same document."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def test_a_rank_answer_is_the_same_document_byte_for_byte(app, client, catalog):
    assert isinstance(app.json, FastJSONProvider)
    response = client.post(
        "/v1/rank",
        json={"user": {"id": "zoë", "features": {"hour": 21, "città": "Bologna"}}, "slots": 4, "explain": True},
    )
    assert response.status_code == 200 and response.mimetype == "application/json"
    body = response.get_json()
    assert len(body["slots"]) == 4 and all(0 < slot["title_probability"] <= 1 for slot in body["slots"])
    # Every float (probabilities, explanation scores) written as Python writes it: shortest round trip.
    assert response.get_data(as_text=True) == compact(body) + "\n"
    refused = client.post("/v1/rank", json={"slots": "three"})
    assert refused.status_code == 422 and refused.get_data(as_text=True) == compact(refused.get_json()) + "\n"


def test_what_orjson_writes_differently_goes_through_flasks_default(app):
    @dataclasses.dataclass
    class Point:
        x: int
        when: datetime.date

    provider = app.json
    flask = DefaultJSONProvider(app)
    flask.sort_keys = False
    moment = datetime.datetime(2026, 12, 7, 18, 30, tzinfo=datetime.UTC)
    for obj in (
        {"at": moment},  # an HTTP date, as Flask writes it, not orjson's ISO 8601
        [Point(1, datetime.date(2026, 12, 7))],  # a dataclass as its dict, its date as Flask writes it
        {1: "a", 2.5: "b"},  # keys that are not strings, as json writes them
        {"big": 2**70},  # past 64 bits: orjson refuses, Python's json writes it
        {"lone": "\ud800"},  # not UTF-8: escaped to ASCII, as before
        {"b": 1, "a": [1.5, None, True]},  # key order kept
    ):
        assert json.loads(provider.dumps(obj)) == json.loads(flask.dumps(obj)), obj
    assert provider.dumps({"at": moment}) == '{"at":"Mon, 07 Dec 2026 18:30:00 GMT"}'
    assert provider.dumps({"lone": "\ud800"}) == '{"lone": "\\ud800"}'
    assert provider.dumps({"big": 2**70}) == '{"big": 1180591620717411303424}'
    assert provider.dumps({"b": 1, "a": 2}) == '{"b":1,"a":2}'
    assert provider.dumps({"a": 1}, indent=2) == '{\n  "a": 1\n}'  # any keyword: Python's json


def test_debug_mode_answers_are_indented_as_flask_indents_them():
    app = Flask(__name__)
    app.json = FastJSONProvider(app)
    app.debug = True

    @app.get("/")
    def index():
        return {"a": [1, 2]}

    assert app.test_client().get("/").get_data(as_text=True) == '{\n  "a": [\n    1,\n    2\n  ]\n}\n'
