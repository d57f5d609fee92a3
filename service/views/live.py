"""The live view: ``GET /v1/live`` (JSON) and ``/live``, a page that redraws itself every few seconds."""

from __future__ import annotations

import math
import time
from typing import Any

from flask import Blueprint, render_template, request
from flask.typing import ResponseReturnValue

from bandits.reports import live
from service import charts
from service.db import get_db
from service.errors import Invalid

bp = Blueprint("live", __name__)

REFRESH_SECONDS = 3  # the page's shortest refresh interval
REFRESH_COST_RATIO = 10  # and it waits at least this many times as long as its last query took


def _int_arg(name: str, default: int, low: int, high: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise Invalid(f"{name}: must be a whole number from {low} to {high}, got {raw!r}") from None
    if not low <= value <= high:
        raise Invalid(f"{name}: must be a whole number from {low} to {high}, got {value}")
    return value


def _view() -> dict[str, Any]:
    points = _int_arg("points", 60, 1, live.MAX_POINTS)
    span = _int_arg("span", live.MAX_EVENTS, 1, live.MAX_EVENTS)
    return live.snapshot(get_db(), points=points, span=span)


@bp.get("/v1/live")
def live_json() -> ResponseReturnValue:
    """Return the recent log in buckets (shown, rewarded, explored) and the models serving."""
    return _view()


@bp.get("/live")
def live_page() -> ResponseReturnValue:
    """The live page; with ``?fragment=1`` only the part the page's script swaps in on each refresh."""
    started = time.perf_counter()
    view = _view()
    refresh = max(REFRESH_SECONDS, math.ceil(REFRESH_COST_RATIO * (time.perf_counter() - started)))
    # The newest bucket is still filling: a handful of rows would draw a spike, so it is left out (and said so).
    buckets = [bucket for bucket in view["buckets"] if not bucket["partial"]] or view["buckets"]
    context: dict[str, Any] = {
        "view": view,
        "refresh": refresh,
        "filling": next((b for b in view["buckets"] if b["partial"] and b not in buckets), None),
    }
    if buckets:
        x_low = float(buckets[0]["impressions_before"])
        context["rewarded"] = charts.line_chart(
            [("rewarded share", [(b["impressions"], b["rewarded_share"]) for b in buckets])], height=260, x_low=x_low
        )
        context["explored"] = charts.line_chart(
            [
                ("titles explored", [(b["impressions"], b["title_explored_share"]) for b in buckets]),
                ("artwork explored", [(b["impressions"], b["artwork_explored_share"]) for b in buckets]),
            ],
            height=220,
            x_low=x_low,
        )
        recent = buckets[-1]
        context["recent"] = recent
    template = "live_body.html" if request.args.get("fragment") == "1" else "live.html"
    return render_template(template, **context)
