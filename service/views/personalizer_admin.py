"""Azure Personalizer's administration API on Marquee: model, logs, evaluations and feature importances.

What ``azure-ai-personalizer``'s ``PersonalizerAdministrationClient`` calls, mapped onto Marquee's
own machinery (``bandits.personalizer``), with the status codes that SDK accepts: 200 with a body,
204 without, and Personalizer's ``{"error": {"code", "message"}}`` otherwise. It answers at the
same three places as the rest of the API (``service.views.personalizer.register``) and needs an
admin key. Calls Marquee cannot honour answer with an error that says why, never a bare 404.
"""

from __future__ import annotations

from typing import Any

from flask import Response, current_app, jsonify, request
from flask.typing import ResponseReturnValue

from bandits import personalizer
from bandits.model.policy import ACTIONS
from service import workers
from service.config import deployment
from service.db import get_db
from service.errors import Invalid
from service.schemas import check_json
from service.views.personalizer import blueprint
from service.views.policies import export_model, import_model, reset_model

bp = blueprint("personalizer_admin", __name__)


def _no_content() -> Response:
    return Response(status=204)


MAX_PAGE = 1_000_000  # the largest top or skip


def _page_args() -> tuple[int | None, int]:
    """Read Personalizer's ``top`` (None when absent) and ``skip`` (0): whole numbers from 0 to ``MAX_PAGE``."""
    found = []
    for name in ("top", "skip"):
        raw = request.args.get(name)
        if raw is not None and not (raw.isdigit() and int(raw) <= MAX_PAGE):
            raise Invalid(f"{name}: must be a whole number from 0 to {MAX_PAGE}, got {raw!r}")
        found.append(None if raw is None else int(raw))
    return found[0], found[1] or 0


def _body() -> dict[str, Any]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise Invalid("body: must be a JSON object")
    check_json(body)
    return body


# ---------------------------------------------------------------- model


@bp.get("/model")
def get_model() -> ResponseReturnValue:
    """The ``actions`` policy's newest model as VW model bytes; ``signed=true`` (Azure's signed archive) is refused."""
    if request.args.get("signed", "false").lower() == "true":
        raise personalizer.Refused(
            "signed: Marquee exports the VW model itself (signed=false); signed archives are "
            "Azure's format, which Marquee neither writes nor reads",
            code="OperationNotAllowed",
        )
    return export_model(ACTIONS)


@bp.put("/model")
def put_model() -> ResponseReturnValue:
    """Publish VW model bytes as the ``actions`` policy's newest version (204)."""
    import_model(ACTIONS)
    return _no_content()


@bp.delete("/model")
def delete_model() -> ResponseReturnValue:
    """Start the ``actions`` policy on a new, empty model (204)."""
    reset_model(ACTIONS)
    return _no_content()


@bp.get("/model/properties")
def model_properties() -> ResponseReturnValue:
    """When the ``actions`` model was started and last changed."""
    return jsonify(personalizer.model_properties(get_db()))


# ---------------------------------------------------------------- logs


@bp.get("/logs/properties")
def log_properties() -> ResponseReturnValue:
    """The time range of the ``actions`` policy's logged decisions."""
    return jsonify(personalizer.log_properties(get_db()))


@bp.delete("/logs")
def delete_logs() -> ResponseReturnValue:
    """Delete the ``actions`` policy's logged decisions, except those waiting to be learned (204)."""
    personalizer.delete_logs(get_db())
    return _no_content()


@bp.post("/logs/interactions")
@bp.post("/logs/observations")
def post_logs() -> ResponseReturnValue:
    """Personalizer's raw log upload: Marquee logs its decisions itself and imports logs as datasets."""
    raise personalizer.Refused(
        "Marquee logs its own decisions and does not take Personalizer's raw log uploads; "
        "import a DSJson log as a dataset with POST /v1/datasets?format=dsjson&policy=actions",
        code="OperationNotAllowed",
    )


# ---------------------------------------------------------------- evaluations


@bp.put("/evaluations/<evaluation_id>")
def create_evaluation(evaluation_id: str) -> ResponseReturnValue:
    """Start an evaluation of the logged decisions in a time range (200, as Personalizer answers; poll it)."""
    run_id = personalizer.create_evaluation(get_db(), deployment(), _id(evaluation_id), _body())
    workers.spawn(current_app.config, "evaluation", run_id)
    return Response(status=200)


@bp.get("/evaluations/<evaluation_id>")
def get_evaluation(evaluation_id: str) -> ResponseReturnValue:
    """An evaluation: its status and, once done, each policy's DR estimate with its interval and series."""
    return jsonify(personalizer.evaluation(get_db(), deployment(), evaluation_id))


@bp.get("/evaluations")
def list_evaluations() -> ResponseReturnValue:
    """The evaluations, newest first, on one page."""
    top, skip = _page_args()
    return jsonify({"value": personalizer.evaluations(get_db(), top=top, skip=skip)})


@bp.delete("/evaluations/<evaluation_id>")
def delete_evaluation(evaluation_id: str) -> ResponseReturnValue:
    """Delete a finished evaluation (204)."""
    personalizer.delete_evaluation(get_db(), evaluation_id)
    return _no_content()


@bp.post("/configurations/applyFromEvaluation")
def apply_from_evaluation() -> ResponseReturnValue:
    """Make a policy of a finished evaluation the ``actions`` policy's, if the evidence says it beats the log (204)."""
    personalizer.apply_from_evaluation(get_db(), deployment(), _body())
    return _no_content()


# ---------------------------------------------------------------- feature importances


@bp.put("/featureImportances/<importance_id>")
def create_importance(importance_id: str) -> ResponseReturnValue:
    """Explain the newest model on the range's decisions (computed at once; 200, as Personalizer answers)."""
    personalizer.create_importance(get_db(), deployment(), _id(importance_id), _body())
    return Response(status=200)


@bp.get("/featureImportances/<importance_id>")
def get_importance(importance_id: str) -> ResponseReturnValue:
    """A feature importance: each feature's score, the largest 1."""
    return jsonify(personalizer.importance(get_db(), importance_id))


@bp.get("/featureImportances")
def list_importances() -> ResponseReturnValue:
    """The feature importances, newest first, on one page."""
    top, skip = _page_args()
    return jsonify({"value": personalizer.importances(get_db(), top=top, skip=skip)})


@bp.delete("/featureImportances/<importance_id>")
def delete_importance(importance_id: str) -> ResponseReturnValue:
    """Delete a feature importance (204)."""
    personalizer.delete_importance(get_db(), importance_id)
    return _no_content()


def _id(value: str) -> str:
    if not 0 < len(value) <= 256:
        raise Invalid("id: must be 1 to 256 characters")
    return value
