"""Blocks of VW action lines, stored once by content and referred to by key from the log.

A decision logs the action lines it scored (every candidate title, each shown title's artworks).
Those lines repeat across events until the catalog changes, so they are stored once per distinct
content in ``feature_blocks`` and each event or impression keeps the block's key: a 40-title row
logs a 32-character key instead of 4 KB of lines, and the write-ahead log grows by a few pages per
event instead of about eighteen. A block's content never changes, so the log still holds exactly
the features every decision used.

A block made by a decision also carries its actions' ids, one per line, and its key covers them: an
event or impression whose id list is its block's writes ``IN_BLOCK`` (the empty string) instead of
the list, and ``listed`` reads either form back. For a row of 10 from 40 titles with 5 artworks each
that is about 900 bytes a decision less in the log (BENCHMARKS.md, "id lists kept with their block").
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol


class Database(Protocol):
    """What blocks need of the store (``bandits.storage.Database`` has it; a leaf does not import another)."""

    def execute(self, statement: str, params: Any = None, /) -> Any: ...

    def executemany(self, statement: str, rows: Any, /) -> None: ...


IN_BLOCK = ""  # what a logged id list holds when the list is its block's ids


@dataclass(frozen=True)
class Block:
    """Action lines in the order they were offered, with their content key and, if known, their ids."""

    key: str
    lines: tuple[str, ...]
    ids: tuple[str, ...] = ()

    @classmethod
    def of(cls, lines: Sequence[str], ids: Sequence[str] = ()) -> Block:
        """Return the block of these lines and ids (the key: a 128-bit BLAKE2b digest of both).

        Without ids the key is the digest of the lines' text alone, as for every block before ids
        were kept; with them, of the text, a NUL and the ids as JSON (which escapes any NUL, so no
        two blocks share a key).
        """
        if ids and len(ids) != len(lines):
            raise ValueError(f"a block of {len(lines)} lines needs as many ids, not {len(ids)}")
        text = "\n".join(lines)
        content = text.encode() if not ids else text.encode() + b"\0" + json.dumps(list(ids)).encode()
        return cls(key=hashlib.blake2b(content, digest_size=16).hexdigest(), lines=tuple(lines), ids=tuple(ids))

    def carries(self, ids: tuple[str, ...]) -> bool:
        """Whether ``ids`` are this block's own ids, so that the log may write ``IN_BLOCK`` for them."""
        return bool(self.ids) and ids == self.ids

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
            "INSERT INTO feature_blocks (key, lines, ids) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
            [(block.key, block.text, json.dumps(block.ids) if block.ids else None) for block in new.values()],
        )
    return list(new)


def remember(database: str, keys: Iterable[str]) -> None:
    """Record committed block keys, so that later events skip inserting them."""
    with _stored_lock:
        _stored.setdefault(database, set()).update(keys)


def load(db: Database, keys: Iterable[str]) -> Mapping[str, list[str]]:
    """Return the lines of every block key given."""
    return {key: list(block.lines) for key, block in load_blocks(db, keys).items()}


def load_blocks(db: Database, keys: Iterable[str]) -> Mapping[str, Block]:
    """Return every block key given with its lines and ids (none for a block stored without them)."""
    wanted = sorted(set(keys))
    found: dict[str, Block] = {}
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        for key, text, ids in db.execute(
            f"SELECT key, lines, ids FROM feature_blocks WHERE key IN ({','.join('?' * len(chunk))})", chunk
        ):
            found[key] = Block(key=key, lines=tuple(text.split("\n")), ids=tuple(json.loads(ids)) if ids else ())
    missing = set(wanted) - set(found)
    if missing:
        raise LookupError(f"feature blocks missing from the log: {sorted(missing)[:5]}")
    return found


def listed(logged: str, block: Block) -> list[str]:
    """Return an id list as the log holds it: JSON, or ``IN_BLOCK`` for the ids its block carries."""
    if logged != IN_BLOCK:
        return list(json.loads(logged))
    if not block.ids:
        raise LookupError(f"an id list refers to block {block.key}, which was stored without ids")
    return list(block.ids)
