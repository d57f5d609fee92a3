"""Log export: every DSJson line parses with VW's own parser into the features Marquee learned from."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import vowpal_wabbit_next as vw

from bandits.evaluate import offline
from bandits.log import logexport
from bandits.log import rounds as rounds_module
from bandits.vw.workspace import TextExamples
from tests.worlds import LoggedWorld


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> LoggedWorld:
    return LoggedWorld(tmp_path_factory.mktemp("export"), events=120)


def test_namespaces_turn_tokens_into_the_same_vw_features():
    assert logexport.namespaces("|U country=BR hour:21 tag=a%20b tag=a%20b |I id=u1") == {
        "U": {"country=BR": True, "hour": 21.0, "tag=a%20b": 2.0},
        "I": {"id=u1": True},
    }


@pytest.mark.parametrize("policy", ["artwork", "titles"])
def test_every_dsjson_line_parses_and_scores_as_the_logged_text(world, policy):
    response = world.client.get(f"/v1/logs/export?format=dsjson&policy={policy}")
    assert response.status_code == 200 and response.mimetype == "application/x-ndjson"
    lines = response.get_data(as_text=True).splitlines()
    rounds = offline.from_log(world.db, policy=policy, aggregation="earliest", default_reward=0.0)
    assert len(lines) == len(rounds) == int(response.headers["X-Marquee-Decisions"]) == 120 * 4
    # A workspace trained on the logged text; parsing the export with VW's DSJson parser must give
    # the very same features, so the same scores for every action.
    args = ["--cb_adf", "-q", "UA", "-q", "GA"] if policy == "artwork" else ["--cb_adf", "-q", "UT", "-q", "UG"]
    workspace = vw.Workspace(args)
    text = TextExamples(workspace)
    for i in range(len(rounds)):
        text.learn(rounds.example(i, labeled=True))
    parser = vw.DSJsonFormatParser(workspace)
    for i, line in enumerate(lines):
        record = json.loads(line)
        examples = parser.parse_json(line)
        assert len(examples) == 1 + int(rounds.sizes[i])
        chosen = record["_labelIndex"]
        label = examples[1 + chosen].get_label()
        assert label.label[1:] == pytest.approx((-rounds.reward[i], rounds.pscore[i]))
        assert record["marquee"]["action_ids"][chosen] == rounds.action_ids[int(rounds.logged_flat[i])]
        scores = dict(workspace.predict_one(examples))  # type: ignore[arg-type]
        assert scores == pytest.approx(dict(text.predict(rounds.example(i, labeled=False))), abs=1e-6)


def test_jsonl_keeps_the_text_lines_and_ids(world):
    lines = world.client.get("/v1/logs/export?format=jsonl&policy=titles").get_data(as_text=True).splitlines()
    rounds = offline.from_log(world.db, policy="titles", aggregation="earliest", default_reward=0.0)
    first = json.loads(lines[0])
    assert first["shared"] == rounds.shared[0] and [a["features"] for a in first["actions"]] == rounds.actions(0)
    assert first["actions"][first["chosen"]]["id"] == rounds.action_ids[int(rounds.logged_flat[0])]
    assert first["probability"] == rounds.pscore[0] and first["viewer"]["segment"] in ("family", "night-owl")


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("format=csv", "format: must be one of dsjson, jsonl"),
        ("policy=posters", "policy: must be one of titles, artwork"),
        ("since=last%20week", "since: 'last week' is not an ISO 8601 time"),
        ("since=200&until=100", "until: must be later than since"),
    ],
)
def test_bad_export_queries_name_the_parameter(world, query, message):
    response = world.client.get(f"/v1/logs/export?{query}")
    assert response.status_code == 422 and message in response.get_json()["error"]["message"]


def test_ranges_and_the_cli(world, tmp_path: Path):
    rounds = offline.from_log(world.db, policy="artwork", aggregation="earliest", default_reward=0.0)
    middle = float(rounds.created_at[len(rounds) // 2])
    later = world.client.get(f"/v1/logs/export?since={middle}").get_data(as_text=True).splitlines()
    assert len(later) == int((rounds.created_at >= middle).sum()) > 0
    out = tmp_path / "log.dsjson"
    result = world.app.test_cli_runner().invoke(args=["export-log", "--policy", "artwork", "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_text() == world.client.get("/v1/logs/export").get_data(as_text=True)


def test_parquet_holds_the_jsonl_columns_typed_over_http_and_the_cli(world, tmp_path: Path, monkeypatch):
    response = world.client.get("/v1/logs/export?format=parquet&policy=titles")
    assert response.status_code == 200 and response.mimetype == "application/vnd.apache.parquet"
    table = pq.read_table(io.BytesIO(response.data))
    assert table.schema == logexport.PARQUET_SCHEMA
    text = world.client.get("/v1/logs/export?format=jsonl&policy=titles").get_data(as_text=True)
    lines = [json.loads(line) for line in text.splitlines()]
    assert table.num_rows == len(lines) == int(response.headers["X-Marquee-Decisions"]) == 120 * 4
    for row, line in zip(table.to_pylist(), lines):
        assert (row["policy"], row["event_id"], row["position"]) == ("titles", line["event_id"], line["position"])
        assert row["timestamp"].timestamp() == pytest.approx(line["timestamp"], abs=1e-6)
        assert json.loads(row["viewer"]) == line["viewer"] and row["shared"] == line["shared"]
        assert row["action_ids"] == [action["id"] for action in line["actions"]]
        assert row["action_features"] == [action["features"] for action in line["actions"]]
        assert (row["chosen"], row["probability"], row["reward"]) == (
            line["chosen"],
            line["probability"],
            line["reward"],
        )
    # The command writes a chunk of events per row group: the log is never held whole.
    monkeypatch.setattr(rounds_module, "CHUNK_EVENTS", 25)
    out = tmp_path / "artwork.parquet"
    result = world.app.test_cli_runner().invoke(
        args=["export-log", "--policy", "artwork", "--format", "parquet", "--output", str(out)]
    )
    assert result.exit_code == 0 and "480 decisions written" in result.output, result.output
    written = pq.ParquetFile(out)
    assert written.metadata.num_rows == 480 and written.num_row_groups == -(-120 // 25)
    artwork = offline.from_log(world.db, policy="artwork", aggregation="earliest", default_reward=0.0)
    assert written.read(columns=["reward"]).column(0).to_pylist() == artwork.reward.tolist()
    # A range without decisions is a valid file with the columns and no rows.
    empty = world.client.get("/v1/logs/export?format=parquet&since=2100-01-01T00:00:00Z")
    assert empty.status_code == 200 and pq.read_table(io.BytesIO(empty.data)).num_rows == 0
    refused = world.client.get("/v1/logs/export?format=feather")
    assert refused.status_code == 422
    assert "format: must be one of dsjson, jsonl, parquet" in refused.get_json()["error"]["message"]
