"""Taste classes: EM finds kinds of viewers from their responses, keeps them across refits, refuses bad input."""

from __future__ import annotations

import numpy as np
import pytest

from bandits.model import tastes

ARTWORKS = [f"a{n}" for n in range(12)]


def planted(seed: int, *, viewers: int = 300, impressions: int = 40) -> tuple[list[tuple[str, str, bool]], dict]:
    """Return impressions of viewers of three kinds, each answering its own four artworks at 0.4 and others at 0.1."""
    rng = np.random.default_rng(seed)
    kind_of = {f"v{n}": n % 3 for n in range(viewers)}
    rows = []
    for viewer, kind in kind_of.items():
        for artwork in rng.choice(len(ARTWORKS), size=impressions):
            liked = artwork // 4 == kind
            rows.append((viewer, ARTWORKS[artwork], bool(rng.random() < (0.4 if liked else 0.1))))
    return rows, kind_of


def agreement(posterior: np.ndarray, viewers: tuple[str, ...], kind_of: dict[str, int]) -> float:
    """Return the share of viewers whose most likely class is the one most of their kind fell in."""
    found = posterior.argmax(axis=1)
    hits = 0
    for kind in set(kind_of.values()):
        members = [i for i, v in enumerate(viewers) if kind_of[v] == kind]
        hits += int(np.bincount(found[members]).max())
    return hits / len(viewers)


def test_records_count_shows_and_responses_by_viewer_and_artwork() -> None:
    records = tastes.Records.of([("v1", "a", True), ("v1", "a", False), ("v2", "a", False), ("v1", "b", True)])
    counted = {
        (records.viewers[v], records.arms[a]): (s, r)
        for v, a, s, r in zip(records.viewer, records.arm, records.shown, records.responded)
    }
    assert counted == {("v1", "a"): (2.0, 1.0), ("v2", "a"): (1.0, 0.0), ("v1", "b"): (1.0, 1.0)}


def test_em_recovers_planted_kinds_and_their_rates() -> None:
    rows, kind_of = planted(1)
    records = tastes.Records.of(rows)
    fitted, posterior = tastes.fit(records, classes=3, seed=1)
    assert posterior.shape == (len(records.viewers), 3)
    np.testing.assert_allclose(posterior.sum(axis=1), 1.0)
    assert agreement(posterior, records.viewers, kind_of) >= 0.9  # one EM step: 0.72
    # Each class answers one block of four artworks at about 0.4 and the rest at about 0.1.
    columns = [records.arms.index(a) for a in ARTWORKS]
    rates = fitted.rates[:, columns]
    for k in range(3):
        block = int(np.argmax([rates[k, 4 * b : 4 * b + 4].mean() for b in range(3)]))
        inside = rates[k, 4 * block : 4 * block + 4]
        outside = np.delete(rates[k], range(4 * block, 4 * block + 4))
        assert inside.mean() == pytest.approx(0.4, abs=0.08)
        assert outside.mean() == pytest.approx(0.1, abs=0.03)
    np.testing.assert_allclose(np.sort(fitted.shares), [1 / 3] * 3, atol=0.05)


def test_a_refit_from_the_previous_fit_keeps_each_class_the_same_kind() -> None:
    rows, kind_of = planted(2)
    first, before = tastes.fit(tastes.Records.of(rows[: len(rows) // 2]), classes=3, seed=5)
    more, _ = planted(3)
    later = tastes.Records.of(rows + more)
    _, after = tastes.fit(later, classes=3, previous=first, seed=99)
    earlier = tastes.Records.of(rows[: len(rows) // 2])
    same = [
        before[earlier.viewers.index(v)].argmax() == after[later.viewers.index(v)].argmax() for v in earlier.viewers
    ]
    assert np.mean(same) >= 0.9


def test_an_artwork_the_previous_fit_did_not_know_starts_at_its_overall_rate() -> None:
    rows, _ = planted(4)
    first, _ = tastes.fit(tastes.Records.of([r for r in rows if r[1] != "a11"]), classes=3, seed=1)
    assert "a11" not in first.arms
    refit, posterior = tastes.fit(tastes.Records.of(rows), classes=3, previous=first, iterations=1)
    assert "a11" in refit.arms and np.all(np.isfinite(posterior))


def test_features_name_the_likely_classes_only() -> None:
    assert tastes.features_of([0.9, 0.06, 0.04]) == {"c0": 0.9, "c1": 0.06}
    assert tastes.features_of([0.5, 0.5], floor=0.6) == {}


def test_the_same_records_and_seed_fit_the_same_classes() -> None:
    records = tastes.Records.of(planted(6)[0])
    first = tastes.fit(records, classes=3, seed=3)
    again = tastes.fit(records, classes=3, seed=3)
    np.testing.assert_array_equal(first[1], again[1])


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"classes": 0}, "classes: at least 1"),
        ({"classes": 2, "iterations": 0}, "iterations: at least 1"),
    ],
)
def test_bad_settings_are_refused_by_name(settings: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        tastes.fit(tastes.Records.of([("v", "a", True)]), **settings)


def test_a_previous_fit_of_another_size_and_impossible_counts_are_refused() -> None:
    records = tastes.Records.of(planted(7, viewers=30)[0])
    two, _ = tastes.fit(records, classes=2)
    with pytest.raises(ValueError, match="previous: 2 classes, not 3"):
        tastes.fit(records, classes=3, previous=two)
    bad = tastes.Records(
        viewers=("v",), arms=("a",), viewer=np.array([0]), arm=np.array([0]), shown=np.array([1.0]),
        responded=np.array([2.0]),
    )  # fmt: skip
    with pytest.raises(ValueError, match="responded to an artwork more often than it was shown"):
        tastes.fit(bad, classes=2)


def test_no_records_fit_to_no_viewers() -> None:
    fitted, posterior = tastes.fit(tastes.Records.of([]), classes=2)
    assert posterior.shape == (0, 2) and fitted.arms == ()
