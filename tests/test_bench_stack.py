"""The rank benchmark's stand-in stacks answer like the rank does, so their throughput is a fair bound."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from bench.empty_app import ROW, app, bare
from bench.rank_bench import BODY


def call_bare(body: bytes) -> tuple[str, dict[str, str], Any]:
    """Call the plain WSGI app once; return its status line, headers and decoded body."""
    seen: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        seen["status"], seen["headers"] = status, dict(headers)

    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/v1/rank",
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
    }
    payload = b"".join(bare(environ, start_response))
    assert int(seen["headers"]["Content-Length"]) == len(payload)
    return seen["status"], seen["headers"], json.loads(payload)


def test_both_stacks_answer_the_benchmark_request_with_the_same_row() -> None:
    status, headers, answer = call_bare(json.dumps(BODY).encode())
    assert status.startswith("200") and headers["Content-Type"] == "application/json"
    flask_answer = app.test_client().post("/v1/rank", json=BODY)
    assert flask_answer.status_code == 200
    assert answer == flask_answer.get_json() == ROW
    assert len(answer["slots"]) == BODY["slots"]


@pytest.mark.parametrize("body", [b"[1, 2]", b'"row"', b"7"])
def test_both_stacks_refuse_a_body_that_is_not_an_object(body: bytes) -> None:
    assert call_bare(body)[0].startswith("422")
    assert app.test_client().post("/v1/rank", data=body, content_type="application/json").status_code == 422


def test_the_bare_stack_parses_the_body_and_fails_on_broken_json() -> None:
    with pytest.raises(json.JSONDecodeError):
        call_bare(b"{not json")
