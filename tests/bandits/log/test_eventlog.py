"""Event ids the service makes: UUIDs of version 7, so that later ids sort later and the id index appends."""

from __future__ import annotations

import re
import uuid

from bandits.log.eventlog import new_event_id, time_ordered_uuid

# Every test here that opens a store runs on SQLite and on PostgreSQL (tests/conftest.py).
BACKENDS = ("sqlite", "postgresql")


def test_time_ordered_uuids_are_version_7_with_the_time_in_front():
    now = 1_796_515_100.2427
    made = time_ordered_uuid(now)
    assert made.version == 7 and made.variant == uuid.RFC_4122
    assert made.int >> 80 == int(now * 1000)
    assert uuid.UUID(str(made)) == made


def test_later_ids_sort_later_and_ids_of_one_millisecond_all_differ():
    times = [1_796_515_100.0 + step / 1000 for step in range(0, 5000, 7)]
    ids = [f"e-{time_ordered_uuid(now).hex}" for now in times]
    assert ids == sorted(ids)
    same_millisecond = {time_ordered_uuid(1_796_515_100.5) for _ in range(20_000)}
    assert len(same_millisecond) == 20_000


def test_new_event_ids_keep_the_format_of_the_api():
    ids = [new_event_id() for _ in range(100)]
    assert all(re.fullmatch(r"e-[0-9a-f]{32}", event_id) for event_id in ids)
    assert len(set(ids)) == 100
