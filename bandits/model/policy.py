"""Policies: their configuration, their VW workspaces, and their model versions in SQLite.

Each policy is a VW ``--cb_adf`` cost regressor (one cost estimate per action) plus Marquee's own
exploration over those estimates (``bandits.model.exploration``). Learning is VW's; the probability of
every pick is Marquee's, so it is exact even when a row's slots are drawn one after another.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, NamedTuple

import vowpal_wabbit_next as vw
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from bandits.deployment import Deployment
from bandits.errors import Invalid, Unavailable
from bandits.model.diversity import Diversity, DiversityError
from bandits.model.exploration import RULES, Exploration, all_finite
from bandits.model.tried import Tried
from bandits.storage import Database, bump, write_transaction
from bandits.vw.options import OptionError, check_model, check_user_args
from bandits.vw.workspace import CACHED_ACTION_LINES, TextExamples, VWError

TITLES = "titles"
ARTWORK = "artwork"
ACTIONS = "actions"  # decisions over inline actions (the Personalizer-compatible API, bandits.decide.inline)
ROW_POLICIES = (TITLES, ARTWORK)  # the two policies of a catalog row
POLICY_NAMES = (TITLES, ARTWORK, ACTIONS)

BASE_ARGS = ["--cb_adf"]
# Titles: viewer x title (id and genre), viewer id x genre (each viewer's own taste); artwork: viewer
# x artwork and viewer id x artwork (each viewer's own eye); both: taste class x title or artwork,
# and x genre (what each kind of viewer likes, learned from everyone of that kind: bandits.model.tastes).
# ``--clip_p 1`` learns every shown pick at weight 1 instead of 1/p: at 1/p an explored pick weighs up
# to hundreds of greedy ones, the model learns mostly from those few and corrects its greedy choices
# slowly (BENCHMARKS.md, "Where the lift was lost"). A pick's probability depends only on the features
# the model sees, so the unweighted regression is not confounded by it. Without the 1/p weights VW's
# default rate over-shoots less: 0.2 learned faster than 0.05 and 0.5 on artwork, and titles, each
# shown rarely in a catalog of many, learn best at 0.5 ("the titles policy's learning rate").
DEFAULT_VW_ARGS: dict[str, list[str]] = {
    TITLES: ["-q", "UT", "-q", "UG", "-q", "IG", "-q", "KT", "-q", "KG", "-l", "0.5", "--clip_p", "1"],
    ARTWORK: ["-q", "UA", "-q", "UG", "-q", "IA", "-q", "KA", "-q", "KG", "-l", "0.2", "--clip_p", "1"],
    ACTIONS: ["-q", "CX", "-l", "0.05"],  # context x action (bandits.decide.inline's namespaces)
}
AGGREGATIONS = ("earliest", "sum", "max")
# Outcomes a client may report by name; each policy gives each a value (``reward_values``).
REWARD_TYPES = ("click", "play", "completed", "thumbs_up", "thumbs_down")
# Settings an operator may override per policy; anything absent takes the deployment default.
POLICIES_VERSION = "policies_version"  # meta counter bumped by every settings change
OVERRIDABLE = (
    "exploration",
    "epsilon",
    "epsilon_decay_after",
    "epsilon_floor",
    "gamma_scale",
    "gamma_exponent",
    "exploration_bonus",
    "vw_args",
    "reward_wait",
    "default_reward",
    "aggregation",
    "learn_on_first_reward",
    "max_per_genre",
    "min_genres",
    "reward_values",
    "learning_mode",
    "apprentice_exploration",
    "auto_switch",
    "auto_optimize",
    "explain_ranks",
)
# How a policy serves and learns (``bandits.evaluate.apprentice``): ``online`` serves the model's exploring
# choice and learns from rewards; ``apprentice`` serves the baseline (the first action offered: the
# caller's own choice) and learns to prefer it where it earns rewards; ``logging-only`` serves the
# baseline and learns nothing.
ONLINE, APPRENTICE, LOGGING_ONLY = "online", "apprentice", "logging-only"
LEARNING_MODES = (ONLINE, APPRENTICE, LOGGING_ONLY)
TITLES_ONLY = ("max_per_genre", "min_genres")  # row settings: the artwork policy picks one artwork per title
ACTIONS_ONLY = ("explain_ranks",)  # settings of the Personalizer-compatible rankings


def _number(value: float) -> str:
    """Write a bound as people do: 1000000, 0.5, 1e12."""
    if value == int(value) and abs(value) < 1e9:
        return str(int(value))
    return f"{value:g}".replace("e+", "e").replace("e0", "e")


@dataclass(frozen=True)
class Range:
    """A numeric setting's range: checked by policy overrides, evaluation candidates and the deployment's settings."""

    low: float
    high: float
    low_open: bool = False  # the low end itself is out
    unit: str = "a number"

    def holds(self, value: Any) -> bool:
        """Whether ``value`` is a number (not a bool) in the range."""
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        return (self.low < value if self.low_open else self.low <= value) and value <= self.high

    def bounds(self) -> str:
        """The range as ``[0, 1]`` or ``(0, 1000000]``."""
        return f"{'(' if self.low_open else '['}{_number(self.low)}, {_number(self.high)}]"

    def says(self) -> str:
        """What a value must be: ``a number in [0, 1]``."""
        return f"{self.unit} in {self.bounds()}"


# The ranges of the numeric policy settings, written once.
RANGES: dict[str, Range] = {
    "epsilon": Range(0.0, 1.0),
    "epsilon_decay_after": Range(0.0, 1e12, unit="a number of learned examples"),
    "epsilon_floor": Range(0.0, 1.0),
    "gamma_scale": Range(0.0, 1e6, low_open=True),
    "gamma_exponent": Range(0.0, 1.0),
    "exploration_bonus": Range(0.0, 100.0),
    "reward_wait": Range(0.0, 7 * 86400.0, unit="a number of seconds"),
    "default_reward": Range(-1.0, 1.0),
    "apprentice_exploration": Range(0.0, 0.5),
}
REWARD_RANGE = Range(-1.0, 1.0)  # the value of a reward type
FLAGS = ("learn_on_first_reward", "auto_switch", "auto_optimize", "explain_ranks")


class PolicyError(Invalid):
    """A policy setting or model is not usable."""


class ModelFailure(Unavailable):
    """A model that loaded could not score a decision; nothing was logged."""


@dataclass(frozen=True)
class PolicyConfig:
    """The effective settings of one policy."""

    name: str
    epsilon: float
    vw_args: list[str]
    reward_wait: float
    default_reward: float
    aggregation: str = "earliest"
    learn_on_first_reward: bool = False
    exploration: str = "epsilon-greedy"
    epsilon_decay_after: float = 0.0  # examples learned before epsilon starts to shrink (0: it never does)
    epsilon_floor: float = 0.0  # the least epsilon shrinks to
    gamma_scale: float = 10.0
    gamma_exponent: float = 0.5
    exploration_bonus: float = 0.0  # raises little-tried actions' estimates (bandits.model.exploration.optimistic)
    max_per_genre: int = 0
    min_genres: int = 0
    reward_values: dict[str, float] = field(default_factory=dict)
    learning_mode: str = ONLINE
    apprentice_exploration: float = 0.0  # the share of apprentice decisions the model's exploration draws
    auto_switch: bool = False  # apprentice turns online by itself once the model beats the baseline
    auto_optimize: bool = False  # bandits.evaluate.optimize evaluates a search space now and then and applies a winner
    explain_ranks: bool = False  # the actions policy's rankings carry each action's feature scores (inline)
    overridden: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """Return the settings as JSON-ready data."""
        return asdict(self)

    def explorer(self, examples_learned: int) -> Exploration:
        """Return how this policy explores with a model that has learned ``examples_learned`` examples."""
        explorer = Exploration.configured(
            rule=self.exploration,
            epsilon=self.epsilon,
            decay_after=self.epsilon_decay_after,
            floor=self.epsilon_floor,
            gamma_scale=self.gamma_scale,
            gamma_exponent=self.gamma_exponent,
            bonus=self.exploration_bonus,
            examples_learned=examples_learned,
        )
        if self.learning_mode == ONLINE:
            return explorer
        share = 1.0 - self.apprentice_exploration if self.learning_mode == APPRENTICE else 1.0
        return replace(explorer, baseline=share)

    @property
    def diversity(self) -> Diversity:
        """The row's genre constraint (``bandits.model.diversity``); only the titles policy has one."""
        return Diversity(max_per_genre=self.max_per_genre, min_genres=self.min_genres)


def deployment_defaults(config: Deployment, name: str) -> dict[str, Any]:
    """Return a policy's settings before any override, from the deployment configuration."""
    return {
        "epsilon": config.epsilon,
        "vw_args": list(DEFAULT_VW_ARGS[name]),
        "reward_wait": config.reward_wait_seconds,
        "default_reward": config.default_reward,
        "aggregation": "earliest",
        "learn_on_first_reward": False,
        "exploration": config.exploration,
        "epsilon_decay_after": config.epsilon_decay_after,
        "epsilon_floor": config.epsilon_floor,
        "gamma_scale": config.squarecb_gamma_scale,
        "gamma_exponent": config.squarecb_gamma_exponent,
        "exploration_bonus": config.exploration_bonus,
        "reward_values": dict(config.reward_values),
        "learning_mode": ONLINE,
        "apprentice_exploration": 0.0,
        "auto_switch": False,
        "auto_optimize": config.auto_optimize,
        "explain_ranks": False,
        **({"max_per_genre": config.max_per_genre, "min_genres": config.min_genres} if name == TITLES else {}),
    }


CHOICES: dict[str, Sequence[str]] = {"exploration": RULES, "aggregation": AGGREGATIONS, "learning_mode": LEARNING_MODES}


def _check_setting(key: str, value: Any, *, policy: str, patch: bool) -> Any:
    """Check one override; raise ``PolicyError`` naming it. Return it normalized (numbers as floats)."""
    if key in ACTIONS_ONLY and policy != ACTIONS:
        raise PolicyError(f"{key}: a setting of the actions policy only (its rankings answer Personalizer's clients)")
    if key in TITLES_ONLY:
        if policy != TITLES:
            raise PolicyError(f"{key}: a setting of the titles policy only (it shapes the row)")
        try:
            Diversity.of(value, 0) if key == "max_per_genre" else Diversity.of(0, value)
        except DiversityError as exc:
            raise PolicyError(str(exc)) from None
    if key in RANGES:
        if not RANGES[key].holds(value):
            raise PolicyError(f"{key}: must be {RANGES[key].says()}")
        return float(value)
    if key in CHOICES:
        if value not in CHOICES[key]:
            raise PolicyError(f"{key}: must be one of {', '.join(CHOICES[key])}")
    elif key in FLAGS:
        if not isinstance(value, bool):
            raise PolicyError(f"{key}: must be true or false")
    elif key == "vw_args":
        return parse_vw_args(value)
    elif key == "reward_values":
        if patch and isinstance(value, dict):  # a merge patch: null puts one type back to its default
            removed = {name: None for name, number in value.items() if number is None and name in REWARD_TYPES}
            kept = {name: number for name, number in value.items() if name not in removed}
            return {**check_reward_values(kept), **removed}
        return check_reward_values(value)
    return value


def _ranged(key: str, description: str) -> Any:
    """A numeric override's field: its JSON Schema bounds are ``RANGES[key]``."""
    bounds = RANGES[key]
    if bounds.low_open:
        return Field(default=None, gt=bounds.low, le=bounds.high, description=f"{description}; {bounds.says()}")
    return Field(default=None, ge=bounds.low, le=bounds.high, description=f"{description}; {bounds.says()}")


def _chosen(key: str, description: str) -> Any:
    """An override chosen from ``CHOICES[key]``."""
    return Field(default=None, description=description, json_schema_extra={"enum": [*CHOICES[key], None]})


class PolicyOverrides(BaseModel):
    """A policy's overrides, as ``PUT``/``PATCH /v1/policies/{name}`` take them; every check is here.

    A setting left out, or ``None``, takes the deployment default. Pydantic applies ``_check_setting``
    to each setting given, with the policy's name (and whether the body is a merge patch) from the
    validation context; a bad value raises ``PolicyError`` naming it.
    """

    model_config = ConfigDict(extra="forbid")

    exploration: str | None = _chosen("exploration", "how picks explore around the model's best")
    epsilon: float | None = _ranged("epsilon", "epsilon-greedy's share of uniformly random picks")
    epsilon_decay_after: float | None = _ranged("epsilon_decay_after", "examples learned before epsilon shrinks")
    epsilon_floor: float | None = _ranged("epsilon_floor", "the least epsilon shrinks to")
    gamma_scale: float | None = _ranged("gamma_scale", "SquareCB's gamma = gamma_scale * n^gamma_exponent")
    gamma_exponent: float | None = _ranged("gamma_exponent", "SquareCB's exponent of the examples learned")
    exploration_bonus: float | None = _ranged(
        "exploration_bonus", "how far a little-tried action's estimate is raised, in standard errors"
    )
    vw_args: list[str] | str | None = Field(
        default=None, description="VW options (a list, or one shell-quoted string); new options start a new model"
    )
    reward_wait: float | None = _ranged("reward_wait", "how long a decision waits for rewards")
    default_reward: float | None = _ranged("default_reward", "the reward of a decision that got none")
    aggregation: str | None = _chosen("aggregation", "how several rewards of one decision combine")
    learn_on_first_reward: bool | None = Field(default=None, description="learn at the first reward, not the window")
    max_per_genre: int | None = Field(default=None, description="titles only: at most this many of a genre (0: no cap)")
    min_genres: int | None = Field(default=None, description="titles only: at least this many genres (0: none)")
    reward_values: dict[str, float | None] | None = Field(
        default=None, description="the value of each reward type: " + ", ".join(REWARD_TYPES)
    )
    learning_mode: str | None = _chosen("learning_mode", "online, apprentice (serve the baseline) or logging-only")
    apprentice_exploration: float | None = _ranged("apprentice_exploration", "apprentice decisions the model draws")
    auto_switch: bool | None = Field(default=None, description="apprentice turns online once it beats the baseline")
    auto_optimize: bool | None = Field(default=None, description="evaluate a search space now and then, apply a winner")
    explain_ranks: bool | None = Field(default=None, description="actions only: rankings carry feature scores")

    @field_validator("*", mode="before")
    @classmethod
    def _check(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None:
            return None
        context = info.context or {}
        return _check_setting(
            str(info.field_name), value, policy=context.get("policy", TITLES), patch=context.get("patch", False)
        )


assert tuple(PolicyOverrides.model_fields) == OVERRIDABLE, "every overridable setting has one field"


def validate_overrides(overrides: Mapping[str, Any], *, policy: str = TITLES, patch: bool = False) -> dict[str, Any]:
    """Check override values; raise ``PolicyError`` naming the first bad one. Return them normalized.

    Settings given as ``None`` are left out. With ``patch``, ``reward_values`` may map a type to
    ``None`` (back to its default), which is kept for the merge.
    """
    if not isinstance(overrides, Mapping):
        raise PolicyError("the overrides must be an object of policy settings")
    for key in overrides:
        if key not in OVERRIDABLE:
            raise PolicyError(f"{key}: not a policy setting (settings: {', '.join(OVERRIDABLE)})")
    checked = PolicyOverrides.model_validate(dict(overrides), context={"policy": policy, "patch": patch})
    return {key: value for key, value in checked.model_dump(exclude_unset=True).items() if value is not None}


def change_overrides(
    db: Database, config: Deployment, name: str, overrides: Mapping[str, Any], *, merge: bool
) -> list[str]:
    """Check and store a policy's overrides; return the overrides that were stored and no longer are.

    With ``merge`` (a JSON merge patch), ``overrides`` changes only the settings it names (``None``
    removes one, and inside ``reward_values`` one type's value); otherwise it replaces them all. New
    ``vw_args`` publish a new, empty model in the same transaction.
    """
    clean = validate_overrides(overrides, policy=name, patch=merge)
    with write_transaction(db):
        before = load_policy(db, config, name)
        stored = stored_overrides(db, name)
        new = clean
        if merge:
            new = {key: value for key, value in stored.items() if overrides.get(key, True) is not None}
            new.update(clean)
            if "reward_values" in clean:
                values = {**stored.get("reward_values", {}), **clean["reward_values"]}
                new["reward_values"] = {key: value for key, value in values.items() if value is not None}
                if not new["reward_values"]:  # every type back to its default: no override left
                    del new["reward_values"]
        store_overrides(db, name, new)
        if load_policy(db, config, name).vw_args != before.vw_args:
            publish_empty(db, config, name, origin="vw_args changed")
    return sorted(set(stored) - set(new))


def check_reward_values(value: Any, *, where: str = "reward_values") -> dict[str, float]:
    """Check a mapping of reward types to values in [-1, 1]; a type left out keeps its default."""
    if not isinstance(value, dict):
        raise PolicyError(f"{where}: must be an object mapping reward types ({', '.join(REWARD_TYPES)}) to values")
    clean: dict[str, float] = {}
    for name, number in value.items():
        if name not in REWARD_TYPES:
            raise PolicyError(f"{where}.{name}: not a reward type (types: {', '.join(REWARD_TYPES)})")
        if not REWARD_RANGE.holds(number):
            raise PolicyError(f"{where}.{name}: must be {REWARD_RANGE.says()}")
        clean[name] = float(number)
    return clean


def parse_reward_values(text: str) -> dict[str, float]:
    """Read ``MARQUEE_REWARD_VALUES`` (``click=1,play=1,...``); every type gets a value."""
    values: dict[str, Any] = {}
    for part in text.split(","):
        if not part.strip():
            continue
        name, sep, number = part.partition("=")
        try:
            values[name.strip()] = float(number) if sep else None
        except ValueError:
            raise ValueError(f"REWARD_VALUES: {part.strip()!r} is not type=number") from None
    try:
        clean = check_reward_values(values, where="REWARD_VALUES")
    except PolicyError as exc:
        raise ValueError(str(exc)) from None
    missing = [name for name in REWARD_TYPES if name not in clean]
    if missing:
        raise ValueError(f"REWARD_VALUES: give every reward type a value (missing: {', '.join(missing)})")
    return {name: clean[name] for name in REWARD_TYPES}


def parse_vw_args(value: Any) -> list[str]:
    """Accept VW options as a list of strings or one shell-quoted string; check them and VW's answer."""
    try:
        args = check_user_args(value)
    except OptionError as exc:
        raise PolicyError(str(exc)) from None
    workspace = new_workspace(args)  # raises PolicyError when VW refuses them
    if workspace.prediction_type != vw.PredictionType.ActionScores:
        raise PolicyError("vw_args: the options must keep VW a --cb_adf cost regressor")
    return args


def new_workspace(vw_args: Sequence[str], *, model_data: bytes | None = None) -> vw.Workspace:
    """Build a workspace (``--cb_adf`` plus ``vw_args``, or a stored model), translating VW's errors.

    Only options ``bandits.vw.options`` accepts reach VW, from ``vw_args`` or from a model's header.
    """
    try:
        if model_data is not None:
            check_model(model_data)
            args: list[str] = []  # a stored model carries its own options
        else:
            args = list(BASE_ARGS) + check_user_args(list(vw_args))
    except OptionError as exc:
        raise PolicyError(str(exc)) from None
    try:
        workspace = vw.Workspace(args, model_data=model_data)
    except (RuntimeError, ValueError, TypeError) as exc:
        what = (
            "model: Vowpal Wabbit could not load it"
            if model_data is not None
            else "vw_args: Vowpal Wabbit refused the options"
        )
        raise PolicyError(f"{what}: {str(exc).strip()}") from None
    return workspace


def load_uploaded_model(blob: bytes) -> vw.Workspace:
    """Load model bytes from outside Marquee: accepted options only, whole, and a ``--cb_adf`` model."""
    workspace = new_workspace([], model_data=blob)
    if len(workspace.serialize()) != len(blob):
        # VW loads a truncated file without complaint; a whole one serializes back to its own length.
        raise PolicyError("model: the file is incomplete (it does not serialize back to its own length)")
    if workspace.prediction_type != vw.PredictionType.ActionScores:
        raise PolicyError("model: not a --cb_adf model (Marquee policies predict one cost per action)")
    return workspace


def load_policy(db: Database, config: Deployment, name: str) -> PolicyConfig:
    """Return the effective settings of a policy (deployment defaults plus stored overrides)."""
    if name not in POLICY_NAMES:
        raise KeyError(name)
    settings = deployment_defaults(config, name)
    overrides = stored_overrides(db, name)
    reward_values = {**settings["reward_values"], **overrides.get("reward_values", {})}
    settings.update(overrides, reward_values=reward_values)
    return PolicyConfig(name=name, overridden=sorted(overrides), **settings)


def stored_overrides(db: Database, name: str) -> dict[str, Any]:
    """Return the settings an operator stored for a policy (none: an empty mapping)."""
    row = db.execute("SELECT overrides FROM policies WHERE name = ?", [name]).fetchone()
    return dict(json.loads(row[0])) if row else {}


def store_overrides(db: Database, name: str, overrides: Mapping[str, Any]) -> None:
    """Replace a policy's stored overrides (inside the caller's transaction) and bump the settings version."""
    bump(db, POLICIES_VERSION)
    db.execute(
        "INSERT INTO policies (name, overrides, updated_at) VALUES (?, ?, ?) "
        "ON CONFLICT(name) DO UPDATE SET overrides = excluded.overrides, updated_at = excluded.updated_at",
        [name, json.dumps(dict(overrides), sort_keys=True), time.time()],
    )


# ---------------------------------------------------------------- model versions


@dataclass(frozen=True)
class ModelRecord:
    """One stored model version."""

    policy: str
    version: int
    created_at: float
    vw_args: list[str]
    events_learned: int
    examples_learned: int
    origin: str
    blob: bytes = b""
    tried: str | None = None  # the version's counts of learned actions as JSON (bandits.model.tried); None: none

    def summary(self) -> dict[str, Any]:
        """Return the record without its blob."""
        data = asdict(self)
        data.pop("blob")
        data.pop("tried")
        data["bytes"] = len(self.blob)
        # how many actions the version counts as learned (the exploration bonus rests on them); None: not known
        data["actions_tried"] = None if self.tried is None else len(json.loads(self.tried))
        return data


MODEL_COLUMNS = "policy, version, created_at, blob, vw_args, events_learned, examples_learned, origin, tried"


def _record(row: Sequence[Any], *, with_blob: bool) -> ModelRecord:
    policy, version, created_at, blob, vw_args, events, examples, origin, tried = row
    return ModelRecord(
        policy=policy,
        version=version,
        created_at=created_at,
        vw_args=json.loads(vw_args),
        events_learned=events,
        examples_learned=examples,
        origin=origin,
        blob=bytes(blob) if with_blob else blob,
        tried=tried,
    )


def latest_model(db: Database, policy: str) -> ModelRecord | None:
    """Return the newest model version of a policy, or None if it has none yet."""
    row = db.execute(
        f"SELECT {MODEL_COLUMNS} FROM models WHERE policy = ? ORDER BY version DESC LIMIT 1", [policy]
    ).fetchone()
    return _record(row, with_blob=True) if row else None


class ModelStamp(NamedTuple):
    """What a health check or a metric says of a policy's newest model, read without the model itself."""

    version: int
    created_at: float
    events_learned: int


def newest_stamps(db: Database) -> dict[str, ModelStamp]:
    """Return each policy's newest version, when it was made and how many events it learned (no blob read)."""
    rows = db.execute(
        "SELECT policy, version, created_at, events_learned FROM models m "
        "WHERE version = (SELECT MAX(version) FROM models WHERE policy = m.policy)"
    ).fetchall()
    return {policy: ModelStamp(int(version), float(created), int(events)) for policy, version, created, events in rows}


def latest_versions(db: Database) -> dict[str, int]:
    """Return the newest version number of every policy that has a model."""
    rows = db.execute("SELECT policy, MAX(version) FROM models GROUP BY policy").fetchall()
    return {policy: int(version) for policy, version in rows}


def publish(
    db: Database,
    *,
    policy: str,
    blob: bytes,
    vw_args: Sequence[str],
    events_learned: int,
    examples_learned: int,
    origin: str,
    keep: int,
    tried: Tried | None,
) -> int:
    """Store a new model version inside the caller's transaction, prune old ones, return the version.

    ``tried``: the counts of the actions the version learned (``bandits.model.tried``); None for a model
    whose counts are not known (an uploaded one), which explores without a bonus.
    """
    row = db.execute("SELECT COALESCE(MAX(version), -1) FROM models WHERE policy = ?", [policy]).fetchone()
    version = int(row[0]) + 1
    db.execute(
        f"INSERT INTO models ({MODEL_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            policy,
            version,
            time.time(),
            blob,
            json.dumps(list(vw_args)),
            events_learned,
            examples_learned,
            origin,
            None if tried is None else tried.dumps(),
        ],
    )
    db.execute("DELETE FROM models WHERE policy = ? AND version <= ?", [policy, version - max(1, keep)])
    return version


def ensure_models(db: Database, config: Deployment) -> None:
    """Give every policy a version-0 model (an empty workspace) if it has none."""
    missing = [name for name in POLICY_NAMES if name not in latest_versions(db)]
    if not missing:
        return
    with write_transaction(db):
        for name in missing:
            if latest_model(db, name) is not None:
                continue  # another process got there first
            publish_empty(db, config, name, origin="initial")


def publish_empty(db: Database, config: Deployment, name: str, *, origin: str) -> int:
    """Publish a new, empty model with the policy's current options, inside the caller's transaction."""
    settings = load_policy(db, config, name)
    return publish(
        db,
        policy=name,
        blob=new_workspace(settings.vw_args).serialize(),
        vw_args=settings.vw_args,
        events_learned=0,
        examples_learned=0,
        origin=origin,
        keep=config.model_versions_kept,
        tried=Tried(),
    )


class ServingModel:
    """A loaded model version: predicts cost estimates, thread-safe (VW holds the GIL anyway)."""

    def __init__(self, record: ModelRecord) -> None:
        self.version = record.version
        self.examples_learned = record.examples_learned
        self.tried = Tried.loads(record.tried)
        self.workspace = new_workspace(record.vw_args, model_data=record.blob)
        self._examples = TextExamples(self.workspace, cached_actions=CACHED_ACTION_LINES)
        self._lock = threading.Lock()
        self.blob = record.blob  # the stored bytes, for a private copy (``bandits.reports.explain.explainer_for``)

    def costs(self, shared: str, actions: Sequence[str]) -> list[float]:
        """Return VW's cost estimate of each action line, in the order given."""
        with self._lock:
            try:
                scores = self._examples.predict([shared, *actions])
            except VWError as exc:
                raise ModelFailure(
                    f"the model cannot decide right now (model version {self.version} could not score the "
                    f"candidates: {exc}); nothing was logged"
                ) from None
        costs = [0.0] * len(actions)
        for index, score in scores:
            costs[index] = score
        if not all_finite(costs):
            raise ModelFailure(
                f"the model cannot decide right now (model version {self.version} produced a non-finite cost "
                "estimate); nothing was logged"
            )
        return costs

    def scored(self, exploration: Exploration, costs: list[float], actions: Sequence[str]) -> list[float]:
        """Return the costs ``exploration`` draws from: raised by its bonus over this version's counts, if any."""
        if exploration.bonus <= 0.0:
            return costs
        return exploration.scored(costs, self.tried_of(actions))

    def tried_of(self, actions: Sequence[str]) -> list[int] | None:
        """Return how often this version learned each action line (None: the version keeps no counts)."""
        if self.tried is None:
            return None
        with self._lock:
            return self.tried.of(actions)
