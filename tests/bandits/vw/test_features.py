"""The VW text format: escaping, feature encoding and labels."""

from __future__ import annotations

import math

import numpy as np
import pytest
import vowpal_wabbit_next as vw
from hypothesis import given
from hypothesis import strategies as st

from bandits.vw import features
from tests.helpers import ROOT


@given(st.text(max_size=30), st.text(max_size=30))
def test_escape_is_injective_and_leaves_no_separator(a, b):
    ea, eb = features.escape(a), features.escape(b)
    assert (ea == eb) == (a == b)
    assert not any(ch in ea for ch in " \t\n\r|:")


@given(
    st.dictionaries(
        st.text(min_size=1, max_size=10),
        st.one_of(
            st.text(max_size=10),
            st.floats(allow_nan=False, allow_infinity=False, width=32),
            st.lists(st.text(max_size=5), max_size=3),
        ),
        max_size=6,
    )
)
def test_any_valid_features_parse_in_vw(feats):
    workspace = vw.Workspace(["--cb_adf"])
    parser = vw.TextFormatParser(workspace)
    shared = features.viewer_shared(user_id="u 1|x:y", features=feats)
    examples = [parser.parse_line(shared), parser.parse_line(features.labeled("|T id=t1", cost=-1, probability=0.5))]
    workspace.learn_one(examples)
    scores = workspace.predict_one([parser.parse_line(shared), parser.parse_line("|T id=t1")])
    assert all(math.isfinite(score) for _, score in scores)


def test_tokens():
    tokens = features.feature_tokens({"country": "BR", "hour": 21, "zero": 0, "hist": ["a b", "c"], "tv": True})
    assert tokens == ["country=BR", "hist=a%20b", "hist=c", "hour:21", "hour=#21", "tv=true", "zero=#0"]
    assert features.feature_tokens({"a=b": "c"}) == ["a%3Db=c"]
    with pytest.raises(ValueError):
        features.feature_tokens({"x": float("inf")})


@pytest.mark.parametrize(
    ("number", "expected"),
    [
        (21, "#21"),
        (0, "#0"),
        (-7, "#-7"),
        (100.0, "#100"),
        (101, "#~6.5"),
        (63.5, "#~6"),
        (0.37, "#~0.5"),
        (-3.5, "#-~2"),
        (1e12, "#~40"),
    ],
)
def test_numbers_get_a_bucket_small_integers_their_own(number, expected):
    assert features.bucket(float(number)) == expected


def test_numbers_of_one_half_octave_share_a_bucket_and_the_next_does_not():
    assert features.bucket(55.5) == features.bucket(74.5) != features.bucket(80.5)
    assert features.bucket(900.5) != features.bucket(450.5)


def test_title_and_labels():
    line = features.title_action(
        {"id": "t1", "genres": ["sci fi"], "year": 1987, "maturity": "R", "features": {"studio": "N"}}
    )
    assert line == "|T id=t1 decade=1980s maturity=R f.studio=N |G sci%20fi"
    assert features.labeled("|A id=a", cost=-1.0, probability=0.0) == "0:-1:1e-06 |A id=a"
    with pytest.raises(ValueError):
        features.labeled("|A id=a", cost=float("nan"), probability=0.5)
    assert features.with_position("shared |U a=b", 3) == "shared |U a=b |P pos=3"


def _greedy_by_hour(monkeypatch: pytest.MonkeyPatch, *, buckets: bool) -> dict[int, str]:
    """Learn a taste not linear in the hour (kids' title 15:00-19:59, the late title otherwise).

    Return the greedy title per hour.
    """
    from bandits.model.policy import DEFAULT_VW_ARGS, TITLES, new_workspace
    from bandits.vw.workspace import TextExamples

    monkeypatch.setattr(features, "NUMERIC_BUCKETS", buckets)
    titles = {
        "kids": features.title_action({"id": "kids", "genres": ["animation"]}),
        "late": features.title_action({"id": "late", "genres": ["horror"]}),
    }
    examples = TextExamples(new_workspace(DEFAULT_VW_ARGS[TITLES]))
    rng = np.random.default_rng(4)
    for _ in range(3000):
        hour = int(rng.integers(24))
        shown = "kids" if rng.random() < 0.5 else "late"
        liked = "kids" if 15 <= hour <= 19 else "late"
        reward = float(rng.random() < (0.6 if shown == liked else 0.1))
        shared = features.with_position(features.viewer_shared(user_id=None, features={"hour": hour}), 0)
        lines = [
            features.labeled(line, cost=features.COST_PER_REWARD * reward, probability=0.5) if name == shown else line
            for name, line in titles.items()
        ]
        examples.learn([shared, *lines])
    greedy = {}
    for hour in range(24):
        shared = features.with_position(features.viewer_shared(user_id=None, features={"hour": hour}), 0)
        costs = dict(examples.predict([shared, *titles.values()]))
        greedy[hour] = list(titles)[min(costs, key=costs.__getitem__)]
    return greedy


def test_an_unscaled_number_with_a_taste_of_any_shape_is_learned(monkeypatch):
    expected = {hour: "kids" if 15 <= hour <= 19 else "late" for hour in range(24)}
    greedy = _greedy_by_hour(monkeypatch, buckets=True)
    assert sum(greedy[hour] == expected[hour] for hour in range(24)) >= 23, greedy
    # As a numeric feature alone the hour gives each title one slope: a window in mid-day cannot be carved out.
    linear = _greedy_by_hour(monkeypatch, buckets=False)
    assert sum(linear[hour] == expected[hour] for hour in range(24)) <= 20, linear


def test_the_reward_to_cost_flip_has_one_home():
    root = ROOT
    flips = [
        str(path.relative_to(root))
        for package in ("service", "bandits", "assets", "bench")
        for path in (root / package).rglob("*.py")
        if "COST_PER_REWARD" in path.read_text() and path.name != "features.py"
    ]
    assert flips == []
    assert features.cost_of(1.0) == -1.0 and features.reward_of(features.cost_of(0.7)) == 0.7
    assert math.copysign(1.0, features.cost_of(0.0)) == 1.0  # never -0, which VW's text would carry as "-0"
    assert math.copysign(1.0, features.reward_of(0.0)) == 1.0


def test_a_label_reads_back_as_it_was_written():
    line = features.labeled("|A id=a", cost=features.cost_of(0.25), probability=0.125)
    assert features.label_of(line) == (-0.25, 0.125)
    assert features.unlabeled(line) == "|A id=a"
    assert features.label_of("|A id=a") is None


def test_a_line_splits_into_the_namespaces_it_was_written_with():
    shared = features.viewer_shared(user_id="u1", features={"segment": "night owl", "hour": 21.5})
    found = features.sections(shared)
    assert [name for name, _ in found] == [section.split(" ", 1)[0] for section in shared.split("|")[1:]]
    assert " ".join(features.namespace(name, tokens) for name, tokens in found) == features.without_shared(shared)
    assert features.token_value("hour:21.5") == ("hour", 21.5) and features.token_value("segment=x") == (
        "segment=x",
        None,
    )
    assert features.sections("0:-1:0.5 |A id=a |B") == [("A", ["id=a"]), ("B", [])]


def test_taste_classes_go_in_their_own_namespace_after_the_id_and_before_the_position():
    shared = features.viewer_shared(user_id="u1", features={"device": "tv"}, tastes={"c0": 0.93, "c3": 0.07})
    assert shared == "shared |U device=tv |I id=u1 |K c0:0.93 c3:0.07"
    slot = features.with_position(shared, 2)
    assert features.without_position(slot) == shared
    assert dict(features.sections(slot))["K"] == ["c0:0.93", "c3:0.07"]
    assert features.viewer_shared(user_id="u1", features={"device": "tv"}, tastes={}) == "shared |U device=tv |I id=u1"
