"""``/dashboard``: the service at a glance, every chart drawn here (matplotlib, ``service.plots``)."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from flask import Blueprint, current_app, render_template, request
from flask.typing import ResponseReturnValue

from bandits.evaluate import optimize, runs
from bandits.log import eventlog
from bandits.model.policy import ARTWORK, POLICY_NAMES, latest_model
from bandits.reports import dashboard, exposure
from service.config import deployment
from service.db import get_db
from service.errors import Invalid
from service.runtime import serving_state
from service.views.policies import feature_importance

bp = Blueprint("dashboard", __name__)

POINTS = 30
IMPORTANCE_DECISIONS = 200  # recent decisions explained for the feature-importance charts


def _span() -> int:
    raw = request.args.get("span", "20000")
    try:
        span = int(raw)
    except ValueError:
        raise Invalid(f"span: must be a whole number from 100 to {dashboard.MAX_EVENTS}, got {raw!r}") from None
    if not 100 <= span <= dashboard.MAX_EVENTS:
        raise Invalid(f"span: must be a whole number from 100 to {dashboard.MAX_EVENTS}, got {span}")
    return span


def _segment_feature(seen: Any) -> str | None:
    name = request.args.get("segment")
    if name is None:
        return dashboard.common_segment_feature(seen)
    if not 0 < len(name) <= 64:
        raise Invalid("segment: a viewer feature name of 1 to 64 characters")
    return name


def _latest_evaluation(db: Any) -> dict[str, Any] | None:
    for run in runs.recent(db, limit=20):
        if run["status"] == "done":
            return runs.get(db, run["id"])
    return None


@bp.get("/dashboard")
def dashboard_page() -> ResponseReturnValue:
    """Traffic, click and play rates by explore/exploit, models and learner lag, winning artwork per
    segment, the newest offline evaluation, and exposure fairness."""
    from service import plots  # matplotlib loads on the first visit, not in every worker at start

    span, db, config = _span(), get_db(), current_app.config
    seen = dashboard.text_features(db)
    feature = _segment_feature(seen)
    state = serving_state(config["DATABASE"])
    state.refresh(db, deployment(), wait_for_models=False)
    now = time.time()
    charts: dict[str, str] = {}

    buckets = dashboard.rates(db, points=POINTS, span=span)
    if buckets:
        middle = [(b.since + b.until) / 2 for b in buckets]
        flow = dashboard.traffic(buckets)
        charts["traffic"] = plots.time_series(
            "traffic", [("rows per minute", [t for t, _ in flow], [r for _, r in flow])], ylabel="rows per minute"
        )
        for what, label in (("clicked", "click rate"), ("played", "play rate")):
            charts[what] = plots.time_series(
                what,
                [
                    (
                        f"{arm} ({sum(b.shown.get(arm, 0) for b in buckets):,} impressions)",
                        middle,
                        [b.rate(what, arm) for b in buckets],
                    )
                    for arm in ("exploit", "explore")
                ],
                ylabel=label,
                percent=True,
            )

    models = []
    for name in POLICY_NAMES:
        record = latest_model(db, name)
        serving = state.models.get(name)
        models.append(
            {
                "name": name,
                "version": record.version if record else None,
                "age_seconds": now - record.created_at if record else None,
                "serving_version": serving.version if serving else None,
                "settings": state.policies[name] if name in state.policies else None,
                **eventlog.policy_stats(db, name, now=now),
            }
        )

    winners: list[dict[str, Any]] = []
    if feature is not None and state.snapshot is not None and state.snapshot.titles and ARTWORK in state.models:
        values = [value for value, _ in seen.get(feature, Counter()).most_common(6)]
        titles = dashboard.most_shown_titles(db, state.snapshot)
        winners = dashboard.winning_artwork(
            state.snapshot, state.models[ARTWORK], feature=feature, values=values, titles=titles
        )

    importance = {}
    for name in POLICY_NAMES:
        found = feature_importance(db, name, IMPORTANCE_DECISIONS)
        if found["decisions"]:
            importance[name] = found
            charts[f"importance-{name}"] = plots.ranking(
                f"importance-{name}",
                [
                    (f"{item['namespace']}: {item['feature']}", item["mean_abs_contribution"])
                    for item in found["features"][:12]
                ],
                xlabel="mean |contribution| to the estimate",
            )

    evaluation = _latest_evaluation(db)
    if evaluation is not None and evaluation.get("result"):
        report = evaluation["result"]
        rows = []
        for entry in report["candidates"]:
            dr = entry["estimates"]["dr"]
            rows.append((entry["name"], float(dr["value"]), dr.get("ci_low"), dr.get("ci_high")))
        charts["evaluation"] = plots.intervals(
            "evaluation",
            rows,
            reference=float(report["mean_reward"]),
            reference_label="logged policy",
            xlabel="estimated reward per decision (DR, 95% CI)",
        )

    fairness = exposure.report(db, days=7.0, by=["genre"], new_days=7.0, now=now)
    genres = fairness["by"]["genre"][:12]
    if fairness["impressions"]:
        charts["exposure"] = plots.grouped_bars(
            "exposure",
            [row["value"] for row in genres],
            [
                ("catalog share", [row["catalog_share"] for row in genres]),
                ("impression share", [row["impression_share"] for row in genres]),
                ("exposure share", [row["exposure_share"] for row in genres]),
            ],
            ylabel="share",
            percent=True,
        )

    return render_template(
        "dashboard.html",
        charts=charts,
        buckets=buckets,
        models=models,
        feature=feature,
        winners=winners,
        evaluation=evaluation,
        importance=importance,
        fairness=fairness,
        genres=genres,
        span=span,
        optimizations=optimize.recent(db, limit=5),
        generated_at=now,
        unknown_segment=feature if feature is not None and feature not in seen else None,
        segment_features=sorted(seen),
    )
