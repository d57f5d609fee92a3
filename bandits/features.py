"""Turn viewer, title and artwork features into Vowpal Wabbit text-format lines.

One module owns the text format. Namespaces (VW keys interactions on their first letter):

* ``U`` viewer features from the request (shared),
* ``I`` the viewer id (shared; not crossed by default, there for ``--lrq IT4``-style configurations),
* ``P`` the slot position (shared; never crossed, so it absorbs position bias when learning and
  leaves the ranking of one row unchanged),
* ``T`` title features: id, decade, maturity, free-form features (an action of the title policy;
  shared context of the artwork policy),
* ``G`` title genres (with ``T``; kept apart so that genre can be crossed without the title id),
* ``A`` artwork features (an action of the artwork policy).

Feature values: a string is a categorical ``name=value``; a number is numeric ``name:value`` and also
categorical by its bucket ``name=#bucket`` (``bucket``), so that effects that are not linear in a
number, or numbers of any scale, are learned too; a list of strings is several categoricals. Names
and values are escaped so that no input can break the format.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

# VW minimizes cost; Marquee reports rewards. The sign flips here, in cost_of and reward_of only.
COST_PER_REWARD = -1.0

# The smallest propensity a label may carry: VW's default `mtr` model turns to NaN on probability 0.
MIN_PROBABILITY = 1e-6

# Numbers also enter as categorical buckets (``bucket``); integers up to this magnitude are their own.
NUMERIC_BUCKETS = True
SMALL_INTEGER = 100

_ESCAPES = {"%": "%25", " ": "%20", "\t": "%09", "\n": "%0A", "\r": "%0D", "|": "%7C", ":": "%3A"}


def escape(text: str) -> str:
    """Escape the characters VW's text format treats specially, injectively (``%`` first)."""
    if not any(ch in text for ch in _ESCAPES):
        return text
    return "".join(_ESCAPES.get(ch, ch) for ch in text)


def escape_name(text: str) -> str:
    """Escape a feature name: as ``escape`` plus ``=``, which separates a name from its value."""
    return escape(text).replace("=", "%3D")


def bucket(number: float) -> str:
    """Return the categorical bucket of a number: itself if a small integer, else its half-octave.

    A number enters a model both as a numeric feature (one weight: effects linear in its value) and
    as this category (one weight per bucket: effects of any shape). Small integers (an hour of the
    day, a day of the week, a count) keep their own bucket; other numbers share one per half-octave
    of their magnitude (52.8 to 75.1 minutes share one, 75.1 to 106.6 the next), whatever their scale.
    """
    if number.is_integer() and abs(number) <= SMALL_INTEGER:
        return f"#{int(number)}"
    step = round(2.0 * math.log2(1.0 + abs(number))) / 2.0
    return f"#{'-' if number < 0 else ''}~{step:g}"


def feature_tokens(features: Mapping[str, Any], *, prefix: str = "") -> list[str]:
    """Return VW tokens for a mapping of validated feature values (str, finite number, list of str)."""
    tokens: list[str] = []
    for name in sorted(features):
        value = features[name]
        key = escape_name(prefix + name)
        if isinstance(value, bool):
            tokens.append(f"{key}={'true' if value else 'false'}")
        elif isinstance(value, (int, float)):
            number = float(value)
            if not math.isfinite(number):
                raise ValueError(f"feature {name!r} is not a finite number")
            if number != 0.0:
                tokens.append(f"{key}:{number:.9g}")
            if NUMERIC_BUCKETS:
                tokens.append(f"{key}={bucket(number)}")
        elif isinstance(value, str):
            tokens.append(f"{key}={escape(value)}")
        else:
            tokens.extend(f"{key}={escape(item)}" for item in value)
    return tokens


def namespace(name: str, tokens: Iterable[str]) -> str:
    """Return one namespace section ``|N tok tok``."""
    return f"|{name} " + " ".join(tokens)


def viewer_shared(*, user_id: str | None, features: Mapping[str, Any]) -> str:
    """Return the shared line of a title decision (viewer features and id)."""
    parts = ["shared", namespace("U", feature_tokens(features))]
    if user_id:
        parts.append(namespace("I", [f"id={escape(user_id)}"]))
    return " ".join(parts)


def with_position(shared_line: str, position: int) -> str:
    """Return the shared line of one slot: the row's shared line plus its position."""
    return f"{shared_line} |P pos={position}"


def title_tokens(title: Mapping[str, Any]) -> list[str]:
    """Return the tokens that describe a title (id, decade, maturity, free-form features)."""
    tokens = [f"id={escape(title['id'])}"]
    year = title.get("year")
    if year is not None:
        tokens.append(f"decade={int(year) // 10 * 10}s")
    if title.get("maturity"):
        tokens.append(f"maturity={escape(title['maturity'])}")
    tokens.extend(feature_tokens(title.get("features") or {}, prefix="f."))
    return tokens


def title_action(title: Mapping[str, Any]) -> str:
    """Return the action line of a title: its ``T`` and ``G`` namespaces."""
    line = namespace("T", title_tokens(title))
    genres = title.get("genres") or []
    if genres:
        line += " " + namespace("G", [escape(genre) for genre in genres])
    return line


def artwork_shared(viewer_shared_line: str, title_line: str) -> str:
    """Return the shared line of an artwork decision: the viewer's shared line plus the chosen title."""
    return f"{viewer_shared_line} {title_line}"


def artwork_action(*, artwork_id: str, tags: Iterable[str], visual_tokens: Iterable[str]) -> str:
    """Return the action line of an artwork."""
    tokens = [f"id={escape(artwork_id)}"]
    tokens.extend(f"tag={escape(tag)}" for tag in tags)
    tokens.extend(visual_tokens)
    return namespace("A", tokens)


def sections(line: str) -> list[tuple[str, list[str]]]:
    """Split a VW text line into its namespaces, in order, each with its tokens (empty ones included).

    What comes before the first ``|`` (a label, ``shared``) is not a namespace and is left out.
    """
    return [(name, rest.split()) for name, _, rest in (section.partition(" ") for section in line.split("|")[1:])]


def token_value(token: str) -> tuple[str, float | None]:
    """Split a feature token into its name and value (None for a token without ``:value``, worth 1)."""
    name, colon, value = token.rpartition(":")
    return (name, float(value)) if colon else (token, None)


def without_shared(line: str) -> str:
    """Return a shared line without its ``shared`` marker (unchanged if it has none)."""
    return line[len("shared ") :] if line.startswith("shared ") else line


def unlabeled(line: str) -> str:
    """Return an action line without the CB label ``labeled`` put in front of it (unchanged if it has none)."""
    return line.split(" ", 1)[1] if line.startswith("0:") else line


def label_of(line: str) -> tuple[float, float] | None:
    """Return the (cost, probability) of the CB label ``labeled`` put in front of an action line, or None."""
    if not line.startswith("0:"):
        return None
    _, cost, probability = line.split(" ", 1)[0].split(":")
    return float(cost), float(probability)


def cost_of(reward: float) -> float:
    """Return the VW cost of a reward (never -0.0)."""
    return COST_PER_REWARD * reward + 0.0


def reward_of(cost: float) -> float:
    """Return the reward of a VW cost or cost estimate (never -0.0)."""
    return cost / COST_PER_REWARD + 0.0


def labeled(action_line: str, *, cost: float, probability: float) -> str:
    """Return an action line with a CB label ``0:cost:probability``, the probability clamped above 0."""
    if not math.isfinite(cost):
        raise ValueError("cost must be finite")
    probability = min(1.0, max(MIN_PROBABILITY, probability))
    return f"0:{cost:.9g}:{probability:.9g} {action_line}"
