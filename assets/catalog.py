"""Titles and artworks in SQLite, and the in-memory snapshot the rank path reads from."""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from assets.images import CheckedImage, visual_tokens
from bandits.errors import Conflict, Invalid, NotFound
from bandits.storage import Database, bump, write_transaction
from bandits.vw import features
from bandits.vw.blocks import Block

CATALOG_VERSION = "catalog_version"
# Ids of titles, artworks and events: what a URL path and a VW feature can carry unescaped.
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}$"
ID_RE = re.compile(ID_PATTERN)
MAX_TAGS = 20
MAX_TAG_LENGTH = 64


def check_id(value: str, *, what: str) -> str:
    """Return ``value`` if it is a valid id; raise ``Invalid`` naming ``what`` otherwise."""
    if not isinstance(value, str) or not ID_RE.fullmatch(value):
        raise Invalid(
            f"{what}: must be 1-128 characters of letters, digits, '.', '_', ':' or '-', starting with a letter or "
            "digit"
        )
    return value


def check_tags(tags: Iterable[str]) -> list[str]:
    """Return the tags without blanks or repeats; raise ``Invalid`` past 20 tags or 64 characters."""
    clean = list(dict.fromkeys(tag.strip() for tag in tags if tag.strip()))
    if len(clean) > MAX_TAGS or any(len(tag) > MAX_TAG_LENGTH for tag in clean):
        raise Invalid(f"tags: at most {MAX_TAGS} tags of at most {MAX_TAG_LENGTH} characters")
    return clean


def _title_row(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "name": row["name"],
        "genres": json.loads(row["genres"]),
        "year": row["year"],
        "maturity": row["maturity"],
        "features": json.loads(row["features"]),
        "active": bool(row["active"]),
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
    }


def _artwork_row(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "title_id": row["title_id"],
        "ordinal": row["ordinal"],
        "tags": json.loads(row["tags"]),
        "visual": json.loads(row["visual"]),
        "format": row["format"],
        "width": row["width"],
        "height": row["height"],
        "bytes": row["bytes"],
        "sha256": row["sha256"],
        "active": bool(row["active"]),
        "created_at": row["created_at"],
        "retired_at": row["retired_at"],
        "url": f"/v1/artworks/{row['id']}/image",
    }


def list_titles(db: Database, *, include_retired: bool = False) -> list[dict[str, Any]]:
    """Return titles in id order, active ones only unless ``include_retired``."""
    where = "" if include_retired else "WHERE active = 1"
    return [_title_row(row) for row in db.query(f"SELECT * FROM titles {where} ORDER BY id")]


def get_title(db: Database, title_id: str) -> dict[str, Any]:
    """Return one title, retired or not; raise ``NotFound``."""
    rows = list(db.query("SELECT * FROM titles WHERE id = ?", [title_id]))
    if not rows:
        raise NotFound(f"title {title_id!r} does not exist")
    return _title_row(rows[0])


def create_title(db: Database, body: Mapping[str, Any]) -> dict[str, Any]:
    """Add a title; raise ``Conflict`` if its id is taken (retired titles keep their ids)."""
    title_id = body.get("id") or f"t-{uuid.uuid4().hex[:12]}"
    now = time.time()
    with write_transaction(db):
        if db.execute("SELECT 1 FROM titles WHERE id = ?", [title_id]).fetchone():
            raise Conflict(f"title {title_id!r} already exists")
        db.execute(
            "INSERT INTO titles (id, name, genres, year, maturity, features, active, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, 1, ?, ?)",
            [
                title_id,
                body["name"],
                json.dumps(body.get("genres") or []),
                body.get("year"),
                body.get("maturity"),
                json.dumps(body.get("features") or {}, sort_keys=True),
                now,
                now,
            ],
        )
        bump(db, CATALOG_VERSION)
    return get_title(db, title_id)


def replace_title(db: Database, title_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """Replace a title's fields (and make it active again); raise ``NotFound``."""
    with write_transaction(db):
        cursor = db.execute(
            "UPDATE titles SET name = ?, genres = ?, year = ?, maturity = ?, features = ?, active = 1, "
            "updated_at = ? WHERE id = ?",
            [
                body["name"],
                json.dumps(body.get("genres") or []),
                body.get("year"),
                body.get("maturity"),
                json.dumps(body.get("features") or {}, sort_keys=True),
                time.time(),
                title_id,
            ],
        )
        if cursor.rowcount == 0:
            raise NotFound(f"title {title_id!r} does not exist")
        bump(db, CATALOG_VERSION)
    return get_title(db, title_id)


def retire_title(db: Database, title_id: str) -> None:
    """Stop choosing a title; it and its artworks stay stored for the log."""
    with write_transaction(db):
        cursor = db.execute(
            "UPDATE titles SET active = 0, updated_at = ? WHERE id = ? AND active = 1", [time.time(), title_id]
        )
        if cursor.rowcount == 0:
            get_title(db, title_id)  # NotFound for an unknown id; retiring twice is a no-op
            return
        bump(db, CATALOG_VERSION)


def list_artworks(db: Database, title_id: str, *, include_retired: bool = False) -> list[dict[str, Any]]:
    """Return a title's artworks in upload order; raise ``NotFound`` for an unknown title."""
    get_title(db, title_id)
    where = "" if include_retired else "AND active = 1"
    return [
        _artwork_row(row)
        for row in db.query(f"SELECT * FROM artworks WHERE title_id = ? {where} ORDER BY ordinal", [title_id])
    ]


def get_artwork(db: Database, artwork_id: str) -> dict[str, Any]:
    """Return one artwork with its stored path; raise ``NotFound``."""
    rows = list(db.query("SELECT * FROM artworks WHERE id = ?", [artwork_id]))
    if not rows:
        raise NotFound(f"artwork {artwork_id!r} does not exist")
    record = _artwork_row(rows[0])
    record["path"] = rows[0]["path"]
    return record


def add_artwork(
    db: Database,
    *,
    data_dir: str | Path,
    title_id: str,
    image: CheckedImage,
    artwork_id: str | None,
    tags: Iterable[str],
    replaces: str | None = None,
    keep_in_database: bool = False,
) -> dict[str, Any]:
    """Store a checked image for a title: the file first (atomically), then the row; nothing half-done.

    ``replaces`` names an active artwork of the same title to retire in the same transaction. With
    ``keep_in_database`` (``IMAGE_STORE=database``) the master's bytes are also stored in the
    database, in the same transaction as its row, for nodes that do not share the data folder
    (``master_file``).
    """
    artwork_id = artwork_id or f"a-{uuid.uuid4().hex[:12]}"
    digest = hashlib.sha256(image.data).hexdigest()
    relative = Path("artworks") / f"{artwork_id}.{image.extension}"
    target = Path(data_dir) / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    written = False
    try:
        with write_transaction(db):
            title = db.execute("SELECT active FROM titles WHERE id = ?", [title_id]).fetchone()
            if title is None:
                raise NotFound(f"title {title_id!r} does not exist")
            if db.execute("SELECT 1 FROM artworks WHERE id = ?", [artwork_id]).fetchone():
                raise Conflict(f"artwork {artwork_id!r} already exists")
            if replaces is not None:
                old = db.execute("SELECT title_id, active FROM artworks WHERE id = ?", [replaces]).fetchone()
                if old is None:
                    raise NotFound(f"artwork {replaces!r} (to replace) does not exist")
                if old[0] != title_id or not old[1]:
                    raise Conflict(f"artwork {replaces!r} is not an active artwork of title {title_id!r}")
            ordinal = db.execute(
                "SELECT COALESCE(MAX(ordinal), -1) + 1 FROM artworks WHERE title_id = ?", [title_id]
            ).fetchone()[0]
            temporary.write_bytes(image.data)
            os.replace(temporary, target)
            written = True
            db.execute(
                "INSERT INTO artworks (id, title_id, ordinal, tags, visual, format, width, height, bytes, sha256, "
                "path, active, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?)",
                [
                    artwork_id,
                    title_id,
                    ordinal,
                    json.dumps(list(dict.fromkeys(tags))),
                    json.dumps(image.visual),
                    image.format,
                    image.width,
                    image.height,
                    len(image.data),
                    digest,
                    str(relative),
                    time.time(),
                ],
            )
            if keep_in_database:
                db.execute("INSERT INTO artwork_images (artwork_id, data) VALUES (?, ?)", [artwork_id, image.data])
            if replaces is not None:
                db.execute("UPDATE artworks SET active = 0, retired_at = ? WHERE id = ?", [time.time(), replaces])
            bump(db, CATALOG_VERSION)
    except BaseException:  # the block or its COMMIT failed: no file without its row
        temporary.unlink(missing_ok=True)
        if written:  # only ever the file this call wrote (a taken id must not lose its image)
            target.unlink(missing_ok=True)
        raise
    return get_artwork(db, artwork_id)


def master_file(db: Database, data_dir: str | Path, record: Mapping[str, Any]) -> Path:
    """Return the path of an artwork's master in this node's data folder (``record``: ``get_artwork``'s).

    A node that has no copy (another node stored it, and the nodes share no folder) takes the one
    kept in the database (``IMAGE_STORE=database``), checks it against the artwork's SHA-256, and
    writes it to its folder atomically for the next time.

    Raises:
        NotFound: neither this node's folder nor the database has the master.
    """
    path = Path(data_dir) / record["path"]
    if path.is_file():
        return path
    row = db.execute("SELECT data FROM artwork_images WHERE artwork_id = ?", [record["id"]]).fetchone()
    if row is None:
        raise NotFound(
            f"the image file of artwork {record['id']!r} is missing from the data folder (and the database keeps "
            "no copy: IMAGE_STORE=folder when it was stored)"
        )
    data = bytes(row[0])
    if hashlib.sha256(data).hexdigest() != record["sha256"]:
        raise NotFound(f"the database's copy of artwork {record['id']!r} does not match its SHA-256; it was not used")
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        temporary.write_bytes(data)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path


def retire_artwork(db: Database, artwork_id: str) -> None:
    """Stop choosing an artwork; its file and row stay for the log."""
    with write_transaction(db):
        cursor = db.execute(
            "UPDATE artworks SET active = 0, retired_at = ? WHERE id = ? AND active = 1", [time.time(), artwork_id]
        )
        if cursor.rowcount == 0:
            get_artwork(db, artwork_id)
            return
        bump(db, CATALOG_VERSION)


def restore_artwork(db: Database, artwork_id: str) -> dict[str, Any]:
    """Choose a retired artwork again (a seasonal poster back in season); return it.

    Restoring an active one changes nothing.

    It keeps its upload time, so it gets no new trial (``ARTWORK_TRIAL_HOURS`` counts from the upload).
    """
    with write_transaction(db):
        cursor = db.execute(
            "UPDATE artworks SET active = 1, retired_at = NULL WHERE id = ? AND active = 0", [artwork_id]
        )
        if cursor.rowcount:
            bump(db, CATALOG_VERSION)
    return get_artwork(db, artwork_id)


# ---------------------------------------------------------------- serving snapshot


@dataclass(frozen=True)
class ServingTitle:
    """An active title with at least one active artwork, its VW line and its artworks' lines."""

    id: str
    genres: tuple[str, ...]
    action_line: str
    artwork_ids: tuple[str, ...]
    artwork_lines: tuple[str, ...]
    artwork_block: Block
    artwork_created: tuple[float, ...]  # upload times, for the new-artwork trial
    created_at: float = 0.0  # when the title was added, for the new-title trial


@dataclass(frozen=True)
class CatalogSnapshot:
    """What the rank path needs of the catalog at one catalog version."""

    version: int
    titles: dict[str, ServingTitle]
    order: tuple[str, ...]  # servable title ids in id order
    all_titles_block: Block  # the lines of every servable title in order: a row without candidates


def catalog_version(db: Database) -> int:
    """Return the counter bumped by every catalog change."""
    return int(db.execute("SELECT value FROM meta WHERE key = ?", [CATALOG_VERSION]).fetchone()[0])


def load_snapshot(db: Database) -> CatalogSnapshot:
    """Read the active catalog and build every VW line once."""
    version = catalog_version(db)
    artworks: dict[str, list[tuple[str, str, float]]] = {}
    for row in db.query(
        "SELECT id, title_id, tags, visual, created_at FROM artworks WHERE active = 1 ORDER BY title_id, ordinal"
    ):
        line = features.artwork_action(
            artwork_id=row["id"], tags=json.loads(row["tags"]), visual_tokens=visual_tokens(json.loads(row["visual"]))
        )
        artworks.setdefault(row["title_id"], []).append((row["id"], line, row["created_at"]))
    titles: dict[str, ServingTitle] = {}
    for title in list_titles(db):
        arts = artworks.get(title["id"])
        if not arts:
            continue  # a title with no active artwork cannot be shown
        titles[title["id"]] = ServingTitle(
            id=title["id"],
            genres=tuple(title["genres"]),
            action_line=features.title_action(title),
            artwork_ids=tuple(a for a, _, _ in arts),
            artwork_lines=tuple(line for _, line, _ in arts),
            artwork_block=Block.of([line for _, line, _ in arts], [a for a, _, _ in arts]),
            artwork_created=tuple(c for _, _, c in arts),
            created_at=title["created_at"],
        )
    return CatalogSnapshot(
        version=version,
        titles=titles,
        order=tuple(titles),
        all_titles_block=Block.of([title.action_line for title in titles.values()], list(titles)),
    )
