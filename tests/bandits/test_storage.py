"""The SQLite file: an older file's reward windows are rebuilt in today's layout, nothing lost."""

from __future__ import annotations

from bandits.storage import connect, write_transaction

OLD_PENDING = """CREATE TABLE pending (
    policy TEXT NOT NULL, event_seq INTEGER NOT NULL REFERENCES events(seq), due_at REAL,
    closed_at REAL, labels TEXT, PRIMARY KEY (policy, event_seq)) WITHOUT ROWID"""


def layout(db) -> tuple[str, str]:
    table, index = (
        db.execute("SELECT sql FROM sqlite_master WHERE name = ?", [name]).fetchone()[0]
        for name in ("pending", "pending_due")
    )
    return table, index


def test_an_older_files_reward_windows_are_rekeyed_by_event_with_every_row_kept(tmp_path):
    path = tmp_path / "old.sqlite3"
    db = connect(path)
    with write_transaction(db):
        db.execute("DROP TABLE pending")
        db.execute(OLD_PENDING)
        db.execute("CREATE INDEX pending_due ON pending (policy, closed_at, due_at)")
        db.execute("INSERT INTO feature_blocks (key, lines) VALUES ('b', '[]')")
        for seq in (1, 2):
            db.execute(
                "INSERT INTO events (seq, id, created_at, context, candidates, title_shared, title_block, "
                "model_versions, deferred) VALUES (?, ?, 1.0, '{}', '[]', 'shared', 'b', '{}', ?)",
                [seq, f"e{seq}", int(seq == 2)],
            )
        rows = [
            ("titles", 1, 10.0, None, None),
            ("artwork", 1, 12.0, 11.0, '{"aggregation": "max"}'),
            ("titles", 2, None, None, None),  # a deferred event, not yet activated
        ]
        db.conn.executemany("INSERT INTO pending VALUES (?, ?, ?, ?, ?)", rows)
    db.close()

    db = connect(path)
    table, index = layout(db)
    assert "PRIMARY KEY (event_seq, policy)" in table and "(closed_at, due_at, policy)" in index
    kept = sorted(db.execute("SELECT policy, event_seq, due_at, closed_at, labels FROM pending").fetchall())
    assert kept == sorted(rows)
    assert "pending_keyed_by_policy" not in db.table_names()
    db.close()

    db = connect(path)  # idempotent: a second start finds nothing to do
    assert layout(db) == (table, index)
    assert db.execute("SELECT COUNT(*) FROM pending").fetchone()[0] == 3
    db.close()


def test_a_new_files_reward_windows_are_keyed_by_event(tmp_path):
    db = connect(tmp_path / "new.sqlite3")
    table, index = layout(db)
    assert "PRIMARY KEY (event_seq, policy)" in table and "(closed_at, due_at, policy)" in index
    db.close()
