"""The HTTP stack alone: gunicorn parsing a rank request and answering a row, with no decision.

``bench.rank_bench`` runs both apps here under wrk beside Marquee, on the same machine in the same
run: ``app`` (Flask) measures what gunicorn and Flask cost per request, an upper bound for any
Flask service on this stack; ``bare`` (a plain WSGI callable: read the body, parse the JSON, write
the canned row) measures gunicorn alone, an upper bound for any Python service under gunicorn.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask, jsonify, request

app = Flask(__name__)
app.json.sort_keys = False  # type: ignore[attr-defined]

# A response the size and shape of a 10-slot rank answer.
ROW: dict[str, Any] = {
    "event_id": "e-" + "0" * 32,
    "model_versions": {"titles": 1, "artwork": 1},
    "deferred": False,
    "slots": [
        {
            "position": i,
            "title_id": f"t{i:03d}",
            "artwork_id": f"t{i:03d}-a1",
            "artwork_url": f"/v1/artworks/t{i:03d}-a1/image?w=342",
            "title_probability": 0.9025,
            "artwork_probability": 0.92,
        }
        for i in range(10)
    ],
}


@app.post("/v1/rank")
def rank() -> Any:
    """Parse the JSON body and answer a fixed row."""
    body = request.get_json()
    if not isinstance(body, dict):
        return jsonify({"error": "body"}), 422
    return jsonify(ROW)


_ROW_BYTES = json.dumps(ROW).encode()


def bare(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """Parse the JSON body and answer the same fixed row, with no framework between gunicorn and the app."""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    if not isinstance(json.loads(environ["wsgi.input"].read(length)), dict):
        start_response("422 Unprocessable Entity", [("Content-Type", "application/json"), ("Content-Length", "2")])
        return [b"{}"]
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(_ROW_BYTES)))])
    return [_ROW_BYTES]
