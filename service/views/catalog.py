"""Catalog endpoints: titles, artwork uploads, artwork images."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify, request, send_file
from flask.typing import ResponseReturnValue

from assets import catalog
from assets.images import check_image
from assets.thumbnails import ensure_rendition, parse_rendition
from service.db import get_db
from service.errors import Invalid, UnsupportedMedia
from service.schemas import TitleBody, check_id, parse

bp = Blueprint("catalog", __name__)

MIME = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}
CACHE_SECONDS = 365 * 86400
# An artwork id always names the same image (a replacement is a new artwork), so every response for
# it can be cached for good.
CACHE_CONTROL = f"public, max-age={CACHE_SECONDS}, immutable"


def _flag(name: str) -> bool:
    value = request.args.get(name, "false").lower()
    if value not in {"true", "false", "1", "0"}:
        raise Invalid(f"{name}: must be true or false")
    return value in {"true", "1"}


@bp.get("/v1/titles")
def list_titles() -> ResponseReturnValue:
    """List titles (active ones unless ``include_retired=true``)."""
    return jsonify({"titles": catalog.list_titles(get_db(), include_retired=_flag("include_retired"))})


@bp.post("/v1/titles")
def create_title() -> ResponseReturnValue:
    """Add a title."""
    body: TitleBody = parse(TitleBody, request)
    return jsonify(catalog.create_title(get_db(), body.model_dump())), 201


@bp.get("/v1/titles/<title_id>")
def get_title(title_id: str) -> ResponseReturnValue:
    """Return one title with its artworks."""
    check_id(title_id, what="title_id")
    db = get_db()
    title = catalog.get_title(db, title_id)
    title["artworks"] = catalog.list_artworks(db, title_id, include_retired=True)
    return jsonify(title)


@bp.put("/v1/titles/<title_id>")
def replace_title(title_id: str) -> ResponseReturnValue:
    """Replace a title's fields; a retired title becomes active again."""
    check_id(title_id, what="title_id")
    body: TitleBody = parse(TitleBody, request)
    if body.id is not None and body.id != title_id:
        raise Invalid(f"id: the body's id {body.id!r} differs from the URL's {title_id!r}")
    return jsonify(catalog.replace_title(get_db(), title_id, body.model_dump()))


@bp.delete("/v1/titles/<title_id>")
def retire_title(title_id: str) -> ResponseReturnValue:
    """Retire a title: no longer chosen, kept for the log."""
    check_id(title_id, what="title_id")
    catalog.retire_title(get_db(), title_id)
    return "", 204


@bp.get("/v1/titles/<title_id>/artworks")
def list_artworks(title_id: str) -> ResponseReturnValue:
    """List a title's artworks (active ones unless ``include_retired=true``)."""
    check_id(title_id, what="title_id")
    return jsonify({"artworks": catalog.list_artworks(get_db(), title_id, include_retired=_flag("include_retired"))})


@bp.post("/v1/titles/<title_id>/artworks")
def upload_artwork(title_id: str) -> ResponseReturnValue:
    """Upload an image (multipart ``file``; optional ``id``, ``tags``, and ``replaces``: an artwork to retire)."""
    check_id(title_id, what="title_id")
    if request.mimetype != "multipart/form-data":
        raise UnsupportedMedia("artwork uploads must be multipart/form-data with the image in the field 'file'")
    upload = request.files.get("file")
    if upload is None:
        raise Invalid("file: the multipart field 'file' is missing")
    artwork_id = request.form.get("id") or None
    if artwork_id is not None:
        check_id(artwork_id, what="id")
    replaces = request.form.get("replaces") or None
    if replaces is not None:
        check_id(replaces, what="replaces")
    tags = catalog.check_tags(tag for raw in request.form.getlist("tags") for tag in raw.split(","))
    db = get_db()
    catalog.get_title(db, title_id)  # 404 before the image is decoded
    image = check_image(upload.read())
    record = catalog.add_artwork(
        db,
        data_dir=current_app.config["DATA_DIR"],
        title_id=title_id,
        image=image,
        artwork_id=artwork_id,
        tags=tags,
        replaces=replaces,
        keep_in_database=current_app.config["IMAGE_STORE"] == "database",
    )
    record.pop("path", None)
    return jsonify(record), 201


@bp.delete("/v1/artworks/<artwork_id>")
def retire_artwork(artwork_id: str) -> ResponseReturnValue:
    """Retire an artwork: no longer chosen, kept for the log."""
    check_id(artwork_id, what="artwork_id")
    catalog.retire_artwork(get_db(), artwork_id)
    return "", 204


@bp.post("/v1/artworks/<artwork_id>/restore")
def restore_artwork(artwork_id: str) -> ResponseReturnValue:
    """Choose a retired artwork again; it keeps its upload time (no new trial)."""
    check_id(artwork_id, what="artwork_id")
    record = catalog.restore_artwork(get_db(), artwork_id)
    record.pop("path", None)
    return jsonify(record)


@bp.get("/v1/artworks/<artwork_id>/image")
def artwork_image(artwork_id: str) -> ResponseReturnValue:
    """Serve an artwork's master, or a rendition: ``?w=&h=&format=webp|jpeg|png`` (retired ones too)."""
    check_id(artwork_id, what="artwork_id")
    rendition = parse_rendition(request.args)
    record = catalog.get_artwork(get_db(), artwork_id)
    master = catalog.master_file(get_db(), current_app.config["DATA_DIR"], record)
    if rendition is None:
        path, mimetype, etag = master, MIME[record["format"]], record["sha256"][:32]
    else:
        etag = f"{record['sha256'][:24]}-{rendition.name}"
        if request.if_none_match.contains(etag):
            response = current_app.response_class(status=304)  # answered without rendering anything
            response.set_etag(etag)
            response.headers["Cache-Control"] = CACHE_CONTROL
            return response
        path = ensure_rendition(
            current_app.config["DATA_DIR"],
            artwork_id=artwork_id,
            digest=record["sha256"],
            master=master,
            rendition=rendition,
        )
        mimetype = rendition.mimetype
    response = send_file(path, mimetype=mimetype, etag=etag, conditional=True, max_age=CACHE_SECONDS)
    response.headers["Cache-Control"] = CACHE_CONTROL
    return response
