"""Id lists kept with their feature block: a decision logs ``''`` for its candidate and artwork ids, and every
reader gets the same lists back; rows written before (lists as JSON, blocks without ids) read as they did."""

from __future__ import annotations

import hashlib
import json
import time

import pytest

from bandits.log import eventlog, rounds
from bandits.storage import SCHEMA_VERSION, connect, write_transaction
from bandits.vw import blocks
from bandits.vw.blocks import IN_BLOCK, Block
from tests.helpers import STYLES

# Every test here that opens a store runs on SQLite and on PostgreSQL (tests/conftest.py).
BACKENDS = ("sqlite", "postgresql")


def test_a_block_key_covers_its_ids_and_a_block_without_ids_keeps_the_key_of_its_lines():
    lines = ["|T id=a genre=x", "|T id=b genre=x"]
    plain = Block.of(lines)
    assert plain.key == hashlib.blake2b("\n".join(lines).encode(), digest_size=16).hexdigest()  # keys logged before
    assert Block.of(lines, ["a", "b"]).key != plain.key
    assert Block.of(lines, ["a", "b"]).key != Block.of(lines, ["b", "a"]).key
    assert Block.of(lines, ["a", "b"]).carries(("a", "b")) and not Block.of(lines, ["a", "b"]).carries(("b", "a"))
    assert not plain.carries(())
    with pytest.raises(ValueError, match="2 lines needs as many ids, not 1"):
        Block.of(lines, ["a"])


def decide(client, body) -> str:
    response = client.post("/v1/rank", json=body)
    assert response.status_code == 200, response.get_json()
    return str(response.get_json()["event_id"])


def shown_titles(titles: rounds.Rounds) -> dict[str, list[str]]:
    """Each event's titles in slot order, as its title rounds logged them."""
    shown: dict[str, list[str]] = {}
    for i, event_id in enumerate(titles.event_ids):
        shown.setdefault(event_id, []).append(titles.action_ids[int(titles.logged_flat[i])])
    return shown


def test_decisions_log_their_lists_in_the_block_and_every_reader_gets_them_back(app, client, db, catalog, learner):
    subset = [catalog[4], catalog[1], catalog[3]]
    made = {
        decide(client, {"user": {"id": "u1"}, "slots": 3}): catalog,
        decide(client, {"user": {"id": "u2"}, "slots": 2, "candidates": subset}): subset,
        decide(client, {"user": {"id": "u3"}, "slots": 2, "exclude": [catalog[0]]}): catalog[1:],
    }
    assert db.execute("SELECT DISTINCT candidates FROM events").fetchall() == [(IN_BLOCK,)]
    assert db.execute("SELECT DISTINCT artwork_ids FROM impressions").fetchall() == [(IN_BLOCK,)]
    for key, ids in db.execute("SELECT key, ids FROM feature_blocks").fetchall():
        assert ids is not None and len(json.loads(ids)) == len(blocks.load(db, [key])[key])

    learner.run_once(now=time.time() + 3600)  # every window closed: the rounds are final
    artworks = {title: [f"{title}-{palette}" for palette, _ in STYLES] for title in catalog}
    titles = rounds.from_log(db, policy="titles", aggregation="earliest", default_reward=0.0)
    art = rounds.from_log(db, policy="artwork", aggregation="earliest", default_reward=0.0)
    assert len(titles) == len(art) == 7
    for i, event_id in enumerate(titles.event_ids):
        if titles.position[i] == 0:  # the first slot is offered every candidate, in the request's order
            assert titles.action_ids[titles.offsets[i] : titles.offsets[i + 1]] == made[event_id]
        shown = titles.action_ids[int(titles.logged_flat[i])]
        assert art.action_ids[art.offsets[i] : art.offsets[i + 1]] == artworks[shown]
    for event_id, shown in shown_titles(titles).items():
        assert [slot["title_id"] for slot in eventlog.get_event(db, event_id)["slots"]] == shown


def test_rows_logged_as_json_before_read_as_they_did(app, client, db, catalog, learner):
    event_id = decide(client, {"user": {"id": "u1"}, "slots": 2})
    seq, key = db.execute("SELECT seq, title_block FROM events WHERE id = ?", [event_id]).fetchone()
    # The same event as a store before schema version 3 held it: lists as JSON, blocks keyed by lines alone.
    old_titles = Block.of(blocks.load(db, [key])[key])
    art_keys = [row[0] for row in db.execute("SELECT artwork_block FROM impressions WHERE event_seq = ?", [seq])]
    with write_transaction(db):
        db.execute("INSERT INTO feature_blocks (key, lines) VALUES (?, ?)", [old_titles.key, old_titles.text])
        db.execute(
            "UPDATE events SET candidates = ?, title_block = ? WHERE seq = ?",
            [json.dumps(catalog), old_titles.key, seq],
        )
        for art_key in art_keys:
            old_art = Block.of(blocks.load(db, [art_key])[art_key])
            db.execute(
                "INSERT INTO feature_blocks (key, lines) VALUES (?, ?) ON CONFLICT DO NOTHING",
                [old_art.key, old_art.text],
            )
            ids = blocks.load_blocks(db, [art_key])[art_key].ids
            db.execute(
                "UPDATE impressions SET artwork_ids = ?, artwork_block = ? WHERE event_seq = ? AND artwork_block = ?",
                [json.dumps(list(ids)), old_art.key, seq, art_key],
            )
    learner.run_once(now=time.time() + 3600)
    titles = rounds.from_log(db, policy="titles", aggregation="earliest", default_reward=0.0)
    art = rounds.from_log(db, policy="artwork", aggregation="earliest", default_reward=0.0)
    assert titles.action_ids[: titles.offsets[1]] == catalog
    assert set(titles.block) == {old_titles.key}
    shown = titles.action_ids[int(titles.logged_flat[0])]
    assert art.action_ids[: art.offsets[1]] == [f"{shown}-{palette}" for palette, _ in STYLES]
    assert eventlog.get_event(db, event_id)["event_id"] == event_id


def test_a_list_that_names_a_block_without_ids_is_refused_by_name():
    block = Block.of(["|T id=a"])
    with pytest.raises(LookupError, match=f"block {block.key}, which was stored without ids"):
        blocks.listed(IN_BLOCK, block)
    assert blocks.listed('["a"]', block) == ["a"]


def test_a_store_of_schema_version_2_gains_the_ids_column_and_is_recorded_as_3(tmp_path):
    path = tmp_path / "marquee.sqlite3"
    db = connect(path)
    db.execute("ALTER TABLE feature_blocks DROP COLUMN ids")
    db.execute("UPDATE meta SET value = 2 WHERE key = 'schema_version'")
    db.execute("INSERT INTO feature_blocks (key, lines) VALUES ('k', '|T id=a')")
    db.close()
    db = connect(path)
    assert "ids" in db.columns("feature_blocks")
    assert db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == SCHEMA_VERSION == 3
    assert blocks.load_blocks(db, ["k"])["k"] == Block(key="k", lines=("|T id=a",), ids=())
