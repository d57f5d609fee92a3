"""Bulk import: a folder of images plus a CSV or JSON manifest, checked row by row.

Manifest columns (CSV header, or keys of each JSON object):

``title_id`` (required), ``title`` (the name; required for a title not in the catalog yet),
``genres``, ``year``, ``maturity``, ``file`` (an image path inside the folder; required),
``artwork_id``, ``tags``. In CSV, ``genres`` and ``tags`` are separated by ``;``; in JSON they may
also be lists. A row is one artwork; its title is created on first sight and kept as it is after.

Every image goes through the same checks as an upload. A refused row (missing column, unknown file,
a path outside the folder, a bad image, a taken id) is reported with its reason and changes nothing;
the other rows are imported.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from assets import catalog
from assets.images import check_image
from bandits.errors import MarqueeError
from bandits.storage import Database


@dataclass
class ImportSummary:
    """What a bulk import did."""

    titles_created: int = 0
    artworks_added: int = 0
    refused: list[tuple[int, str, str]] = field(default_factory=list)  # (row number, file, reason)


def read_manifest(path: Path) -> list[dict[str, Any]]:
    """Return the manifest's rows (CSV or JSON, by extension)."""
    if path.suffix.lower() == ".json":
        rows = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
            raise ValueError(f"{path}: a JSON manifest is a list of objects")
        return rows
    with path.open(newline="", encoding="utf-8-sig") as handle:  # -sig: spreadsheets write a BOM
        return [dict(row) for row in csv.DictReader(handle)]


def _items(value: Any) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, list):
        return [str(item).strip() for item in value if str(item).strip()]
    return [item.strip() for item in str(value).split(";") if item.strip()]


TitleCheck = Callable[[dict[str, Any]], dict[str, Any]]


def _title_body(row: dict[str, Any], check_title: TitleCheck) -> dict[str, Any]:
    year = row.get("year")
    body = {
        "id": row["title_id"],
        "name": row.get("title") or "",
        "genres": _items(row.get("genres")),
        "year": int(year) if year not in (None, "") else None,
        "maturity": row.get("maturity") or None,
    }
    return check_title(body)


def import_folder(
    db: Database,
    *,
    folder: Path,
    manifest: Path,
    data_dir: str | Path,
    check_title: TitleCheck,
    progress: Callable[[int], None] | None = None,
    keep_in_database: bool = False,
) -> ImportSummary:
    """Import every row of the manifest; refused rows are reported, not fatal (``keep_in_database``: as
    ``catalog.add_artwork``).

    ``check_title`` checks a new title's fields as ``POST /v1/titles`` does and returns them, or
    raises ``ValueError`` naming the field (``service.schemas.check_title``).
    """
    summary = ImportSummary()
    root = folder.resolve()
    for number, row in enumerate(read_manifest(manifest), start=1):
        file_name = str(row.get("file") or "")
        try:
            _import_row(
                db,
                row,
                root=root,
                data_dir=data_dir,
                summary=summary,
                check_title=check_title,
                keep_in_database=keep_in_database,
            )
        except (MarqueeError, ValueError, TypeError, OverflowError, OSError, KeyError) as exc:
            reason = exc.message if isinstance(exc, MarqueeError) else str(exc)
            summary.refused.append((number, file_name, reason))
        if progress is not None:
            progress(1)
    return summary


def _import_row(
    db: Database,
    row: dict[str, Any],
    *,
    root: Path,
    data_dir: str | Path,
    summary: ImportSummary,
    keep_in_database: bool,
    check_title: TitleCheck,
) -> None:
    for column in ("title_id", "file"):
        if not row.get(column):
            raise ValueError(f"the column {column!r} is empty")
    for column in ("title_id", "artwork_id", "file", "title"):
        if row.get(column) is not None and not isinstance(row[column], str):
            raise ValueError(f"{column}: must be text")
    catalog.check_id(row["title_id"], what="title_id")
    artwork_id = row.get("artwork_id") or None
    if artwork_id is not None:
        catalog.check_id(artwork_id, what="artwork_id")
        if db.execute("SELECT 1 FROM artworks WHERE id = ?", [artwork_id]).fetchone():
            raise ValueError(f"artwork {artwork_id!r} already exists")  # before any title is created
    tags = catalog.check_tags(_items(row.get("tags")))
    path = (root / str(row["file"])).resolve()
    if not path.is_relative_to(root):
        raise ValueError("file: the path leads outside the import folder")
    if not path.is_file():
        raise ValueError("file: no such file in the import folder")
    image = check_image(path.read_bytes())  # before any write: a bad image leaves no title behind
    try:
        catalog.get_title(db, row["title_id"])
    except MarqueeError:
        if not row.get("title"):
            raise ValueError("title: the name is needed for a title not in the catalog yet") from None
        catalog.create_title(db, _title_body(row, check_title))
        summary.titles_created += 1
    catalog.add_artwork(
        db,
        data_dir=data_dir,
        title_id=row["title_id"],
        image=image,
        artwork_id=artwork_id,
        tags=tags,
        keep_in_database=keep_in_database,
    )
    summary.artworks_added += 1


def iter_refusals(summary: ImportSummary) -> Iterator[str]:
    """Yield one readable line per refused row."""
    for number, file_name, reason in summary.refused:
        yield f"row {number} ({file_name or 'no file'}): {reason}"
