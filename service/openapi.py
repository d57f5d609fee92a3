"""The OpenAPI 3.1 document served at ``/openapi.json``, built from the app's routes and its pydantic schemas.

Every route of the app is an operation here (``tests/service/test_openapi.py`` checks that none is missing
and fuzzes them all with schemathesis). Request bodies come from the same pydantic models that
validate them (``service.schemas``); responses are described by the models below, which mirror what
the views return; every client error is the common error body.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any

from flask import Flask
from pydantic import BaseModel, ConfigDict, Field

from bandits.model.policy import PolicyOverrides
from service import auth, schemas
from service.views import personalizer

REF = "#/components/schemas/{model}"


class Open(BaseModel):
    """A response body: the fields listed are always there; a later version may add more."""

    model_config = ConfigDict(extra="allow")


class ErrorDetail(Open):
    code: str = Field(description="machine-readable kind, e.g. `invalid`, `not_found`, `conflict`")
    message: str = Field(description="what is wrong, naming the field or the resource")
    details: Any = Field(default=None, description="every problem found, for a 422; otherwise null")


class ErrorBody(Open):
    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [
                {
                    "error": {
                        "code": "invalid",
                        "message": "slots: 3 requested but only 1 candidate titles are servable",
                        "details": None,
                    }
                }
            ]
        },
    )
    error: ErrorDetail


class Contribution(Open):
    namespace: str = Field(description="viewer, viewer id, title, genre or artwork")
    feature: str
    value: float
    contribution: float = Field(description="this feature's share of the estimated reward (Shapley value)")


class Explanation(Open):
    explored: bool = Field(
        description="the pick was not one of the model's best: a random draw or the exploration bonus chose it"
    )
    times_learned: int | None = Field(
        default=None,
        description="how often the serving model version learned this title or artwork (the exploration bonus "
        "shrinks as it grows); null when the version keeps no counts",
    )
    estimated_reward: float
    baseline: float = Field(description="the estimate with no feature at all (the model's constant)")
    features: list[Contribution] = Field(description="the features that moved the estimate most, largest first")
    other_features: float = Field(description="the summed contribution of the remaining features")
    feature_count: int
    greedy_title_id: str | None = None
    greedy_artwork_id: str | None = None


class SlotExplanation(Open):
    title: Explanation
    artwork: Explanation


class Slot(Open):
    position: int
    title_id: str
    artwork_id: str
    artwork_url: str
    title_probability: float = Field(gt=0, le=1)
    artwork_probability: float = Field(gt=0, le=1)
    explanation: SlotExplanation | None = None


class RankResponse(Open):
    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [
                {
                    "event_id": "e-f5f972e5440348d182f8e88556248349",
                    "model_versions": {"titles": 42, "artwork": 40},
                    "deferred": False,
                    "slots": [
                        {
                            "position": 0,
                            "title_id": "t006",
                            "artwork_id": "t006-a3",
                            "artwork_url": "/v1/artworks/t006-a3/image?w=342",
                            "title_probability": 0.93,
                            "artwork_probability": 0.96,
                        }
                    ],
                }
            ]
        },
    )
    event_id: str
    model_versions: dict[str, int]
    deferred: bool
    slots: list[Slot]
    unavailable_candidates: list[str] | None = None
    diversity: dict[str, Any] | None = Field(
        default=None, description="the row's genre constraint and whether it was met"
    )


class RewardReceipt(Open):
    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [
                {
                    "reward_id": 1,
                    "event_id": "e-f5f972e5440348d182f8e88556248349",
                    "title_id": "t006",
                    "value": 1.0,
                    "received_at": 1795513008.64,
                    "credited_policies": ["titles", "artwork"],
                    "late": False,
                    "replayed": False,
                }
            ]
        },
    )
    reward_id: int
    event_id: str
    title_id: str
    value: float
    received_at: float
    credited_policies: list[str]
    late: bool
    replayed: bool


class Activation(Open):
    event_id: str
    activated_at: float
    already_active: bool


class Artwork(Open):
    id: str
    title_id: str
    ordinal: int
    tags: list[str]
    visual: dict[str, Any]
    format: str
    width: int
    height: int
    bytes: int
    sha256: str
    active: bool
    created_at: float
    retired_at: float | None
    url: str


class Title(Open):
    id: str
    name: str
    genres: list[str]
    year: int | None
    maturity: str | None
    features: dict[str, Any]
    active: bool
    created_at: float
    updated_at: float
    artworks: list[Artwork] | None = None


class TitleList(Open):
    titles: list[Title]


class ArtworkList(Open):
    artworks: list[Artwork]


class LiveBucket(Open):
    first_event: int
    events: int
    shown: int
    rewarded: int
    title_explored: int
    artwork_explored: int
    impressions_before: int
    impressions: int
    since: float
    until: float
    rewarded_share: float
    title_explored_share: float
    artwork_explored_share: float


class LiveView(Open):
    generated_at: float
    events: int
    events_per_bucket: int
    rows_last_minute: int
    buckets: list[LiveBucket]
    models: dict[str, Any]


class ExposureValue(Open):
    value: str
    titles: float
    catalog_share: float
    impressions: float
    impression_share: float
    exposure_share: float
    exposure_ratio: float | None = Field(
        description="exposure share over catalog share; null for a value no active title has"
    )


class ExposureReport(Open):
    since: float
    until: float
    impressions: int
    active_titles: int
    titles_shown: int
    gini: dict[str, float]
    by: dict[str, list[ExposureValue]]
    new_titles: list[dict[str, Any]]
    new_artworks: list[dict[str, Any]]
    most_shown: list[dict[str, Any]]


class ApplyBody(schemas.Strict):
    candidate: str = Field(description="the name of a `vw` or `model` candidate of the finished evaluation")


class OptimizationBody(Open):
    """``bandits.evaluate.optimize.start`` checks it; docs/evaluation.md, "Automatic optimization", describes
    each field."""

    model_config = ConfigDict(extra="forbid")
    policy: str = Field(description="`titles`, `artwork` or `actions`")
    candidates: list[Any] | None = Field(
        default=None,
        description="the search space instead of the default one: VW options as text, or vw candidate objects",
    )


class ApplyFromEvaluationBody(Open):
    """Personalizer's PolicyReferenceContract (``bandits.personalizer.apply_from_evaluation`` checks it)."""

    evaluationId: str
    policyName: str


class EvaluationContract(Open):
    """Personalizer's EvaluationContract (``bandits.personalizer.create_evaluation`` checks it)."""

    name: str
    startTime: str
    endTime: str
    policies: list[dict[str, str]] | None = None
    enablePolicyOptimization: bool | None = None


class FeatureImportanceContract(Open):
    """Personalizer's FeatureImportanceContract (``bandits.personalizer.create_importance`` checks it)."""

    name: str
    startTime: str
    endTime: str


class EvaluationBody(Open):
    """``bandits.evaluate.offline.parse_spec`` checks it; docs/evaluation.md describes each field."""

    model_config = ConfigDict(extra="forbid")
    policy: str | None = Field(
        default=None, description="`titles`, `artwork` or `actions`; optional with a dataset Marquee logged"
    )
    dataset: str | None = Field(default=None, description="an imported dataset's id, instead of the log")
    candidates: list[Any] | None = Field(
        default=None, description="names (`logged`, `uniform`, `default`, `greedy`) or candidate objects"
    )
    since: Any | None = Field(default=None, description="ISO 8601 time or unix seconds")
    until: Any | None = Field(default=None, description="ISO 8601 time or unix seconds")
    segment_by: str | None = None
    folds: int | None = None
    limit: int | None = None


OBJECT = {"type": "object"}


@dataclass(frozen=True)
class Body:
    """A request body: a JSON model, or another media type with its schema."""

    media: str
    model: type[BaseModel] | None = None
    schema: dict[str, Any] | None = None
    example: Any = None


@dataclass(frozen=True)
class Param:
    name: str
    schema: dict[str, Any]
    description: str = ""


@dataclass(frozen=True)
class Operation:
    status: int  # the success status
    response: type[BaseModel] | dict[str, Any] | None = None  # JSON model or schema; None for no body
    media: str = "application/json"
    body: Body | None = None
    query: tuple[Param, ...] = ()
    extra: dict[int, str] = field(default_factory=dict)  # other successes: status -> description
    alternatives: dict[str, dict[str, Any]] = field(default_factory=dict)  # other media of the success: schema


def _json(model: type[BaseModel], example: Any) -> Body:
    return Body(media="application/json", model=model, example=example)


BOOL = {"type": "string", "enum": ["true", "false"]}
TIME = {"type": "string", "description": "ISO 8601 time or unix seconds"}
LINE_FORMAT = {"type": "string", "enum": ["dsjson", "jsonl"]}
RANK_EXAMPLE = {
    "user": {
        "id": "u-123",
        "features": {"country": "BR", "device": "tv", "hour": 21, "history_genres": ["comedy", "heist"]},
    },
    "slots": 3,
}
OPERATIONS: dict[tuple[str, str], Operation] = {
    ("POST", "/v1/rank"): Operation(200, RankResponse, body=_json(schemas.RankRequest, RANK_EXAMPLE)),
    ("POST", "/v1/events/{event_id}/reward"): Operation(
        201,
        RewardReceipt,
        body=_json(schemas.RewardRequest, {"title_id": "t007", "value": 1.0}),
        extra={200: "the same Idempotency-Key was used before: the first receipt"},
    ),
    ("POST", "/v1/events/{event_id}/activate"): Operation(200, Activation),
    ("GET", "/v1/events/{event_id}"): Operation(200, OBJECT),
    ("GET", "/v1/titles"): Operation(200, TitleList, query=(Param("include_retired", BOOL),)),
    ("POST", "/v1/titles"): Operation(
        201,
        Title,
        body=_json(
            schemas.TitleBody,
            {
                "id": "heist-night",
                "name": "Heist Night",
                "genres": ["crime", "comedy"],
                "year": 2019,
                "maturity": "PG-13",
            },
        ),
    ),
    ("GET", "/v1/titles/{title_id}"): Operation(200, Title),
    ("PUT", "/v1/titles/{title_id}"): Operation(
        200, Title, body=_json(schemas.TitleBody, {"name": "Heist Night", "genres": ["crime"]})
    ),
    ("DELETE", "/v1/titles/{title_id}"): Operation(204),
    ("GET", "/v1/titles/{title_id}/artworks"): Operation(200, ArtworkList, query=(Param("include_retired", BOOL),)),
    ("POST", "/v1/titles/{title_id}/artworks"): Operation(
        201,
        Artwork,
        body=Body(
            media="multipart/form-data",
            schema={
                "type": "object",
                "required": ["file"],
                "properties": {
                    "file": {"type": "string", "format": "binary", "description": "a JPEG, PNG or WebP image"},
                    "id": {"type": "string", "pattern": schemas.ID_PATTERN},
                    "tags": {"type": "string", "description": "comma-separated"},
                    "replaces": {
                        "type": "string",
                        "description": "an active artwork of the title, retired in the same step",
                    },
                },
            },
        ),
    ),
    ("DELETE", "/v1/artworks/{artwork_id}"): Operation(204),
    ("POST", "/v1/artworks/{artwork_id}/restore"): Operation(200, Artwork),
    ("GET", "/v1/artworks/{artwork_id}/image"): Operation(
        200,
        {"type": "string", "format": "binary"},
        media="image/*",
        query=(
            Param("w", {"type": "integer"}, "width in pixels"),
            Param("h", {"type": "integer"}, "height in pixels"),
            Param("format", {"type": "string", "enum": ["webp", "jpeg", "png"]}),
        ),
        extra={304: "not modified (If-None-Match)"},
    ),
    ("GET", "/v1/policies"): Operation(200, OBJECT),
    ("GET", "/v1/policies/{name}"): Operation(200, OBJECT),
    ("PUT", "/v1/policies/{name}"): Operation(
        200,
        OBJECT,
        body=_json(
            PolicyOverrides, {"exploration": "epsilon-greedy", "epsilon": 0.05, "vw_args": "-q UA -q GA -l 0.05"}
        ),
    ),
    ("PATCH", "/v1/policies/{name}"): Operation(200, OBJECT, body=_json(PolicyOverrides, {"epsilon": 0.05})),
    ("GET", "/v1/policies/{name}/model"): Operation(
        200, {"type": "string", "format": "binary"}, media="application/octet-stream"
    ),
    ("PUT", "/v1/policies/{name}/model"): Operation(
        201, OBJECT, body=Body(media="application/octet-stream", schema={"type": "string", "format": "binary"})
    ),
    ("POST", "/v1/policies/{name}/reset"): Operation(201, OBJECT),
    ("POST", "/v1/evaluations"): Operation(
        202,
        OBJECT,
        body=_json(
            EvaluationBody,
            {"policy": "artwork", "candidates": ["logged", "uniform", "greedy", {"kind": "vw", "vw_args": "-q UA"}]},
        ),
    ),
    ("GET", "/v1/evaluations"): Operation(200, OBJECT),
    ("GET", "/v1/evaluations/{run_id}"): Operation(200, OBJECT),
    ("POST", "/v1/evaluations/{run_id}/apply"): Operation(200, OBJECT, body=_json(ApplyBody, {"candidate": "crossed"})),
    ("POST", "/v1/optimizations"): Operation(
        202,
        OBJECT,
        body=_json(
            OptimizationBody,
            {
                "policy": "artwork",
                "candidates": ["-q UA -q IA -l 0.1", {"kind": "vw", "vw_args": "-q UA -l 0.5", "epsilon": 0.05}],
            },
        ),
    ),
    ("GET", "/v1/optimizations"): Operation(
        200, OBJECT, query=(Param("policy", {"type": "string", "enum": ["titles", "artwork", "actions"]}),)
    ),
    ("GET", "/v1/optimizations/{optimization_id}"): Operation(200, OBJECT),
    ("GET", "/v1/tastes"): Operation(
        200, OBJECT, query=(Param("user_id", {"type": "string", "minLength": 1, "maxLength": 128}),)
    ),
    ("POST", "/v1/optimizations/{optimization_id}/rollback"): Operation(200, OBJECT),
    ("GET", "/v1/logs/export"): Operation(
        200,
        {"type": "string"},
        media="application/x-ndjson",
        alternatives={"application/vnd.apache.parquet": {"type": "string", "format": "binary"}},
        query=(
            Param("format", {"type": "string", "enum": ["dsjson", "jsonl", "parquet"]}),
            Param("policy", {"type": "string", "enum": ["artwork", "titles", "actions"]}),
            Param("since", TIME),
            Param("until", TIME),
        ),
    ),
    ("POST", "/v1/datasets"): Operation(
        201,
        OBJECT,
        body=Body(
            media="application/x-ndjson",
            schema={"type": "string", "description": "the log file, one JSON object per line"},
        ),
        query=(
            Param("format", LINE_FORMAT),
            Param("name", {"type": "string"}),
            Param(
                "policy",
                {"type": "string", "enum": ["actions"]},
                "read another service's DSJson as the actions policy's",
            ),
        ),
    ),
    ("GET", "/v1/datasets"): Operation(200, OBJECT),
    ("GET", "/v1/datasets/{dataset_id}"): Operation(200, OBJECT),
    ("DELETE", "/v1/datasets/{dataset_id}"): Operation(204),
    ("GET", "/v1/policies/{name}/importance"): Operation(
        200,
        OBJECT,
        query=(
            Param(
                "decisions",
                {"type": "integer", "minimum": 1, "maximum": 2000},
                "the most recent closed decisions to explain",
            ),
        ),
    ),
    ("POST", "/v1/policies/{name}/warm-start"): Operation(
        201,
        OBJECT,
        body=_json(schemas.WarmStartBody, {"dataset": "ds-e76effb7e713471f", "start": "empty", "passes": 1}),
    ),
    ("GET", "/v1/policies/{name}/apprentice"): Operation(
        200,
        OBJECT,
        query=(
            Param(
                "events", {"type": "integer", "minimum": 1, "maximum": 20_000}, "the most recent closed events to read"
            ),
        ),
    ),
    ("POST", "/personalizer/v1.0/rank"): Operation(
        201,
        OBJECT,
        body=_json(
            schemas.PersonalizerRankRequest,
            {
                "contextFeatures": [{"user": {"profileType": "AnonymousUser"}}, {"device": {"mobile": True}}],
                "actions": [
                    {"id": "news", "features": [{"type": "article", "length": 3}]},
                    {"id": "sports", "features": [{"type": "article", "length": 1}]},
                ],
                "excludedActions": [],
                "eventId": "75269AD0-BFEE-4598-8196-C57383D38E10",
                "deferActivation": False,
            },
        ),
    ),
    ("POST", "/personalizer/v1.0/events/{event_id}/reward"): Operation(
        204, None, body=_json(schemas.PersonalizerRewardRequest, {"value": 1.0})
    ),
    ("POST", "/personalizer/v1.0/events/{event_id}/activate"): Operation(204, None),
    ("GET", "/personalizer/v1.0/configurations/service"): Operation(200, OBJECT),
    ("PUT", "/personalizer/v1.0/configurations/service"): Operation(
        200,
        OBJECT,
        body=_json(
            schemas.PersonalizerServiceConfiguration,
            {
                "rewardWaitTime": "PT10M",
                "defaultReward": 0.0,
                "rewardAggregation": "earliest",
                "explorationPercentage": 0.2,
                "learningMode": "Online",
            },
        ),
    ),
    ("POST", "/personalizer/v1.0/multislot/rank"): Operation(
        201,
        OBJECT,
        body=_json(
            schemas.PersonalizerMultiSlotRankRequest,
            {
                "contextFeatures": [{"time": "morning"}, {"device": "mobile"}],
                "actions": [
                    {"id": "Red-Polo-Shirt-432", "features": [{"onSale": "true", "price": 20, "category": "Clothing"}]},
                    {"id": "Tennis-Racket-133", "features": [{"onSale": "false", "price": 70, "category": "Sports"}]},
                    {
                        "id": "XBox-Series-X-117",
                        "features": [{"onSale": "false", "price": 499, "category": "Electronics"}],
                    },
                ],
                "slots": [
                    {
                        "id": "BigHeroPosition",
                        "features": [{"size": "large", "position": "left"}],
                        "excludedActions": ["XBox-Series-X-117"],
                        "baselineAction": "Red-Polo-Shirt-432",
                    },
                    {
                        "id": "SmallSidebar",
                        "features": [{"size": "small", "position": "right"}],
                        "excludedActions": ["Tennis-Racket-133"],
                        "baselineAction": "XBox-Series-X-117",
                    },
                ],
                "deferActivation": False,
            },
        ),
    ),
    ("POST", "/personalizer/v1.0/multislot/events/{event_id}/reward"): Operation(
        204,
        None,
        body=_json(
            schemas.PersonalizerMultiSlotRewardRequest, {"reward": [{"slotId": "BigHeroPosition", "value": 1.0}]}
        ),
    ),
    ("POST", "/personalizer/v1.0/multislot/events/{event_id}/activate"): Operation(204, None),
    ("GET", "/personalizer/v1.0/configurations/policy"): Operation(200, OBJECT),
    ("PUT", "/personalizer/v1.0/configurations/policy"): Operation(
        200,
        OBJECT,
        body=_json(
            schemas.PersonalizerPolicyConfiguration,
            {"name": "actions", "arguments": "--cb_explore_adf --epsilon 0.2 -q :: -l 0.05"},
        ),
    ),
    ("DELETE", "/personalizer/v1.0/configurations/policy"): Operation(200, OBJECT),
    ("POST", "/personalizer/v1.0/configurations/applyFromEvaluation"): Operation(
        204, None, body=_json(ApplyFromEvaluationBody, {"evaluationId": "my-evaluation", "policyName": "custom 1"})
    ),
    ("GET", "/personalizer/v1.0/model"): Operation(
        200, {"type": "string", "format": "binary"}, media="application/octet-stream", query=(Param("signed", BOOL),)
    ),
    ("PUT", "/personalizer/v1.0/model"): Operation(
        204, None, body=Body(media="application/octet-stream", schema={"type": "string", "format": "binary"})
    ),
    ("DELETE", "/personalizer/v1.0/model"): Operation(204, None),
    ("GET", "/personalizer/v1.0/model/properties"): Operation(200, OBJECT),
    ("GET", "/personalizer/v1.0/logs/properties"): Operation(200, OBJECT),
    ("DELETE", "/personalizer/v1.0/logs"): Operation(204, None),
    ("POST", "/personalizer/v1.0/logs/interactions"): Operation(204, None),
    ("POST", "/personalizer/v1.0/logs/observations"): Operation(204, None),
    ("PUT", "/personalizer/v1.0/evaluations/{evaluation_id}"): Operation(
        200,
        None,
        body=_json(
            EvaluationContract,
            {
                "name": "last week",
                "startTime": "2026-11-23T00:00:00Z",
                "endTime": "2026-11-30T00:00:00Z",
                "enablePolicyOptimization": True,
                "policies": [{"name": "custom 1", "arguments": "--cb_explore_adf --epsilon 0.1 -q CX"}],
            },
        ),
    ),
    ("GET", "/personalizer/v1.0/evaluations/{evaluation_id}"): Operation(
        200,
        OBJECT,
        query=(
            Param("startTime", {"type": "string"}),
            Param("endTime", {"type": "string"}),
            Param("intervalInMinutes", {"type": "integer"}),
            Param("window", {"type": "string"}),
        ),
    ),
    ("GET", "/personalizer/v1.0/evaluations"): Operation(
        200,
        OBJECT,
        query=(
            Param("filter", {"type": "string"}),
            Param("top", {"type": "integer", "minimum": 0, "maximum": 1_000_000}),
            Param("skip", {"type": "integer", "minimum": 0, "maximum": 1_000_000}),
        ),
    ),
    ("DELETE", "/personalizer/v1.0/evaluations/{evaluation_id}"): Operation(204, None),
    ("PUT", "/personalizer/v1.0/featureImportances/{importance_id}"): Operation(
        200,
        None,
        body=_json(
            FeatureImportanceContract,
            {"name": "last week", "startTime": "2026-11-23T00:00:00Z", "endTime": "2026-11-30T00:00:00Z"},
        ),
    ),
    ("GET", "/personalizer/v1.0/featureImportances/{importance_id}"): Operation(200, OBJECT),
    ("GET", "/personalizer/v1.0/featureImportances"): Operation(
        200,
        OBJECT,
        query=(
            Param("top", {"type": "integer", "minimum": 0, "maximum": 1_000_000}),
            Param("skip", {"type": "integer", "minimum": 0, "maximum": 1_000_000}),
        ),
    ),
    ("DELETE", "/personalizer/v1.0/featureImportances/{importance_id}"): Operation(204, None),
    ("GET", "/v1/reports/exposure"): Operation(
        200,
        ExposureReport,
        query=(
            Param(
                "days",
                {"type": "number", "exclusiveMinimum": 0, "maximum": 3650},
                "the window: the last this many days",
            ),
            Param("by", {"type": "string"}, "comma-separated attributes: genre, year, maturity, features.<name>"),
            Param(
                "new_days",
                {"type": "number", "exclusiveMinimum": 0, "maximum": 365},
                "how long a title or artwork counts as new",
            ),
        ),
    ),
    ("GET", "/v1/live"): Operation(
        200,
        LiveView,
        query=(
            Param("points", {"type": "integer", "minimum": 1, "maximum": 200}),
            Param("span", {"type": "integer", "minimum": 1, "maximum": 100_000}),
        ),
    ),
    ("GET", "/live"): Operation(
        200,
        {"type": "string"},
        media="text/html",
        query=(
            Param("points", {"type": "integer", "minimum": 1, "maximum": 200}),
            Param("span", {"type": "integer", "minimum": 1, "maximum": 100_000}),
            Param("fragment", {"type": "string"}),
        ),
    ),
    ("GET", "/evaluations"): Operation(200, {"type": "string"}, media="text/html"),
    ("GET", "/optimizations"): Operation(200, {"type": "string"}, media="text/html"),
    ("GET", "/dashboard"): Operation(
        200,
        {"type": "string"},
        media="text/html",
        query=(
            Param(
                "span", {"type": "integer", "minimum": 100, "maximum": 100_000}, "the most recent rows the charts cover"
            ),
            Param("segment", {"type": "string"}, "the viewer feature whose values the winning-artwork table compares"),
        ),
    ),
    ("GET", "/evaluations/{run_id}"): Operation(
        200, {"type": "string"}, media="text/html", extra={404: "no such evaluation (an HTML page saying so)"}
    ),
    ("GET", "/metrics"): Operation(200, {"type": "string"}, media="text/plain"),
    ("GET", "/healthz"): Operation(200, OBJECT, extra={503: "degraded: the learner should run and does not"}),
    ("GET", "/openapi.json"): Operation(200, OBJECT),
}
# The Personalizer-compatible API answers under its v1.1-preview.1 path, and under /personalizer with
# the api-version in the query, as well (service.views.personalizer).
API_VERSION = Param("api-version", {"type": "string", "enum": list(personalizer.API_VERSIONS)}, "required here")
for (_method, _path), _operation in list(OPERATIONS.items()):
    if _path.startswith(personalizer.V1_PREFIX + "/"):
        _rest = _path[len(personalizer.V1_PREFIX) :]
        OPERATIONS[(_method, personalizer.PREVIEW_PREFIX + _rest)] = _operation
        OPERATIONS[(_method, personalizer.REST_PREFIX + _rest)] = replace(
            _operation, query=(API_VERSION, *_operation.query)
        )
SKIPPED_ENDPOINTS = ("static",)
ID = {"type": "string", "pattern": schemas.ID_PATTERN}
PATH_PARAMETERS = {"name": {"type": "string", "enum": ["titles", "artwork", "actions"]}}


def path_of(rule: str) -> str:
    """Return the OpenAPI path of a Flask rule: ``<name>`` and ``<conv:name>`` become ``{name}``."""
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule)


def routes(app: Flask) -> list[tuple[str, str, str]]:
    """Return (method, OpenAPI path, endpoint) of every route the app serves, but static files."""
    found = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint in SKIPPED_ENDPOINTS:
            continue
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            found.append((method, path_of(rule.rule), rule.endpoint))
    return sorted(found, key=lambda item: (item[1], item[0]))


def _security(endpoint: str) -> dict[str, Any]:
    """Return the operation's security requirement and the role it needs (``service.auth``)."""
    if endpoint in auth.PUBLIC_ENDPOINTS:
        return {"security": []}
    role = auth.CLIENT if endpoint in auth.CLIENT_ENDPOINTS else auth.ADMIN
    schemes: list[dict[str, list[str]]] = [{"apiKey": []}]
    if endpoint in auth.PAGE_ENDPOINTS or endpoint in auth.LINKED_ENDPOINTS:
        schemes.append({"basic": []})
    return {"security": schemes, "x-marquee-role": role}


def _content(media: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {media: {"schema": schema}}


def document(app: Flask) -> dict[str, Any]:
    """Return the OpenAPI document of the app's routes.

    Raises:
        KeyError: a route has no entry in ``OPERATIONS`` (a new view must be described here).
    """
    models: list[type[BaseModel]] = [ErrorBody]
    paths: dict[str, dict[str, Any]] = {}
    error = {"$ref": REF.format(model="ErrorBody")}
    for method, path, endpoint in routes(app):
        spec = OPERATIONS[method, path]
        doc = (app.view_functions[endpoint].__doc__ or endpoint).strip()
        summary, _, description = doc.partition("\n")
        operation: dict[str, Any] = {
            "operationId": endpoint.replace(".", "_"),
            "summary": summary.strip(),
            "tags": [endpoint.split(".")[0]],
            **_security(endpoint),
        }
        if description.strip():
            operation["description"] = " ".join(description.split())
        parameters = [
            {"name": name, "in": "path", "required": True, "schema": PATH_PARAMETERS.get(name, ID)}
            for name in re.findall(r"{([^}]+)}", path)
        ]
        parameters += [
            {
                "name": p.name,
                "in": "query",
                "required": False,
                "schema": p.schema,
                **({"description": p.description} if p.description else {}),
            }
            for p in spec.query
        ]
        if method == "POST" and path == "/v1/events/{event_id}/reward":
            parameters.append(
                {
                    "name": "Idempotency-Key",
                    "in": "header",
                    "required": False,
                    "schema": {"type": "string", "minLength": 1, "maxLength": 200},
                }
            )
        if parameters:
            operation["parameters"] = parameters
        if spec.body is not None:
            if spec.body.model is not None:
                models.append(spec.body.model)
                schema = {"$ref": REF.format(model=spec.body.model.__name__)}
            else:
                schema = spec.body.schema or {}
            content = _content(spec.body.media, schema)
            if spec.body.example is not None:
                content[spec.body.media]["example"] = spec.body.example
            operation["requestBody"] = {"required": True, "content": content}
        responses: dict[str, Any] = {}
        if isinstance(spec.response, type):
            models.append(spec.response)
            success: dict[str, Any] = {
                "description": "done",
                "content": _content(spec.media, {"$ref": REF.format(model=spec.response.__name__)}),
            }
        elif spec.response is not None:
            success = {"description": "done", "content": _content(spec.media, spec.response)}
            for media, schema in spec.alternatives.items():
                success["content"].update(_content(media, schema))
        else:
            success = {"description": "done; no body"}
        responses[str(spec.status)] = success
        for status, text in spec.extra.items():
            responses[str(status)] = {
                "description": text,
                **({"content": success["content"]} if "content" in success and status not in (304,) else {}),
            }
        responses.setdefault("404", {"description": "unknown resource", "content": _content("application/json", error)})
        responses["4XX"] = {
            "description": "a client mistake; the message says what to change",
            "content": _content("application/json", error),
        }
        responses["503"] = {
            "description": "the database stayed locked or is unwritable, or the model cannot decide; "
            "nothing was stored",
            "content": _content("application/json", error),
        }
        operation["responses"] = responses
        paths.setdefault(path, {})[method.lower()] = operation
    components: dict[str, Any] = {}
    for model in models:
        found = model.model_json_schema(ref_template=REF)
        for name, definition in found.pop("$defs", {}).items():
            components[name] = definition
        components[model.__name__] = found
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Marquee",
            "version": "1",
            "description": "Titles and artwork for each viewer, chosen by contextual bandits; impressions "
            "logged with their propensities; offline policy evaluation.",
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "apiKey": {
                    "type": "apiKey",
                    "in": "header",
                    "name": auth.HEADER,
                    "description": "a client key (rank, reward, read) or an admin key (everything)",
                },
                "basic": {"type": "http", "scheme": "basic", "description": "pages only: an admin key as the password"},
            },
        },
    }
