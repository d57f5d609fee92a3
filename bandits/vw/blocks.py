"""Blocks of VW action lines, stored once by content and referred to by key from the log.

A decision logs the action lines it scored (every candidate title, each shown title's artworks).
Those lines repeat across events until the catalog changes, so they are stored once per distinct
content in ``feature_blocks`` and each event or impression keeps the block's key: a 40-title row
logs a 32-character key instead of 4 KB of lines, and the write-ahead log grows by a few pages per
event instead of about eighteen. A block's content never changes, so the log still holds exactly
the features every decision used.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol


class Database(Protocol):
    """What blocks need of the store (``bandits.storage.Database`` has it; a leaf does not import another)."""

    def execute(self, statement: str, params: Any = None, /) -> Any: ...

    def executemany(self, statement: str, rows: Any, /) -> None: ...


@dataclass(frozen=True)
class Block:
    """Action lines in the order they were offered, with their content key."""

    key: str
    lines: tuple[str, ...]

    @classmethod
    def of(cls, lines: Sequence[str]) -> Block:
        """Return the block of these lines (the key is a 128-bit BLAKE2b digest of their text)."""
        text = "\n".join(lines)
        return cls(key=hashlib.blake2b(text.encode(), digest_size=16).hexdigest(), lines=tuple(lines))

    @property
    def text(self) -> str:
        """Return the lines joined by newlines (VW's multi-line text format, without a shared line)."""
        return "\n".join(self.lines)


_stored: dict[str, set[str]] = {}  # database path -> keys this process knows to be committed
_stored_lock = threading.Lock()


def store(db: Database, database: str, blocks: Iterable[Block]) -> list[str]:
    """Insert the blocks this process has not stored yet, inside the caller's transaction.

    Returns the keys inserted; call ``remember`` with them once the transaction committed.
    """
    known = _stored.get(database, set())
    new = {block.key: block for block in blocks if block.key not in known}
    if new:
        db.executemany(
            "INSERT INTO feature_blocks (key, lines) VALUES (?, ?) ON CONFLICT DO NOTHING",
            [(block.key, block.text) for block in new.values()],
        )
    return list(new)


def remember(database: str, keys: Iterable[str]) -> None:
    """Record committed block keys, so that later events skip inserting them."""
    with _stored_lock:
        _stored.setdefault(database, set()).update(keys)


def load(db: Database, keys: Iterable[str]) -> Mapping[str, list[str]]:
    """Return the lines of every block key given."""
    wanted = sorted(set(keys))
    lines: dict[str, list[str]] = {}
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        for key, text in db.execute(
            f"SELECT key, lines FROM feature_blocks WHERE key IN ({','.join('?' * len(chunk))})", chunk
        ):
            lines[key] = text.split("\n")
    missing = set(wanted) - set(lines)
    if missing:
        raise LookupError(f"feature blocks missing from the log: {sorted(missing)[:5]}")
    return lines
