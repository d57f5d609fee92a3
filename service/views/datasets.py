"""Imported datasets: upload a DSJson or JSON-lines log, list, inspect and remove the datasets."""

from __future__ import annotations

from collections.abc import Iterator

from flask import Blueprint, current_app, jsonify, request
from flask.typing import ResponseReturnValue

from bandits.log import datasets
from bandits.log.logimport import FORMATS
from service.db import get_db
from service.errors import Invalid, NotFound, UnsupportedMedia

bp = Blueprint("datasets", __name__)

# Bodies an upload may carry: the file itself, one JSON document per line.
LINE_TYPES = ("application/x-ndjson", "application/jsonl", "application/json", "text/plain", "application/octet-stream")


def _body_lines() -> Iterator[bytes]:
    stream = request.stream
    while True:
        line = stream.readline()
        if not line:
            return
        yield line


@bp.post("/v1/datasets")
def import_dataset() -> ResponseReturnValue:
    """Read the request body (a DSJson or JSON-lines file) into a new dataset (201)."""
    request.max_content_length = int(current_app.config["MAX_IMPORT_BYTES"])
    if request.mimetype not in LINE_TYPES:
        raise UnsupportedMedia(
            f"Content-Type: send the file itself as one of {', '.join(LINE_TYPES)}, not {request.mimetype or 'nothing'}"
        )
    fmt = request.args.get("format", "dsjson")
    if fmt not in FORMATS:
        raise Invalid(f"format: must be one of {', '.join(FORMATS)}, got {fmt!r}")
    summary = datasets.import_lines(
        get_db(),
        current_app.config["DATABASE"],
        _body_lines(),
        fmt=fmt,
        name=request.args.get("name"),
        policy=request.args.get("policy"),
    )
    response = jsonify(summary)
    response.status_code = 201
    response.headers["Location"] = f"/v1/datasets/{summary['id']}"
    return response


@bp.get("/v1/datasets")
def list_datasets() -> ResponseReturnValue:
    """List the 100 newest datasets."""
    return jsonify({"datasets": datasets.recent(get_db())})


@bp.get("/v1/datasets/<dataset_id>")
def show_dataset(dataset_id: str) -> ResponseReturnValue:
    """Return a dataset's summary."""
    found = datasets.get(get_db(), dataset_id)
    if found is None:
        raise NotFound(f"dataset {dataset_id!r} does not exist")
    return jsonify(found)


@bp.delete("/v1/datasets/<dataset_id>")
def delete_dataset(dataset_id: str) -> ResponseReturnValue:
    """Remove a dataset and its decisions (the service's own log is not touched)."""
    if not datasets.delete(get_db(), dataset_id):
        raise NotFound(f"dataset {dataset_id!r} does not exist")
    return "", 204
