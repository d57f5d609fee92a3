"""The learning loop's summary: checkpoints, the last windows, and when a curve first holds the target."""

from __future__ import annotations

from bench.direct_learning import first_reaching, summary, valued


def curve(values: list[float]) -> dict[int, float]:
    return {1000 * (index + 1): value for index, value in enumerate(values)}


def test_the_target_counts_once_five_windows_in_a_row_average_it() -> None:
    shares = curve([0.5, 0.95, 0.6, 0.7, 0.8, 0.84, 0.86, 0.86, 0.87, 0.88, 0.9])
    # one window at 0.95 is not enough; windows 6 to 10 average 0.862, windows 5 to 9 0.846
    assert first_reaching(shares, 0.85) == 10_000
    assert first_reaching(shares, 0.95) is None
    assert first_reaching(curve([0.9] * 4), 0.85) is None  # fewer windows than the mean needs


def test_the_summary_names_each_seeds_first_window_at_the_target_or_says_not_by_the_end() -> None:
    runs = {
        1: {"shares": curve([0.9] * 20), "last5": 0.9},
        2: {"shares": curve([0.5] * 20), "last5": 0.5},
    }
    rows = summary(runs, 20_000)
    assert rows["first at 85% (mean of 5 windows)"] == "5k, not by 20k"
    assert rows["share at 5k"].startswith("70% [50%-90%]") and rows["share at 20k"].startswith("70%")
    assert "share at 50k" not in rows
    assert rows["mean of the last 5 windows"] == "0.700 (0.900, 0.500)"


def test_a_click_is_worth_its_value_only_when_no_play_follows() -> None:
    assert [valued(clicked, played, 0.25) for clicked, played in ((False, False), (True, False), (True, True))] == [
        0.0,
        0.25,
        1.0,
    ]
    assert valued(True, False, 0.0) == 0.0  # the loop's default: plays only, as the learning benchmark rewards
