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

Every other line Marquee handles is written and read here too: lines of imported logs (``json_line``
turns a DSJson object into VW text; ``check_line`` checks a client's own VW line), labels
(``labeled``, ``label_of``, ``cost_of``, ``reward_of``), the reward model's regression examples
(``regression_line``), and the reading back of a line (``sections``, ``token_value``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

# VW minimizes cost; Marquee reports rewards. The sign flips here, in cost_of and reward_of (and their
# array forms) only.
COST_PER_REWARD = -1.0

# The smallest propensity a label may carry: VW's default `mtr` model turns to NaN on probability 0.
MIN_PROBABILITY = 1e-6

# Numbers also enter as categorical buckets (``bucket``); integers up to this magnitude are their own.
NUMERIC_BUCKETS = True
SMALL_INTEGER = 100

_ESCAPES = {"%": "%25", " ": "%20", "\t": "%09", "\n": "%0A", "\r": "%0D", "|": "%7C", ":": "%3A"}


_TOKEN = re.compile(r"[^\s|:]+(:[^\s|:]+)?")  # a VW feature token: name, or name:value
_NAMESPACE = re.compile(r"[^\s|:]*")  # a namespace name as written after '|'


def number_text(number: float) -> str:
    """Write a feature's numeric value: nine significant digits, as every line Marquee writes."""
    return f"{number:.9g}"


def finite_number(value: Any, *, where: str) -> float:
    """Return a JSON value that must be a finite number (not a bool) as a float; ``ValueError`` names ``where``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{where}: must be a finite number")
    return float(value)


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
                tokens.append(f"{key}:{number_text(number)}")
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


def viewer_shared(
    *, user_id: str | None, features: Mapping[str, Any], tastes: Mapping[str, float] | None = None
) -> str:
    """Return the shared line of a title decision: viewer features, id and taste classes (``bandits.model.tastes``)."""
    parts = ["shared", namespace("U", feature_tokens(features))]
    if user_id:
        parts.append(namespace("I", [f"id={escape(user_id)}"]))
    if tastes:
        parts.append(namespace("K", [f"{escape_name(name)}:{number_text(share)}" for name, share in tastes.items()]))
    return " ".join(parts)


def with_position(shared_line: str, position: int) -> str:
    """Return the shared line of one slot: the row's shared line plus its position."""
    return f"{shared_line} |P pos={position}"


_POSITION = re.compile(r" \|P pos=\d+$")


def without_position(shared_line: str) -> str:
    """Return a slot's shared line without the position ``with_position`` added (unchanged if it has none)."""
    return _POSITION.sub("", shared_line)


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


def shared_and_labelled(example: Sequence[str]) -> tuple[str, str] | None:
    """Return a multi-line example's shared line and its one labelled action line; None unless it has both, once."""
    if not example or not example[0].startswith("shared"):
        return None
    labelled = [line for line in example[1:] if not line.startswith("|")]  # an action line starts with its features
    return (example[0], labelled[0]) if len(labelled) == 1 else None


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


def rewards_of(costs: np.ndarray) -> np.ndarray:
    """Return the rewards of an array of cost estimates (``reward_of``, element by element)."""
    return costs / COST_PER_REWARD + 0.0


def costs_of(rewards: np.ndarray) -> np.ndarray:
    """Return the VW costs of an array of rewards (``cost_of``, element by element)."""
    return COST_PER_REWARD * rewards + 0.0


def regression_line(shared_line: str, action_line: str, reward: float | None = None) -> str:
    """Return one (context, action) pair as a plain regression example, labelled with ``reward`` if given."""
    label = "" if reward is None else f"{number_text(reward)} "
    return f"{label}{without_shared(shared_line)} {action_line}"


def labeled(action_line: str, *, cost: float, probability: float) -> str:
    """Return an action line with a CB label ``0:cost:probability``, the probability clamped above 0."""
    if not math.isfinite(cost):
        raise ValueError("cost must be finite")
    probability = min(1.0, max(MIN_PROBABILITY, probability))
    return f"0:{cost:.9g}:{probability:.9g} {action_line}"


# ---------------------------------------------------------------- JSON objects <-> VW text (log import)


class _Namespaces:
    """VW namespaces collected in the order met: name -> tokens."""

    def __init__(self, *, verbatim: bool) -> None:
        self.verbatim = verbatim
        self.found: dict[str, list[str]] = {}

    def name(self, key: str, *, where: str) -> str:
        if not self.verbatim:
            return escape(key)
        if not _NAMESPACE.fullmatch(key):
            raise ValueError(f"{where}: a namespace name cannot hold spaces, '|' or ':'")
        return key

    def add(self, namespace: str, key: str, value: Any, *, where: str) -> None:
        tokens = self.found.setdefault(namespace, [])
        if self.verbatim:  # Marquee's own export: the key is a VW token, the value true or a number
            if not _NAMESPACE.fullmatch(key) or not key:
                raise ValueError(f"{where}: a feature name cannot be empty or hold spaces, '|' or ':'")
            if value is True:
                tokens.append(key)
            else:
                tokens.append(f"{key}:{number_text(finite_number(value, where=where))}")
            return
        name = escape_name(key)
        if value is None or value is False:
            return
        if value is True:
            tokens.append(name)
        elif isinstance(value, (int, float)):
            number = finite_number(value, where=where)
            if number != 0.0:
                tokens.append(f"{name}:{number_text(number)}")
        elif isinstance(value, str):
            tokens.append(f"{name}={escape(value)}")
        else:
            raise ValueError(f"{where}: a feature must be true, false, null, a number or text")

    def walk(self, namespace: str, mapping: Mapping[str, Any], *, where: str) -> None:
        """Collect the features of a JSON object read as namespace ``namespace``."""
        self.found.setdefault(namespace, [])
        for key, value in mapping.items():
            here = f"{where}.{key}"
            if key.startswith("_"):
                if key == "_text" and isinstance(value, str):
                    self.found[namespace].extend(escape_name(word) for word in value.split())
                continue
            if isinstance(value, Mapping):
                self.walk(self.name(key, where=here), value, where=here)
            elif isinstance(value, list):
                inner = self.name(key, where=here)
                for index, item in enumerate(value):
                    if isinstance(item, Mapping):
                        self.walk(inner, item, where=f"{here}[{index}]")
                    elif isinstance(item, str):
                        self.add(inner, item, True, where=f"{here}[{index}]")
                    else:
                        self.add(inner, f"{key}_{index}", item, where=f"{here}[{index}]")
            else:
                self.add(namespace, key, value, where=here)

    def line(self) -> str:
        """Return the namespaces as a VW text line (without label or ``shared``)."""
        return " ".join(
            f"|{name} " + " ".join(tokens) for name, tokens in self.found.items() if tokens or self.verbatim
        )


def json_line(mapping: Mapping[str, Any], *, verbatim: bool, where: str) -> str:
    """Return the features of a DSJson context or action object as a VW text line.

    ``verbatim``: the keys are VW tokens (Marquee's own export) and every nested object is one namespace.
    """
    collected = _Namespaces(verbatim=verbatim)
    if verbatim:
        for key, value in mapping.items():
            if key.startswith("_"):
                continue
            if not isinstance(value, Mapping):
                raise ValueError(f"{where}.{key}: Marquee's DSJson keeps every feature in a namespace object")
            namespace = collected.name(key, where=f"{where}.{key}")
            collected.found.setdefault(namespace, [])
            for feature, number in value.items():
                collected.add(namespace, feature, number, where=f"{where}.{key}.{feature}")
    else:
        collected.walk("", mapping, where=where)
        if not collected.found[""]:
            del collected.found[""]
    return collected.line()


def check_line(line: Any, *, where: str, shared: bool) -> str:
    """Return a VW text line from JSON lines after checking that VW reads it as features only."""
    if not isinstance(line, str) or "\n" in line or "\r" in line:
        raise ValueError(f"{where}: must be one VW text line")
    body = line
    if shared:
        if not line.startswith("shared"):
            raise ValueError(f"{where}: a shared line starts with 'shared'")
        body = line[len("shared") :]
    if body.strip() and not body.lstrip().startswith("|"):
        raise ValueError(f"{where}: features must follow a '|' namespace marker (no label)")
    for name, tokens in sections(body):
        if not _NAMESPACE.fullmatch(name):
            raise ValueError(f"{where}: namespace {name!r} is not a VW namespace name")
        for token in tokens:
            match = _TOKEN.fullmatch(token)
            if not match:
                raise ValueError(f"{where}: {token!r} is not a VW feature")
            if match.group(1):
                try:
                    value = float(match.group(1)[1:])
                except ValueError:
                    raise ValueError(f"{where}: the value of {token!r} is not a number") from None
                if not math.isfinite(value):
                    raise ValueError(f"{where}: the value of {token!r} is not finite")
    return line
