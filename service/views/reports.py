"""Reports: exposure fairness (JSON), and pages for people: the evaluations and each one's report."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, jsonify, render_template, request
from flask.typing import ResponseReturnValue

from bandits.evaluate import optimize, runs
from bandits.reports import exposure
from service import charts
from service.db import get_db
from service.errors import Invalid

bp = Blueprint("reports", __name__)


def _number_arg(name: str, default: float) -> float:
    raw = request.args.get(name)
    if raw is None:
        return default
    try:
        return float(raw)
    except ValueError:
        raise Invalid(f"{name}: must be a number, got {raw!r}") from None


def exposure_report() -> dict[str, Any]:
    """The exposure report the request's ``days``, ``by`` and ``new_days`` ask for."""
    by = [part.strip() for part in request.args.get("by", "genre").split(",") if part.strip()]
    if not by or len(by) > 10:
        raise Invalid("by: name 1 to 10 attributes, comma-separated")
    return exposure.report(get_db(), days=_number_arg("days", 7.0), by=by, new_days=_number_arg("new_days", 7.0))


@bp.get("/v1/reports/exposure")
def exposure_json() -> ResponseReturnValue:
    """Impression and exposure share against catalog share by attribute, Gini over titles, new titles' first days."""
    return jsonify(exposure_report())


@bp.app_template_filter("utc")
def utc(seconds: float | None) -> str:
    """Format unix seconds as a UTC time for pages."""
    if seconds is None:
        return "-"
    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


@bp.get("/evaluations")
def evaluations_page() -> ResponseReturnValue:
    """List the newest evaluations with links to their reports."""
    return render_template("evaluations.html", evaluations=runs.recent(get_db()))


@bp.get("/evaluations/<run_id>")
def evaluation_page(run_id: str) -> ResponseReturnValue:
    """Show an evaluation: progress while it runs; estimates, lift and the series over time once done."""
    found = runs.get(get_db(), run_id)
    if found is None:
        return render_template("evaluation.html", run=None, run_id=run_id), 404
    context: dict[str, Any] = {"run": found, "run_id": run_id}
    report = found["result"]
    if report is not None:
        mean = float(report["mean_reward"])
        entries = report["candidates"]
        rows = []
        for entry in entries:
            e = entry["estimates"]
            rows.append(
                {
                    "name": entry["name"],
                    **{k: e["dr"].get(k) for k in ("value", "ci_low", "ci_high")},
                    "ips": e["ips"].get("value"),
                    "snips": e["snips"].get("value"),
                    "dm": e["dm"].get("value"),
                }
            )
        context.update(
            report=report,
            estimates=charts.interval_chart(
                rows, reference=mean, reference_label=f"logged {mean:.4f}", markers=("ips", "snips", "dm")
            ),
            lift=charts.interval_chart(
                [{"name": entry["name"], **entry["lift_over_logged"]} for entry in entries],
                reference=0.0,
                reference_label="no change",
            ),
            over_time=charts.series_chart(entries, reference=mean, reference_label="logged overall"),
            applicable={entry["name"]: runs.verdict(entry, mean) for entry in entries},
        )
    return render_template("evaluation.html", **context)


@bp.get("/optimizations")
def optimizations_page() -> ResponseReturnValue:
    """List the newest optimizations: each one's candidates with their DR estimates, its decision and why."""
    db = get_db()
    found = [optimize.get(db, item["id"]) for item in optimize.recent(db, limit=20)]
    return render_template("optimizations.html", optimizations=[item for item in found if item is not None])
