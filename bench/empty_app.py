"""The HTTP stack alone: Flask under gunicorn, parsing a rank request and answering a row, with no decision.

``bench.rank_bench`` runs it under wrk beside Marquee to measure what gunicorn and Flask cost per
request on the same machine, in the same run: an upper bound for any Flask service on this stack.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, jsonify, request

app = Flask(__name__)
app.json.sort_keys = False  # type: ignore[attr-defined]

# A response the size and shape of a 10-slot rank answer.
ROW: dict[str, Any] = {
    "event_id": "e-" + "0" * 32, "model_versions": {"titles": 1, "artwork": 1}, "deferred": False,
    "slots": [{"position": i, "title_id": f"t{i:03d}", "artwork_id": f"t{i:03d}-a1",
               "artwork_url": f"/v1/artworks/t{i:03d}-a1/image?w=342", "title_probability": 0.9025,
               "artwork_probability": 0.92} for i in range(10)],
}


@app.post("/v1/rank")
def rank() -> Any:
    """Parse the JSON body and answer a fixed row."""
    body = request.get_json()
    if not isinstance(body, dict):
        return jsonify({"error": "body"}), 422
    return jsonify(ROW)
