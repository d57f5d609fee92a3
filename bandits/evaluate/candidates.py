"""Candidate policies of an offline evaluation: what each kind is, and how one is read from a request.

``parse_candidate`` reads a candidate from a shorthand name or a mapping and names the first bad
field; ``candidate_exploration`` says how a ``model`` or ``vw`` candidate explores after a number
of examples learned, as a serving policy would.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bandits.errors import SpecError
from bandits.model.exploration import EPSILON_GREEDY, RULES, SQUARECB, Exploration
from bandits.model.policy import RANGES, PolicyError, parse_vw_args

CANDIDATE_KINDS = ("logged", "uniform", "default", "model", "vw")
CANDIDATE_FIELDS = (
    "name",
    "kind",
    "version",
    "vw_args",
    "exploration",
    "epsilon",
    "epsilon_decay_after",
    "epsilon_floor",
    "gamma_scale",
    "gamma_exponent",
    "exploration_bonus",
)


@dataclass(frozen=True)
class Candidate:
    """A policy to evaluate.

    Kinds: ``logged`` (the policy that logged the rounds: the on-policy check), ``uniform``,
    ``default`` (always the first action offered: a title's first artwork; for titles, the first
    candidate left in the order the request or the catalog gave), ``model`` (a stored model version of
    the policy, newest if ``version`` is None), ``vw`` (a new VW workspace with ``vw_args``, trained
    on the rounds in time order with progressive validation: each event's rounds are decided before
    they are learned). Both explore by ``exploration``: epsilon-greedy with ``epsilon`` (decaying
    after ``epsilon_decay_after`` examples down to ``epsilon_floor`` as a policy's does; 0: a fixed
    rate), or SquareCB with ``gamma_scale`` and ``gamma_exponent``, at the examples the model has
    learned (for ``vw``, the rounds learned so far); either raises little-tried actions by
    ``exploration_bonus`` (``bandits.model.exploration.optimistic``), counting what the model learned
    (a ``model`` candidate: the stored version's counts; ``vw``: the rounds learned so far).
    """

    name: str
    kind: str
    epsilon: float = 0.0
    version: int | None = None
    vw_args: tuple[str, ...] = ()
    exploration: str = EPSILON_GREEDY
    gamma_scale: float = 10.0
    gamma_exponent: float = 0.5
    epsilon_decay_after: float = 0.0
    epsilon_floor: float = 0.0
    exploration_bonus: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """Return the candidate as JSON-ready data (what ``parse_candidate`` reads back)."""
        data: dict[str, Any] = {"name": self.name, "kind": self.kind}
        if self.kind in ("model", "vw"):
            data["exploration"] = self.exploration
            if self.exploration == SQUARECB:
                data["gamma_scale"], data["gamma_exponent"] = self.gamma_scale, self.gamma_exponent
            else:
                data["epsilon"] = self.epsilon
                if self.epsilon_decay_after:
                    data["epsilon_decay_after"], data["epsilon_floor"] = self.epsilon_decay_after, self.epsilon_floor
            if self.exploration_bonus:
                data["exploration_bonus"] = self.exploration_bonus
        if self.kind == "model":
            data["version"] = self.version
        if self.kind == "vw":
            data["vw_args"] = list(self.vw_args)
        return data


SHORTHANDS: dict[str, dict[str, Any]] = {
    "logged": {"kind": "logged"},
    "uniform": {"kind": "uniform"},
    "default": {"kind": "default"},
    "greedy": {"kind": "model", "epsilon": 0.0},
}
DEFAULT_CANDIDATES = ("logged", "uniform", "default", "greedy")


def parse_candidate(value: Any, *, where: str = "candidate") -> Candidate:
    """Read a candidate from a shorthand name (``logged``, ``uniform``, ``default``, ``greedy``) or a mapping.

    A mapping has ``kind`` and, by kind, ``version`` (``model``) or ``vw_args`` (``vw``: a list of
    strings or one string), the exploration of either (``exploration``: ``epsilon-greedy`` with
    ``epsilon``, or ``squarecb`` with ``gamma_scale`` and ``gamma_exponent``), and an optional ``name``.
    """
    if isinstance(value, str):
        if value not in SHORTHANDS:
            raise SpecError(
                f"{where}: {value!r} is not a candidate name (names: {', '.join(SHORTHANDS)}); "
                "give other candidates as objects with a kind"
            )
        return parse_candidate({"name": value, **SHORTHANDS[value]}, where=where)
    if not isinstance(value, Mapping):
        raise SpecError(f"{where}: must be a candidate name or an object")
    unknown = set(value) - set(CANDIDATE_FIELDS)
    if unknown:
        raise SpecError(f"{where}.{sorted(unknown)[0]}: not a candidate field (fields: {', '.join(CANDIDATE_FIELDS)})")
    kind = value.get("kind")
    if kind not in CANDIDATE_KINDS:
        raise SpecError(f"{where}.kind: must be one of {', '.join(CANDIDATE_KINDS)}, got {kind!r}")
    epsilon = value.get("epsilon", 0.0)
    if not RANGES["epsilon"].holds(epsilon):
        raise SpecError(f"{where}.epsilon: must be {RANGES['epsilon'].says()}")
    exploration = value.get("exploration", EPSILON_GREEDY)
    if exploration not in RULES:
        raise SpecError(f"{where}.exploration: must be one of {', '.join(RULES)}, got {exploration!r}")
    if "exploration" in value and kind not in ("model", "vw"):
        raise SpecError(f"{where}.exploration: only for candidates of kind model or vw")
    gammas: dict[str, float] = {}
    for key, default in (("gamma_scale", 10.0), ("gamma_exponent", 0.5)):
        if key not in value:
            gammas[key] = default
            continue
        if exploration != SQUARECB:
            raise SpecError(f"{where}.{key}: only with exploration squarecb")
        number = value[key]
        if not RANGES[key].holds(number):
            raise SpecError(f"{where}.{key}: must be {RANGES[key].says()}")
        gammas[key] = float(number)
    if exploration == SQUARECB and "epsilon" in value:
        raise SpecError(f"{where}.epsilon: only with exploration epsilon-greedy (SquareCB is set by gamma_scale)")
    decay: dict[str, float] = {}
    for key in ("epsilon_decay_after", "epsilon_floor"):
        if key not in value:
            continue
        if kind not in ("model", "vw") or exploration == SQUARECB:
            raise SpecError(f"{where}.{key}: only for epsilon-greedy candidates of kind model or vw")
        number = value[key]
        if not RANGES[key].holds(number):
            raise SpecError(f"{where}.{key}: must be a number in {RANGES[key].bounds()}")
        decay[key] = float(number)
    bonus = value.get("exploration_bonus", 0.0)
    if "exploration_bonus" in value:
        if kind not in ("model", "vw"):
            raise SpecError(f"{where}.exploration_bonus: only for candidates of kind model or vw")
        if not RANGES["exploration_bonus"].holds(bonus):
            raise SpecError(f"{where}.exploration_bonus: must be {RANGES['exploration_bonus'].says()}")
    version = value.get("version")
    if version is not None and (isinstance(version, bool) or not isinstance(version, int) or version < 0):
        raise SpecError(f"{where}.version: must be a model version number (0 or more)")
    vw_args: tuple[str, ...] = ()
    if kind == "vw":
        if value.get("vw_args") is None:
            raise SpecError(f"{where}.vw_args: a vw candidate needs VW options")
        try:
            vw_args = tuple(parse_vw_args(value["vw_args"]))
        except PolicyError as exc:
            raise SpecError(f"{where}.{exc}") from None
    elif "vw_args" in value:
        raise SpecError(f"{where}.vw_args: only for candidates of kind vw")
    if "version" in value and kind != "model":
        raise SpecError(f"{where}.version: only for candidates of kind model")
    name = value.get("name")
    if name is None:
        name = {"model": f"model v{version}" if version is not None else "model", "vw": "vw " + " ".join(vw_args)}.get(
            str(kind), str(kind)
        )
        if kind in ("model", "vw") and exploration == SQUARECB:
            name += " squarecb"
        elif kind in ("model", "vw") and epsilon:
            name += f" eps={float(epsilon):g}"
            if decay.get("epsilon_decay_after"):
                name += f" decaying after {decay['epsilon_decay_after']:g}"
        if kind in ("model", "vw") and bonus:
            name += f" bonus={float(bonus):g}"
    if not isinstance(name, str) or not 0 < len(name) <= 100:
        raise SpecError(f"{where}.name: must be text of 1 to 100 characters")
    return Candidate(
        name=name,
        kind=str(kind),
        epsilon=float(epsilon),
        version=version,
        vw_args=vw_args,
        exploration=str(exploration),
        exploration_bonus=float(bonus),
        **gammas,
        **decay,
    )


def candidate_exploration(candidate: Candidate, examples_learned: int) -> Exploration:
    """Return how a ``model`` or ``vw`` candidate explores with a model that learned ``examples_learned``."""
    return Exploration.configured(
        rule=candidate.exploration,
        epsilon=candidate.epsilon,
        decay_after=candidate.epsilon_decay_after,
        floor=candidate.epsilon_floor,
        gamma_scale=candidate.gamma_scale,
        gamma_exponent=candidate.gamma_exponent,
        bonus=candidate.exploration_bonus,
        examples_learned=examples_learned,
    )
