"""Logged decisions out of Marquee: VW DSJson and flat JSON lines, one line per decision.

DSJson is the format Vowpal Wabbit's own tools (and Azure Personalizer's logs) use for contextual
bandit decisions: the features as JSON namespaces, the chosen action, its cost and probability.
Marquee writes each VW text token as a JSON feature VW hashes to the same feature: a token ``name``
becomes ``"name": true`` and ``name:value`` becomes ``"name": value``, in a namespace of the same
name, so a workspace reading the export sees exactly the features Marquee's policies learned from.

The flat JSON-lines form keeps the VW text lines themselves, with ids and the viewer's features, for
tools that are not VW. Parquet holds the same columns as the JSON lines, typed, for pandas, Spark
and DuckDB users; it is written a chunk of events at a time (a row group each), so a log larger
than memory exports in the memory of one chunk.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import IO, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from bandits.log.rounds import Rounds
from bandits.vw import features

FORMATS = ("dsjson", "jsonl")  # text formats, one line per decision
PARQUET = "parquet"
EXPORT_FORMATS = (*FORMATS, PARQUET)
# One row per decision; ``viewer`` is the viewer's features as JSON text (their values are of mixed types).
PARQUET_SCHEMA = pa.schema(
    [
        ("policy", pa.string()),
        ("event_id", pa.string()),
        ("position", pa.int32()),
        ("timestamp", pa.timestamp("us", tz="UTC")),
        ("viewer", pa.string()),
        ("shared", pa.string()),
        ("action_ids", pa.list_(pa.string())),
        ("action_features", pa.list_(pa.string())),
        ("chosen", pa.int32()),
        ("probability", pa.float64()),
        ("reward", pa.float64()),
    ]
)


def namespaces(line: str) -> dict[str, dict[str, Any]]:
    """Return the namespaces of a VW text line (without label or ``shared``) as DSJson feature objects.

    Repeated tokens add up, as they do when VW reads the text line.
    """
    found: dict[str, dict[str, Any]] = {}
    for name, tokens in features.sections(line):
        group = found.setdefault(name, {})
        for token in tokens:
            feature, value = features.token_value(token)
            number = 1.0 if value is None else value
            if feature in group:
                previous = group[feature]
                group[feature] = (1.0 if previous is True else previous) + number
            else:
                group[feature] = True if value is None else number
    return found


def _timestamp(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def dsjson_line(rounds: Rounds, i: int) -> str:
    """Return round ``i`` as one DSJson line.

    ``a`` and ``p`` hold the chosen action (1-based) and its probability only: Marquee logs the
    probability of the action it chose, not its whole distribution.
    """
    chosen = int(rounds.chosen[i])
    probability = min(1.0, max(features.MIN_PROBABILITY, float(rounds.pscore[i])))
    start = int(rounds.offsets[i])
    context: dict[str, Any] = dict(namespaces(features.without_shared(rounds.shared[i])))
    context["_multi"] = [namespaces(line) for line in rounds.actions(i)]
    record = {
        "_label_cost": features.cost_of(float(rounds.reward[i])),
        "_label_probability": probability,
        "_label_Action": chosen + 1,
        "_labelIndex": chosen,
        "Timestamp": _timestamp(float(rounds.created_at[i])),
        "Version": "1",
        "EventId": f"{rounds.event_ids[i]}/{int(rounds.position[i])}",
        "a": [chosen + 1],
        "p": [probability],
        "c": context,
        "marquee": {
            "policy": rounds.policy,
            "event_id": rounds.event_ids[i],
            "position": int(rounds.position[i]),
            "action_ids": rounds.action_ids[start : int(rounds.offsets[i + 1])],
            "reward": float(rounds.reward[i]),
            "viewer": rounds.contexts[i],
        },
    }
    return json.dumps(record, separators=(",", ":"))


def jsonl_line(rounds: Rounds, i: int) -> str:
    """Return round ``i`` as one flat JSON line with the VW text lines as logged."""
    start, stop = int(rounds.offsets[i]), int(rounds.offsets[i + 1])
    record = {
        "policy": rounds.policy,
        "event_id": rounds.event_ids[i],
        "position": int(rounds.position[i]),
        "timestamp": float(rounds.created_at[i]),
        "viewer": rounds.contexts[i],
        "shared": rounds.shared[i],
        "actions": [
            {"id": action_id, "features": line}
            for action_id, line in zip(rounds.action_ids[start:stop], rounds.actions(i))
        ],
        "chosen": int(rounds.chosen[i]),
        "probability": float(rounds.pscore[i]),
        "reward": float(rounds.reward[i]),
    }
    return json.dumps(record, separators=(",", ":"))


def lines(rounds: Rounds, fmt: str) -> Iterator[str]:
    """Yield every round in ``fmt`` (``dsjson`` or ``jsonl``), oldest first, each line ending in a newline."""
    if fmt not in FORMATS:
        raise ValueError(f"format: must be one of {', '.join(FORMATS)}, got {fmt!r}")
    write = dsjson_line if fmt == "dsjson" else jsonl_line
    for i in range(len(rounds)):
        yield write(rounds, i) + "\n"


def parquet_table(rounds: Rounds) -> pa.Table:
    """Return the rounds as a table of ``PARQUET_SCHEMA``: one row per decision, its actions as lists."""
    offsets = pa.array(rounds.offsets.astype(np.int32))
    lines = [line for i in range(len(rounds)) for line in rounds.actions(i)]
    return pa.table(
        {
            "policy": pa.array([rounds.policy] * len(rounds), pa.string()),
            "event_id": pa.array(rounds.event_ids, pa.string()),
            "position": pa.array(rounds.position.astype(np.int32)),
            "timestamp": pa.array((rounds.created_at * 1e6).round().astype(np.int64), pa.timestamp("us", tz="UTC")),
            "viewer": pa.array(
                [json.dumps(context, separators=(",", ":")) for context in rounds.contexts], pa.string()
            ),
            "shared": pa.array(rounds.shared, pa.string()),
            "action_ids": pa.ListArray.from_arrays(offsets, pa.array(rounds.action_ids, pa.string())),
            "action_features": pa.ListArray.from_arrays(offsets, pa.array(lines, pa.string())),
            "chosen": pa.array(rounds.chosen.astype(np.int32)),
            "probability": pa.array(rounds.pscore.astype(float)),
            "reward": pa.array(rounds.reward.astype(float)),
        },
        schema=PARQUET_SCHEMA,
    )


def write_parquet(chunks: Iterable[Rounds], sink: str | IO[bytes]) -> int:
    """Write the chunks' decisions to ``sink`` (a path or a binary file) as Parquet; return how many were written.

    Each chunk is one row group; a log with no decision is a valid file with the schema and no rows.
    """
    written = 0
    with pq.ParquetWriter(sink, PARQUET_SCHEMA, compression="zstd") as writer:
        for chunk in chunks:
            if len(chunk):
                writer.write_table(parquet_table(chunk))
                written += len(chunk)
    return written
