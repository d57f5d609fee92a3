"""The evaluation report page: its charts put every estimate where its axis says, and names stay text."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from typing import Any

import pytest

from bandits.evaluate import offline, runs
from tests.helpers import run_to_the_end
from tests.worlds import LoggedWorld

SVG = "{http://www.w3.org/2000/svg}"
HOSTILE = "<script>alert('x')</script> & co"
REQUEST = {
    "policy": "artwork",
    "segment_by": "segment",
    "candidates": [
        "logged",
        "uniform",
        "greedy",
        {"name": "crossed", "kind": "vw", "vw_args": "-q UA -q GA -l 0.05", "epsilon": 0.05},
        {"name": HOSTILE, "kind": "vw", "vw_args": "-q UA", "epsilon": 1.0},
    ],
}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> LoggedWorld:
    return LoggedWorld(tmp_path_factory.mktemp("reports"), events=400)


@pytest.fixture(scope="module")
def finished(world: LoggedWorld) -> dict[str, Any]:
    return run_to_the_end(world.client, REQUEST)


def charts(html: str) -> dict[str, ET.Element]:
    """Parse every inline SVG chart of a page, by its data-chart name."""
    found = {}
    for block in re.findall(r"<svg .*?</svg>", html, flags=re.S):
        element = ET.fromstring(block)
        found[element.get("data-chart")] = element
    return found


def scale(chart: ET.Element, attribute: str) -> Any:
    """Return the map from pixels back to values, read off the chart's own tick labels."""
    ticks = [
        (float(t.get(attribute)), float(t.get("data-tick"))) for t in chart.iter(f"{SVG}text") if t.get("data-tick")
    ]
    assert len(ticks) >= 3
    (p0, v0), (p1, v1) = ticks[0], ticks[-1]
    return lambda pixel: v0 + (float(pixel) - p0) * (v1 - v0) / (p1 - p0)


def test_the_charts_draw_the_reported_figures(world, finished):
    response = world.client.get(f"/evaluations/{finished['id']}")
    assert response.status_code == 200 and response.mimetype == "text/html"
    html = response.get_data(as_text=True)
    report = finished["result"]
    found = charts(html)
    assert set(found) == {"estimates", "lift", "over time"}

    value_of = scale(found["estimates"], "data-x")
    rows = {row.get("data-name"): row for row in found["estimates"].iter(f"{SVG}g")}
    assert list(rows) == [entry["name"] for entry in report["candidates"]]
    for entry in report["candidates"]:
        row, dr = rows[entry["name"]], entry["estimates"]["dr"]
        ci = row.find(f"{SVG}line")
        assert value_of(ci.get("x1")) == pytest.approx(dr["ci_low"], abs=1e-4)
        assert value_of(ci.get("x2")) == pytest.approx(dr["ci_high"], abs=1e-4)
        assert value_of(row.find(f"{SVG}circle").get("cx")) == pytest.approx(dr["value"], abs=1e-4)
        markers = {m.get("data-marker"): value_of(m.get("x")) for m in row.iter(f"{SVG}text") if m.get("data-marker")}
        for name in ("ips", "snips", "dm"):
            assert markers[name] == pytest.approx(entry["estimates"][name]["value"], abs=1e-4)
    reference = next(line for line in found["estimates"].iter(f"{SVG}line") if line.get("class") == "reference")
    assert value_of(reference.get("x1")) == pytest.approx(report["mean_reward"], abs=1e-4)

    lift_of = scale(found["lift"], "data-x")
    for row in found["lift"].iter(f"{SVG}g"):
        lift = next(e for e in report["candidates"] if e["name"] == row.get("data-name"))["lift_over_logged"]
        ci = row.find(f"{SVG}line")
        assert (lift_of(ci.get("x1")), lift_of(ci.get("x2"))) == pytest.approx(
            (lift["ci_low"], lift["ci_high"]), abs=1e-4
        )

    y_of = scale(found["over time"], "data-y")
    series = {g.get("data-name"): g for g in found["over time"].iter(f"{SVG}g")}
    for entry in report["candidates"]:
        drawn = [y_of(point.get("cy")) for point in series[entry["name"]].iter(f"{SVG}circle")]
        assert drawn == pytest.approx([point["dr"]["value"] for point in entry["over_time"]], abs=1e-4)
        assert len(drawn) == offline.TIME_BUCKETS


def test_the_table_says_which_candidates_apply_would_take(world, finished):
    html = world.client.get(f"/evaluations/{finished['id']}").get_data(as_text=True)
    verdicts = dict(re.findall(r'<tr data-name="([^"]+)">.*?<td class="apply">([^<]+)</td>', html, flags=re.S))
    assert verdicts["logged"] == verdicts["uniform"] == "baseline" and verdicts["greedy"] == "never explores"
    crossed = next(e for e in finished["result"]["candidates"] if e["name"] == "crossed")
    expected = (
        "not shown better"
        if crossed["estimates"]["dr"]["ci_low"] <= finished["result"]["mean_reward"]
        else "fragile interval"
        if crossed["weight_tail"]["fragile"]
        else "beats logged"
    )
    assert verdicts["crossed"] == expected
    # What the page says, the service does.
    response = world.client.post(f"/v1/evaluations/{finished['id']}/apply", json={"candidate": HOSTILE})
    assert response.status_code == 409 and "not shown better" in html


def test_names_are_shown_as_text_never_as_markup(world, finished):
    html = world.client.get(f"/evaluations/{finished['id']}").get_data(as_text=True)
    assert "<script>" not in html and "&lt;script&gt;alert(" in html


def test_unfinished_failed_and_unknown_runs(world, finished):
    queued = runs.create(world.db, offline.parse_spec({"policy": "titles"}))  # no process works on it
    page = world.client.get(f"/evaluations/{queued}").get_data(as_text=True)
    assert 'http-equiv="refresh"' in page and 'role="progressbar"' in page and "waiting to start" in page
    runs._finish(world.db, queued, status="failed", error="since: the range holds 0 closed decisions")
    page = world.client.get(f"/evaluations/{queued}").get_data(as_text=True)
    assert "since: the range holds 0 closed decisions" in page and "refresh" not in page
    missing = world.client.get("/evaluations/ev-missing")
    assert missing.status_code == 404 and "No evaluation ev-missing" in missing.get_data(as_text=True)
    listing = world.client.get("/evaluations").get_data(as_text=True)
    assert f'href="/evaluations/{finished["id"]}"' in listing and f'href="/evaluations/{queued}"' in listing


def test_marker_letters_never_overlap_on_one_side_of_a_row():
    from service import charts

    rows = [
        {"name": "a", "value": 0.30, "ci_low": 0.2, "ci_high": 0.4, "ips": 0.301, "snips": 0.302, "dm": 0.303},
        {"name": "b", "value": 0.30, "ci_low": 0.2, "ci_high": 0.4, "ips": 0.1, "snips": 0.5, "dm": 0.9},
    ]
    chart = charts.interval_chart(rows, reference=None, reference_label="", markers=("ips", "snips", "dm"))
    for row in chart.rows:
        for side in charts.MARKER_SIDES:
            xs = sorted(marker["x"] for marker in row["markers"] if marker["dy"] == side)
            gaps = [b - a for a, b in zip(xs, xs[1:])]
            # two sides hold two letters apart; a third letter that close has nowhere else to go
            assert all(gap >= charts.MARKER_SPACE for gap in gaps) or len(row["markers"]) > len(charts.MARKER_SIDES)
    close = chart.rows[0]["markers"]
    assert {marker["dy"] for marker in close[:2]} == set(charts.MARKER_SIDES)  # IPS above, SNIPS below
    assert all(marker["dy"] == charts.MARKER_SIDES[0] for marker in chart.rows[1]["markers"])  # far apart: all above


@pytest.mark.parametrize("top", [0.46, 0.4243, 0.09, 1.0, 37.0])
def test_a_line_chart_ends_at_a_labelled_tick_so_no_line_runs_above_the_last_label(top):
    from service import charts

    chart = charts.line_chart([("oracle", [(0, top * 0.9), (1000, top)]), ("uniform", [(0, 0.0), (1000, top / 3)])])
    ticks = chart.y_axis.ticks(charts.Y_TICKS)
    assert ticks[-1][0] == pytest.approx(chart.plot_top)  # the highest label is the top of the plot
    assert min(point["y"] for series in chart.series for point in series["points"]) >= chart.plot_top
