"""Request bodies, validated with pydantic; every failure becomes a 422 that names the field."""

from __future__ import annotations

import difflib
import json
import math
from typing import Any, Literal

from flask import Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from assets.catalog import ID_PATTERN, check_id  # noqa: F401  (re-exported for the views)
from bandits.decide.inline import MAX_ACTIONS, MAX_SLOTS
from bandits.model.policy import ACTIONS
from service.errors import Invalid, UnsupportedMedia

MAX_DEPTH = 32
MAX_INT_DIGITS = 15
MAX_FEATURES = 200
MAX_NAME = 64
MAX_STRING = 256
MAX_LIST = 100
MAX_IDS = 2000


def check_features(features: dict[str, Any]) -> dict[str, Any]:
    """Check a feature mapping: string -> categorical, finite number -> numeric, list of strings."""
    if len(features) > MAX_FEATURES:
        raise ValueError(f"at most {MAX_FEATURES} features")
    for name, value in features.items():
        if not 0 < len(name) <= MAX_NAME:
            raise ValueError(f"feature name {name!r} must be 1-{MAX_NAME} characters")
        if isinstance(value, str):
            if len(value) > MAX_STRING:
                raise ValueError(f"{name}: strings are at most {MAX_STRING} characters")
        elif isinstance(value, bool):
            continue
        elif isinstance(value, (int, float)):
            if not math.isfinite(float(value)) or abs(float(value)) > 1e12:
                raise ValueError(f"{name}: numbers must be finite and at most 1e12 in size")
        elif isinstance(value, list):
            if len(value) > MAX_LIST:
                raise ValueError(f"{name}: lists hold at most {MAX_LIST} strings")
            for item in value:
                if not isinstance(item, str) or len(item) > MAX_STRING:
                    raise ValueError(f"{name}: list items must be strings of at most {MAX_STRING} characters")
        else:
            raise ValueError(f"{name}: a feature value must be a string, a number, a boolean or a list of strings")
    return features


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class User(Strict):
    id: str | None = Field(default=None, max_length=128)
    features: dict[str, Any] = Field(default_factory=dict)

    _features = field_validator("features")(check_features)


class DiversityBody(Strict):
    """A row's genre constraint for one request; a field left out keeps the titles policy's setting."""

    max_per_genre: int = Field(
        default=0, ge=0, le=100, description="At most this many titles of one genre (0: no cap)."
    )
    min_genres: int = Field(
        default=0, ge=0, le=100, description="At least this many genres in the row (0: no minimum)."
    )


class RankRequest(Strict):
    user: User = Field(default_factory=User)
    slots: int = Field(default=10, ge=1)
    candidates: list[str] | None = Field(default=None, max_length=MAX_IDS)
    exclude: list[str] = Field(default_factory=list, max_length=MAX_IDS)
    event_id: str | None = Field(default=None, pattern=ID_PATTERN)
    defer_activation: bool = False
    explain: bool = False
    diversity: DiversityBody | None = None


REWARD_TYPES = ("click", "play", "completed", "thumbs_up", "thumbs_down")  # as bandits.model.policy.REWARD_TYPES


class RewardRequest(Strict):
    """A reward for one shown title: a number, or the name of an outcome whose value each policy sets."""

    title_id: str = Field(min_length=1, max_length=128)
    value: float | None = Field(default=None, ge=-1.0, le=1.0, description="the reward, in [-1, 1]")
    type: Literal["click", "play", "completed", "thumbs_up", "thumbs_down"] | None = Field(
        default=None, description="an outcome instead of a number; each policy's `reward_values` give its value"
    )

    @field_validator("value", mode="before")
    @classmethod
    def _number(cls, value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError("must be a number in [-1, 1]")
        return float(value)

    @model_validator(mode="after")
    def _one_of(self) -> RewardRequest:
        if (self.value is None) == (self.type is None):
            raise ValueError(
                "give either value (a number in [-1, 1]) or type (" + ", ".join(REWARD_TYPES) + "), not both"
            )
        return self


class TitleBody(Strict):
    id: str | None = Field(default=None, pattern=ID_PATTERN)
    name: str = Field(min_length=1, max_length=300)
    genres: list[str] = Field(default_factory=list, max_length=20)
    year: int | None = Field(default=None, ge=1870, le=2100)
    maturity: str | None = Field(default=None, min_length=1, max_length=16)
    features: dict[str, Any] = Field(default_factory=dict)

    _features = field_validator("features")(check_features)

    @field_validator("genres")
    @classmethod
    def _genres(cls, value: list[str]) -> list[str]:
        for genre in value:
            if not 0 < len(genre) <= MAX_NAME:
                raise ValueError(f"genre {genre!r} must be 1-{MAX_NAME} characters")
        return list(dict.fromkeys(value))


def check_title(body: dict[str, Any]) -> dict[str, Any]:
    """Check a title's fields as ``POST /v1/titles`` does; return them, or raise ``ValueError`` naming the field.

    For rows that are not requests (the bulk import's manifest: ``assets.bulk``).
    """
    try:
        return TitleBody.model_validate(body).model_dump()
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        raise ValueError(f"{'.'.join(map(str, first['loc']))}: {first['msg']}") from None


class WarmStartBody(Strict):
    """What ``POST /v1/policies/{name}/warm-start`` learns from (``bandits.learn.warmstart``)."""

    dataset: str = Field(min_length=1, max_length=64, description="a ready dataset in the policy's encoding")
    start: str = Field(default="empty", description="empty (a new model) or newest (keep what the policy learned)")
    passes: int = Field(default=1, ge=1, le=10)


def _location(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc) or "body"


def _message(error: Any, model: type[BaseModel]) -> str:
    """Pydantic's message, and for a field the model does not have, the fields it does (the closest first)."""
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] != "extra_forbidden" or len(error["loc"]) != 1:
        return message
    fields = list(model.model_fields)
    close = difflib.get_close_matches(str(error["loc"][0]), fields, n=1)
    return f"not a field{f' (did you mean {close[0]!r}?)' if close else ''}; the fields are {', '.join(fields)}"


def check_json(value: Any, path: str = "body", depth: int = 0) -> None:
    """Refuse what no field may hold: deep nesting, text that is not valid Unicode or holds NUL, integers too long.

    NUL (U+0000) is refused in every text, keys included: PostgreSQL cannot store it in text, and a
    value one store keeps and the other cannot is refused by both.
    """
    if depth > MAX_DEPTH:
        raise Invalid(f"{path}: nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise Invalid(
                f"{path}: text holds an unpaired surrogate (\\ud800-\\udfff), which is not valid Unicode"
            ) from None
        if "\x00" in value:
            raise Invalid(f"{path}: text holds a NUL character (\\u0000), which no field may hold")
    elif isinstance(value, bool):
        return
    elif isinstance(value, int):
        if len(str(abs(value))) > MAX_INT_DIGITS:
            raise Invalid(f"{path}: integers have at most {MAX_INT_DIGITS} digits")
    elif isinstance(value, dict):
        for key, item in value.items():
            check_json(key, f"{path} (a key)", depth + 1)
            check_json(item, f"{path}.{key}", depth + 1)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            check_json(item, f"{path}[{index}]", depth + 1)


class DuplicateKey(ValueError):
    """A JSON object names the same key twice (which value was meant is anyone's guess)."""


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise DuplicateKey(key)
        found[key] = value
    return found


def json_object(request: Request) -> dict[str, Any]:
    """Return the JSON object body of ``request``; raise 415 or 422 saying what is wrong with it."""
    if not request.is_json:
        raise UnsupportedMedia("the request body must be JSON (Content-Type: application/json)")
    try:
        data = json.loads(request.get_data(cache=True).decode("utf-8"), object_pairs_hook=_unique_keys)
    except DuplicateKey as exc:
        raise Invalid(f"the request body has the key {exc.args[0]!r} twice in one object; send it once") from None
    except RecursionError:
        raise Invalid(f"the request body is nested deeper than {MAX_DEPTH} levels") from None
    except json.JSONDecodeError as exc:
        raise Invalid(
            f"the request body is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno} "
            f"(character {exc.pos})"
        ) from None
    except (UnicodeDecodeError, ValueError):
        raise Invalid("the request body is not valid JSON: it is not UTF-8 text") from None
    if not isinstance(data, dict):
        raise Invalid("the request body must be a JSON object")
    check_json(data)
    return data


def parse(model: type[BaseModel], request: Request) -> Any:
    """Parse the JSON body of ``request`` into ``model``; raise 415 or 422 with the offending path."""
    data = json_object(request)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = [
            {"path": _location(error["loc"]), "message": _message(error, model)}
            for error in exc.errors(include_url=False)
        ]
        first = problems[0]
        raise Invalid(f"{first['path']}: {first['message']}", details=problems) from None


# ---------------------------------------------------------------- the Personalizer-compatible API
# Bodies of service.views.personalizer, in Personalizer's own field names.


class PersonalizerAction(Strict):
    id: str = Field(min_length=1, max_length=128, description="the action's id, unique in the request")
    features: list[dict[str, Any]] = Field(default_factory=list, max_length=50)


class PersonalizerRankRequest(Strict):
    contextFeatures: list[dict[str, Any]] = Field(default_factory=list, max_length=50)
    actions: list[PersonalizerAction] = Field(min_length=1, max_length=MAX_ACTIONS)
    excludedActions: list[str] = Field(default_factory=list, max_length=MAX_ACTIONS)
    eventId: str | None = Field(default=None, max_length=128)
    deferActivation: bool = False


class PersonalizerRewardRequest(Strict):
    value: float = Field(ge=-1.0, le=1.0)


class PersonalizerSlot(Strict):
    id: str = Field(min_length=1, max_length=128, description="the slot's id, unique in the request")
    features: list[dict[str, Any]] = Field(default_factory=list, max_length=50)
    excludedActions: list[str] = Field(default_factory=list, max_length=MAX_ACTIONS)
    baselineAction: str = Field(min_length=1, max_length=128, description="the action the slot shows without Marquee")


class PersonalizerMultiSlotRankRequest(Strict):
    contextFeatures: list[dict[str, Any]] = Field(default_factory=list, max_length=50)
    actions: list[PersonalizerAction] = Field(min_length=1, max_length=MAX_ACTIONS)
    slots: list[PersonalizerSlot] = Field(min_length=1, max_length=MAX_SLOTS)
    eventId: str | None = Field(default=None, max_length=128)
    deferActivation: bool = False


class PersonalizerSlotReward(Strict):
    slotId: str = Field(min_length=1, max_length=128)
    value: float = Field(ge=-1.0, le=1.0)


class PersonalizerMultiSlotRewardRequest(Strict):
    reward: list[PersonalizerSlotReward] = Field(min_length=1, max_length=MAX_SLOTS * 4)


class PersonalizerServiceConfiguration(Strict):
    rewardWaitTime: str = Field(max_length=64)
    defaultReward: float = Field(ge=-1.0, le=1.0)
    rewardAggregation: str = Field(max_length=16)
    explorationPercentage: float = Field(ge=0.0, le=1.0)
    learningMode: str | None = None
    isAutoOptimizationEnabled: bool | None = None
    isInferenceExplainabilityEnabled: bool | None = None
    modelExportFrequency: Any | None = None
    logMirrorEnabled: Any | None = None
    logMirrorSasUri: Any | None = None
    logRetentionDays: Any | None = None
    modelRetrainDays: Any | None = None
    autoOptimizationFrequency: Any | None = None
    autoOptimizationStartDate: Any | None = None
    lastConfigurationEditDate: Any | None = None
    latestApprenticeModeMetrics: Any | None = None


class PersonalizerPolicyConfiguration(Strict):
    name: str = Field(default=ACTIONS, max_length=256)
    arguments: str = Field(max_length=2000)
