"""The VW text format: escaping, feature encoding and labels."""

from __future__ import annotations

import math

import pytest
import vowpal_wabbit_next as vw
from hypothesis import given
from hypothesis import strategies as st

from bandits import features


@given(st.text(max_size=30), st.text(max_size=30))
def test_escape_is_injective_and_leaves_no_separator(a, b):
    ea, eb = features.escape(a), features.escape(b)
    assert (ea == eb) == (a == b)
    assert not any(ch in ea for ch in " \t\n\r|:")


@given(st.dictionaries(st.text(min_size=1, max_size=10),
                       st.one_of(st.text(max_size=10), st.floats(allow_nan=False, allow_infinity=False, width=32),
                                 st.lists(st.text(max_size=5), max_size=3)), max_size=6))
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


@pytest.mark.parametrize(("number", "expected"), [
    (21, "#21"), (0, "#0"), (-7, "#-7"), (100.0, "#100"), (101, "#~6.5"), (63.5, "#~6"), (0.37, "#~0.5"),
    (-3.5, "#-~2"), (1e12, "#~40"),
])
def test_numbers_get_a_bucket_small_integers_their_own(number, expected):
    assert features.bucket(float(number)) == expected


def test_numbers_of_one_half_octave_share_a_bucket_and_the_next_does_not():
    assert features.bucket(55.5) == features.bucket(74.5) != features.bucket(80.5)
    assert features.bucket(900.5) != features.bucket(450.5)


def test_title_and_labels():
    line = features.title_action({"id": "t1", "genres": ["sci fi"], "year": 1987, "maturity": "R",
                                  "features": {"studio": "N"}})
    assert line == "|T id=t1 decade=1980s maturity=R f.studio=N |G sci%20fi"
    assert features.labeled("|A id=a", cost=-1.0, probability=0.0) == "0:-1:1e-06 |A id=a"
    with pytest.raises(ValueError):
        features.labeled("|A id=a", cost=float("nan"), probability=0.5)
    assert features.with_position("shared |U a=b", 3) == "shared |U a=b |P pos=3"
