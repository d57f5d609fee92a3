"""The dashboard in a real browser (Debian's chromium through Selenium) against real gunicorn workers.

Screenshots go to ``$MARQUEE_ARTIFACTS`` (default ``test-artifacts/`` in the checkout, ignored by
git). Without chromium and chromedriver the browser tests skip, unless ``MARQUEE_BROWSER_TESTS`` is
``required`` (``.ci/run`` installs both and sets it), where their absence fails the suite.
"""

from __future__ import annotations

import os
import random
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium.webdriver.support.wait import WebDriverWait

from bandits.storage import connect
from tests.gunicorn_harness import ROOT, Service, wait_until_learned

CHARTS = {"traffic", "clicked", "played", "evaluation", "exposure", "importance-titles", "importance-artwork"}
ARTIFACTS = Path(os.environ.get("MARQUEE_ARTIFACTS", ROOT / "test-artifacts"))


def _browser_paths() -> tuple[str, str] | None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (chromium, driver) if chromium and driver else None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    paths = _browser_paths()
    if paths is None:
        message = "chromium and chromedriver are not installed (Debian: apt-get install chromium chromium-driver)"
        if os.environ.get("MARQUEE_BROWSER_TESTS") == "required":
            pytest.fail(message)
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service as DriverService

    options = webdriver.ChromeOptions()
    options.binary_location = paths[0]
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1000"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=DriverService(paths[1]), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def _screenshot(browser: Any, name: str) -> Path:
    """Save the whole page, resized to its height, as ``<ARTIFACTS>/<name>.png``."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(1280, max(800, int(height) + 40))
    path = ARTIFACTS / f"{name}.png"
    assert browser.save_screenshot(str(path))
    return path


def _console_problems(browser: Any) -> list[dict[str, Any]]:
    return [entry for entry in browser.get_log("browser") if entry["level"] in ("SEVERE", "WARNING")]


def _open(browser: Any, url: str) -> None:
    browser.get_log("browser")  # drop what earlier pages logged
    browser.get(url)
    browser.execute_script("return document.readyState")


def _traffic(service: Service, rows: int, seed: int) -> None:
    rng = random.Random(seed)
    taste = {"night-owl": "dark", "family": "bright"}
    for _ in range(rows):
        segment = rng.choice(list(taste))
        status, body = service.request(
            "POST",
            "/v1/rank",
            {"user": {"id": f"u{rng.randrange(80)}", "features": {"segment": segment, "device": "tv"}}, "slots": 4},
        )
        assert status == 200, body
        for slot in body["slots"]:
            liked = taste[segment] in slot["artwork_id"] or rng.random() < 0.1
            if rng.random() < (0.5 if liked else 0.15):
                url = f"/v1/events/{body['event_id']}/reward"
                assert service.request("POST", url, {"title_id": slot["title_id"], "type": "click"})[0] == 201
                if rng.random() < 0.5:
                    assert service.request("POST", url, {"title_id": slot["title_id"], "type": "play"})[0] == 201


OVERLAPS = """
const found = [];
for (const svg of document.querySelectorAll('svg[data-chart]')) {
  const texts = [...svg.querySelectorAll('text')].filter(t => t.textContent.trim());
  const boxes = texts.map(t => t.getBoundingClientRect());
  for (let i = 0; i < boxes.length; i++) for (let j = i + 1; j < boxes.length; j++) {
    const a = boxes[i], b = boxes[j];
    const w = Math.min(a.right, b.right) - Math.max(a.left, b.left);
    const h = Math.min(a.bottom, b.bottom) - Math.max(a.top, b.top);
    if (w > 1 && h > 1) found.push([svg.dataset.chart, texts[i].textContent.trim(), texts[j].textContent.trim()]);
  }
}
return found;
"""


def _overlapping_text(browser: Any) -> list[list[str]]:
    """Pairs of text boxes that overlap in a chart of the open page (chart, one text, the other)."""
    return browser.execute_script(OVERLAPS)


@pytest.mark.slow
def test_dashboard_renders_every_chart_without_console_errors(browser, tmp_path: Path):
    service = Service(
        tmp_path / "data", env={"MARQUEE_REWARD_WAIT_SECONDS": "1", "MARQUEE_LEARNER_INTERVAL_SECONDS": "0.2"}
    )
    service.flask("demo-catalog", "--titles", "16", "--seed", "4")
    service.start()
    try:
        # An empty log first: the page says what is missing instead of drawing empty charts.
        _open(browser, f"http://127.0.0.1:{service.port}/dashboard")
        assert browser.title.startswith("Dashboard")
        assert {e.get_attribute("data-empty") for e in browser.find_elements("css selector", "[data-empty]")} >= {
            "traffic",
            "rates",
            "evaluation",
            "exposure",
            "importance",
            "optimizations",
        }
        assert _console_problems(browser) == []
        _screenshot(browser, "dashboard-empty")

        # Two rounds of traffic: the second is served by learned models, which explore around their best.
        db = connect(tmp_path / "data" / "marquee.sqlite3")
        _traffic(service, 200, seed=9)
        wait_until_learned(db, 200)
        time.sleep(1.5)  # every worker loads the newest models within about a second
        _traffic(service, 300, seed=10)
        wait_until_learned(db, 500)
        explored = db.execute("SELECT SUM(title_explored OR artwork_explored) FROM impressions").fetchone()[0]
        db.close()
        assert explored > 20
        status, accepted = service.request(
            "POST", "/v1/evaluations", {"policy": "artwork", "candidates": ["logged", "uniform", "greedy"]}
        )
        assert status == 202, accepted
        deadline = time.monotonic() + 180
        while service.request("GET", f"/v1/evaluations/{accepted['id']}")[1]["status"] not in ("done", "failed"):
            assert time.monotonic() < deadline
            time.sleep(0.5)
        assert service.request("GET", f"/v1/evaluations/{accepted['id']}")[1]["status"] == "done"
        # An optimization, in its own process started by a worker: decided on the same log.
        status, optimization = service.request("POST", "/v1/optimizations", {"policy": "artwork"})
        assert status == 202, optimization
        while (decided := service.request("GET", f"/v1/optimizations/{optimization['id']}")[1])["status"] == "running":
            assert time.monotonic() < deadline + 180
            time.sleep(0.5)
        assert decided["status"] in ("applied", "kept"), decided

        browser.set_window_size(1280, 1000)
        _open(browser, f"http://127.0.0.1:{service.port}/dashboard")
        charts = {
            svg.get_attribute("data-chart"): svg for svg in browser.find_elements("css selector", "svg[data-chart]")
        }
        assert set(charts) == CHARTS
        for name, svg in charts.items():
            assert svg.is_displayed(), name
            assert svg.size["width"] > (300 if name.startswith("importance") else 600), (name, svg.size)
            assert svg.size["height"] > 100, (name, svg.size)
            drawn = browser.execute_script("return arguments[0].querySelectorAll('path, use, rect').length", svg)
            assert drawn > 10, (name, drawn)  # axes, ticks and the data itself
        assert browser.find_elements("css selector", "[data-empty]") == []
        legend = charts["clicked"].text
        assert f"explore ({explored:,} impressions)" in legend and "exploit (" in legend, legend
        images = browser.find_elements("css selector", "table[data-table=winners] img")
        assert len(images) >= 2 * 6  # two segments, six titles
        # Thumbnails are rendered on first request: wait for every one to finish loading, then check it decoded.
        WebDriverWait(browser, 60).until(
            lambda b: all(b.execute_script("return arguments[0].complete", i) for i in images)
        )
        for image in images:
            assert browser.execute_script("return arguments[0].naturalWidth", image) == 92
        segments = [
            row.text.split("\n")[0] for row in browser.find_elements("css selector", "table[data-table=winners] tr")[1:]
        ]
        assert set(segments) == {"night-owl", "family"}
        versions = browser.find_elements("css selector", "table[data-table=models] tr")
        assert len(versions) == 1 + 3  # header, titles, artwork, actions
        assert _overlapping_text(browser) == []  # no label, tick or legend printed over another
        rows = browser.find_elements("css selector", "table[data-table=optimizations] tr")
        assert len(rows) == 2 and decided["status"] in rows[1].text, [row.text for row in rows]
        assert _console_problems(browser) == []
        path = _screenshot(browser, "dashboard")
        assert path.stat().st_size > 50_000
        # On a 480 px phone nothing is wider than the screen: wide tables scroll inside themselves.
        browser.set_window_size(480, 1000)
        _open(browser, f"http://127.0.0.1:{service.port}/dashboard")
        width = browser.execute_script("return [document.documentElement.scrollWidth, window.innerWidth]")
        assert width[0] <= width[1], width
        browser.set_window_size(1280, 1000)
        _open(browser, f"http://127.0.0.1:{service.port}/optimizations")
        candidates = browser.find_elements("css selector", f"[data-optimization='{decided['id']}'] table tr")
        assert [row.text.split()[0] for row in candidates[1:]] == [c["name"].split()[0] for c in decided["candidates"]]
        assert decided["reason"] in browser.find_element("css selector", f"[data-optimization='{decided['id']}']").text
        assert _console_problems(browser) == []
    finally:
        service.stop()


def test_dashboard_span_is_checked(client):
    response = client.get("/dashboard?span=5")
    assert response.status_code == 422 and "span" in response.get_json()["error"]["message"]
    assert client.get("/dashboard?span=lots").status_code == 422
    page = client.get("/dashboard?segment=device")
    assert page.status_code == 200 and b"Dashboard" in page.data


def test_a_segment_feature_nobody_has_is_named_with_those_that_exist(client):
    from tests.helpers import add_catalog

    add_catalog(client, titles=3)
    client.post("/v1/rank", json={"user": {"features": {"device": "tv", "country": "BR"}}, "slots": 2})
    page = client.get("/dashboard?segment=nosuch").get_data(as_text=True)
    assert "No ranked row has the viewer feature <code>nosuch</code>" in page
    assert (
        '<a href="?segment=country"><code>country</code></a>, <a href="?segment=device"><code>device</code></a>' in page
    )


def test_traffic_leaves_gaps_across_idle_spells_and_no_rate_from_a_handful_of_rows():
    from bandits.reports.dashboard import RateBucket, traffic

    def bucket(since: float, until: float, events: int) -> RateBucket:
        return RateBucket(since=since, until=until, events=events, shown={}, clicked={}, played={}, size=100)

    # 100 rows a minute for three buckets, an hour idle, two more, then 3 rows in the newest bucket.
    buckets = [
        bucket(0, 59.4, 100),
        bucket(60, 119.4, 100),
        bucket(120, 179.4, 100),
        bucket(3780, 3839.4, 100),
        bucket(3840, 3899.4, 100),
        bucket(3900, 3900.5, 3),
    ]
    points = traffic(buckets)
    rates = [rate for _, rate in points]
    assert rates == [pytest.approx(100.0)] * 3 + [None] + [pytest.approx(100.0)] * 2  # no line across the hour
    assert points[3][0] == pytest.approx((179.4 + 3780) / 2)
    assert len(points) == 6  # the newest bucket, 3 rows in half a second, is not drawn as 360 rows a minute
