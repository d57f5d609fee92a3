"""Reading logged decisions from DSJson and JSON lines, Marquee's own or another VW-based service's.

Each line becomes a ``Decision``: the VW text lines the decision saw, the chosen action, its logged
probability and its reward, or a ``Skip`` with the reason it cannot be evaluated (a decision never
activated, one without a reward, a multi-slot decision). A line that is not what its format says
raises ``ValueError`` naming the field; the importer adds the line number.

DSJson written by Marquee (it carries a ``marquee`` object) holds every VW token as a JSON key,
so its features are read back verbatim and evaluate exactly as the native log does. DSJson from
elsewhere follows VW's JSON reader: an object is a namespace named by its key (the top level is
the default namespace), ``true`` is a feature, a number is a feature with that value, ``false`` and
``null`` are absent, keys starting with ``_`` are directives rather than features (``_text`` is split
into words). Marquee reads a string value as the categorical ``name=value``, as it writes its own
features, and an array of numbers as features ``name_0``, ``name_1``, ... of namespace ``name``; the
features are hashed by Marquee's own reward models and candidates, so they need not hash as the
other service's workspace did.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from bandits.decide import inline
from bandits.errors import SpecError
from bandits.log.rounds import parse_time
from bandits.vw import features

FORMATS = ("dsjson", "jsonl")
MAX_ACTIONS = 10_000  # actions of one decision


@dataclass(frozen=True)
class Decision:
    """One logged decision, as Marquee evaluates it."""

    event_id: str
    position: int
    created_at: float
    shared: str  # VW shared line ("shared |ns ...")
    actions: tuple[str, ...]  # VW action lines, in the order offered
    action_ids: tuple[str, ...]
    chosen: int  # index into actions
    pscore: float  # the logged probability of the chosen action
    reward: float
    context: Mapping[str, Any] = field(default_factory=dict)  # viewer features, for segments
    policy: str | None = None  # the Marquee policy that logged it, when the line says


@dataclass(frozen=True)
class Skip:
    """A well-formed line that cannot be evaluated, and why."""

    reason: str


def _probability(value: Any, *, where: str) -> float:
    number = features.finite_number(value, where=where)
    if not 0.0 < number <= 1.0:
        raise ValueError(f"{where}: a probability must be in (0, 1], got {number!r}")
    return number


def _index(value: Any, *, where: str, size: int, base: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not base <= value < size + base:
        raise ValueError(f"{where}: must be an action number from {base} to {size + base - 1}, got {value!r}")
    return value - base


def _text(value: Any, *, where: str, limit: int = 256) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= limit:
        raise ValueError(f"{where}: must be text of 1 to {limit} characters")
    return value


def _time(value: Any, *, where: str) -> float:
    try:
        moment = parse_time(value, where=where)
    except SpecError as exc:
        raise ValueError(str(exc)) from None
    if moment is None:
        raise ValueError(f"{where}: missing; every decision needs its time")
    return moment


# ---------------------------------------------------------------- lines -> decisions


def _flat_context(context: Mapping[str, Any]) -> dict[str, Any]:
    """Return a foreign context's plain features for segments: ``name`` at the top, ``namespace.name`` below."""
    flat: dict[str, Any] = {}
    for key, value in context.items():
        if key.startswith("_"):
            continue
        if isinstance(value, Mapping):
            for inner, item in value.items():
                if isinstance(item, (str, int, float)) and not inner.startswith("_"):
                    flat[f"{key}.{inner}"] = item
        elif isinstance(value, (str, int, float)):
            flat[key] = value
    return flat


def _chosen(record: Mapping[str, Any], size: int) -> int:
    """Return the chosen action (0-based) from ``_labelIndex``, ``_label_Action`` or ``a``, checking they agree."""
    found: dict[str, int] = {}
    if "_labelIndex" in record:
        found["_labelIndex"] = _index(record["_labelIndex"], where="_labelIndex", size=size, base=0)
    if "_label_Action" in record:
        found["_label_Action"] = _index(record["_label_Action"], where="_label_Action", size=size, base=1)
    ranking = record.get("a")
    if ranking is not None:
        if not isinstance(ranking, list) or not ranking:
            raise ValueError("a: must be a non-empty list of action numbers")
        found["a[0]"] = _index(ranking[0], where="a[0]", size=size, base=1)
    if not found:
        raise ValueError("_labelIndex: missing, and neither _label_Action nor a says which action was chosen")
    values = set(found.values())
    if len(values) > 1:
        raise ValueError(f"{', '.join(found)}: name different chosen actions ({found})")
    return values.pop()


def _merged(value: Any, *, where: str) -> Any:
    """Return a feature value with every list of objects merged into one object, as a Personalizer features list."""
    if isinstance(value, list) and value and all(isinstance(item, Mapping) for item in value):
        merged: dict[str, Any] = {}
        for index, item in enumerate(value):
            for key, inner in item.items():
                if key in merged:
                    raise ValueError(f"{where}[{index}].{key}: feature {key!r} is given twice")
                merged[key] = _merged(inner, where=f"{where}[{index}].{key}")
        return merged
    if isinstance(value, Mapping):
        return {key: _merged(inner, where=f"{where}.{key}") for key, inner in value.items()}
    return value


def _inline_features(mapping: Mapping[str, Any], *, where: str) -> dict[str, Any]:
    """Return the features of a DSJson context or action object as the Personalizer-compatible rank reads them."""
    plain = {key: _merged(value, where=f"{where}.{key}") for key, value in mapping.items() if not key.startswith("_")}
    try:
        return inline.flatten([plain], where=where)
    except inline.InlineError as exc:
        raise ValueError(str(exc).replace(f"{where}[0]", where)) from None


def _as_inline(decision: Decision, context: Mapping[str, Any], multi: list[Any]) -> Decision:
    """Return a foreign decision re-encoded as the ``actions`` policy encodes a ranking (``bandits.decide.inline``)."""
    ids = []
    for j, action in enumerate(multi):
        tag = action.get("_tag", action.get("_id"))
        if not isinstance(tag, str) or not 0 < len(tag) <= inline.MAX_NAME:
            raise ValueError(
                f"c._multi[{j}]._tag: the actions policy needs each action's id (1-{inline.MAX_NAME} "
                "characters) in _tag or _id"
            )
        ids.append(tag)
    if len(set(ids)) != len(ids):
        raise ValueError("c._multi: two actions have the same _tag; action ids must be unique")
    return replace(
        decision,
        shared=inline.context_line(_inline_features(context, where="c")),
        actions=tuple(
            inline.action_line(ids[j], _inline_features(action, where=f"c._multi[{j}]"))
            for j, action in enumerate(multi)
        ),
        action_ids=tuple(ids),
        policy=INLINE_POLICY,
    )


INLINE_POLICY = "actions"  # the policy whose encoding ``read_dsjson(inline=True)`` gives foreign lines


def read_dsjson(record: Any, *, inline: bool = False) -> Decision | Skip:
    """Read one DSJson contextual bandit line (Marquee's, VW's or another service's).

    With ``inline``, a foreign line's features are encoded as Marquee's Personalizer-compatible rank
    encodes a request's (``bandits.decide.inline``: context features in namespace ``C``, an action's id
    and features in ``X``), so that the ``actions`` policy can be evaluated on it and warm-started from it.
    """
    if not isinstance(record, Mapping):
        raise ValueError("line: must be a JSON object")
    context = record.get("c")
    if "_outcomes" in record or (isinstance(context, Mapping) and "_slots" in context):
        return Skip("multi-slot decision (CCB or slates); only single-slot contextual bandit lines are read")
    if record.get("_skipLearn") is True:
        return Skip("never activated (_skipLearn)")
    if not isinstance(context, Mapping):
        raise ValueError("c: must be an object holding the decision's features")
    multi = context.get("_multi")
    if (
        not isinstance(multi, list)
        or not 0 < len(multi) <= MAX_ACTIONS
        or not all(isinstance(a, Mapping) for a in multi)
    ):
        raise ValueError(f"c._multi: must be a list of 1 to {MAX_ACTIONS} action objects")
    if "_label_cost" not in record:
        return Skip("no reward (_label_cost missing)")
    cost = features.finite_number(record["_label_cost"], where="_label_cost")
    chosen = _chosen(record, len(multi))
    if "_label_probability" in record:
        pscore = _probability(record["_label_probability"], where="_label_probability")
    else:
        probabilities = record.get("p")
        if not isinstance(probabilities, list) or not probabilities:
            raise ValueError("_label_probability: missing, and p holds no probabilities")
        pscore = _probability(probabilities[0], where="p[0]")
    created_at = _time(record.get("Timestamp"), where="Timestamp")
    own = record.get("marquee")
    if own is not None:
        if not isinstance(own, Mapping):
            raise ValueError("marquee: must be an object")
        action_ids = own.get("action_ids")
        if not isinstance(action_ids, list) or len(action_ids) != len(multi):
            raise ValueError("marquee.action_ids: must list one id per action of c._multi")
        viewer = own.get("viewer", {})
        if not isinstance(viewer, Mapping):
            raise ValueError("marquee.viewer: must be an object")
        position = own.get("position", 0)
        if isinstance(position, bool) or not isinstance(position, int) or position < 0:
            raise ValueError("marquee.position: must be a slot position (0 or more)")
        policy = own.get("policy")
        if policy is not None:
            policy = _text(policy, where="marquee.policy", limit=32)
        return Decision(
            event_id=_text(own.get("event_id"), where="marquee.event_id"),
            position=position,
            created_at=created_at,
            shared="shared " + features.json_line(context, verbatim=True, where="c"),
            actions=tuple(
                features.json_line(action, verbatim=True, where=f"c._multi[{j}]") for j, action in enumerate(multi)
            ),
            action_ids=tuple(_text(a, where=f"marquee.action_ids[{j}]") for j, a in enumerate(action_ids)),
            chosen=chosen,
            pscore=pscore,
            reward=features.finite_number(own.get("reward"), where="marquee.reward"),
            context=dict(viewer),
            policy=policy,
        )
    ids = []
    for j, action in enumerate(multi):
        tag = action.get("_tag", action.get("_id"))
        ids.append(tag if isinstance(tag, str) and 0 < len(tag) <= 256 else str(j + 1))
    event_id = record.get("EventId")
    decision = Decision(
        event_id=_text(event_id, where="EventId"),
        position=0,
        created_at=created_at,
        shared="shared",
        actions=(),
        action_ids=tuple(ids),
        chosen=chosen,
        pscore=pscore,
        reward=features.reward_of(cost),
        context=_flat_context(context),
    )
    if inline:
        return _as_inline(decision, context, multi)
    return replace(
        decision,
        shared=("shared " + features.json_line(context, verbatim=False, where="c")).rstrip(),
        actions=tuple(
            features.json_line(action, verbatim=False, where=f"c._multi[{j}]") for j, action in enumerate(multi)
        ),
    )


JSONL_FIELDS = (
    "policy",
    "event_id",
    "position",
    "timestamp",
    "viewer",
    "shared",
    "actions",
    "chosen",
    "probability",
    "reward",
)


def read_jsonl(record: Any) -> Decision:
    """Read one flat JSON line (the form ``GET /v1/logs/export?format=jsonl`` writes)."""
    if not isinstance(record, Mapping):
        raise ValueError("line: must be a JSON object")
    unknown = sorted(set(record) - set(JSONL_FIELDS))
    if unknown:
        raise ValueError(f"{unknown[0]}: not a field of the JSON lines form (fields: {', '.join(JSONL_FIELDS)})")
    actions = record.get("actions")
    if not isinstance(actions, list) or not 0 < len(actions) <= MAX_ACTIONS:
        raise ValueError(f"actions: must be a list of 1 to {MAX_ACTIONS} actions")
    lines, ids = [], []
    for j, action in enumerate(actions):
        if not isinstance(action, Mapping):
            raise ValueError(f"actions[{j}]: must be an object with id and features")
        ids.append(_text(action.get("id"), where=f"actions[{j}].id"))
        lines.append(features.check_line(action.get("features"), where=f"actions[{j}].features", shared=False))
    position = record.get("position", 0)
    if isinstance(position, bool) or not isinstance(position, int) or position < 0:
        raise ValueError("position: must be a slot position (0 or more)")
    viewer = record.get("viewer", {})
    if not isinstance(viewer, Mapping):
        raise ValueError("viewer: must be an object")
    policy = record.get("policy")
    return Decision(
        event_id=_text(record.get("event_id"), where="event_id"),
        position=position,
        created_at=_time(record.get("timestamp"), where="timestamp"),
        shared=features.check_line(record.get("shared"), where="shared", shared=True),
        actions=tuple(lines),
        action_ids=tuple(ids),
        chosen=_index(record.get("chosen"), where="chosen", size=len(lines), base=0),
        pscore=_probability(record.get("probability"), where="probability"),
        reward=features.finite_number(record.get("reward"), where="reward"),
        context=dict(viewer),
        policy=_text(policy, where="policy", limit=32) if policy is not None else None,
    )


def read_line(text: str | bytes, fmt: str, *, inline: bool = False) -> Decision | Skip | None:
    """Read one line of a file in ``fmt``; None for a blank line (``inline``: see ``read_dsjson``).

    Raises:
        ValueError: the line is not valid JSON or not a decision; the message names the field.
    """
    if fmt not in FORMATS:
        raise ValueError(f"format: must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if not text.strip():
        return None
    try:
        record = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"line: not valid JSON ({exc})") from None
    return read_dsjson(record, inline=inline) if fmt == "dsjson" else read_jsonl(record)
