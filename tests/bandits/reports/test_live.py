"""The live view: every served row and reward counted once, in buckets; bad parameters named; the page renders."""

from __future__ import annotations

import pytest

from bandits.reports import live


def serve(client, rows: int, *, reward_every: int = 3) -> list[dict]:
    bodies = []
    for index in range(rows):
        body = client.post("/v1/rank", json={"slots": 3, "user": {"id": f"u{index}"}}).get_json()
        if index % reward_every == 0:
            first = body["slots"][0]["title_id"]
            for value in (1.0, 0.5):  # two rewards for one title count once
                client.post(f"/v1/events/{body['event_id']}/reward", json={"title_id": first, "value": value})
            client.post(
                f"/v1/events/{body['event_id']}/reward", json={"title_id": body["slots"][1]["title_id"], "value": -1.0}
            )  # not a positive reward
        bodies.append(body)
    return bodies


def test_an_empty_log(client, catalog):
    view = client.get("/v1/live").get_json()
    assert view["events"] == 0 and view["buckets"] == []
    assert view["models"]["titles"]["version"] == 0 and view["models"]["artwork"]["events_waiting"] == 0
    page = client.get("/live")
    assert page.status_code == 200 and "Nothing served yet" in page.get_data(as_text=True)


def test_every_row_and_reward_is_counted_once(client, catalog, db):
    serve(client, 23)
    view = client.get("/v1/live?points=5").get_json()
    buckets = view["buckets"]
    assert view["events"] == 23 and view["events_per_bucket"] == 5
    assert [b["events"] for b in buckets] == [5, 5, 5, 5, 3]
    assert [b["partial"] for b in buckets] == [False] * 4 + [True]  # the newest bucket is still filling
    assert sum(b["shown"] for b in buckets) == 69 == buckets[-1]["impressions"]
    assert sum(b["rewarded"] for b in buckets) == 8  # rows 0, 3, ..., 21
    explored = db.execute("SELECT SUM(title_explored), SUM(artwork_explored) FROM impressions").fetchone()
    assert (sum(b["title_explored"] for b in buckets), sum(b["artwork_explored"] for b in buckets)) == tuple(explored)
    assert [b["impressions"] for b in buckets] == [15, 30, 45, 60, 69]
    assert buckets[0]["rewarded_share"] == pytest.approx(2 / 15)  # rows 0 and 3
    assert view["models"]["titles"]["events_waiting"] == 23 and view["rows_last_minute"] == 23


def test_the_span_is_the_most_recent_rows(client, catalog):
    serve(client, 12)
    view = client.get("/v1/live?span=5&points=5").get_json()
    buckets = view["buckets"]
    assert [b["events"] for b in buckets] == [1] * 5
    assert buckets[0]["impressions_before"] == 7 * 3 and buckets[-1]["impressions"] == 36
    assert [b["rewarded"] for b in buckets] == [0, 0, 1, 0, 0]  # rows 7 to 11, of which row 9 was rewarded


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("points=0", "points: must be a whole number from 1 to 200, got 0"),
        ("points=ten", "points: must be a whole number from 1 to 200, got 'ten'"),
        ("span=1000000", "span: must be a whole number from 1 to 100000, got 1000000"),
    ],
)
def test_bad_parameters_are_named(client, catalog, query, message):
    for path in ("/v1/live", "/live"):
        response = client.get(f"{path}?{query}")
        assert response.status_code == 422 and response.get_json()["error"]["message"] == message


def test_the_page_draws_the_curves_and_refreshes_its_body(client, catalog):
    serve(client, 30)
    page = client.get("/live?points=6").get_data(as_text=True)
    assert '<div id="live" data-refresh="3">' in page and "fetch(window.location.pathname" in page
    assert page.count('data-chart="rewarded share"') == 1 and page.count('data-chart="explored share"') == 1
    assert page.count('<circle class="point"') == 6 * 3  # six buckets: one rewarded series, two explored
    fragment = client.get("/live?points=6&fragment=1").get_data(as_text=True)
    assert "<html" not in fragment and 'data-chart="rewarded share"' in fragment
    assert 'data-policy="titles"' in fragment


def test_a_bucket_still_filling_is_not_drawn_and_the_page_says_so(client, catalog):
    serve(client, 31)  # three full buckets of ten rows, and one row in a fourth
    page = client.get("/live?points=6").get_data(as_text=True)
    assert page.count('<circle class="point"') == 3 * 3  # the full buckets only: one row would draw a spike
    assert 'The newest 1 row, a point still filling, <span data-filling="1">are not drawn yet</span>' in page


def test_bucket_sizes_are_round():
    assert [live.bucket_size(n, 60) for n in (1, 59, 61, 130, 1000, 100_000)] == [1, 1, 2, 5, 20, 2000]
