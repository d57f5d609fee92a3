"""Thumbnails: sizes, formats, crop, cache headers, 304s, bounded parameters, the rank's artwork URL."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from tests.helpers import image_bytes


@pytest.fixture
def artwork(client):
    client.post("/v1/titles", json={"id": "t1", "name": "Poster"})
    response = client.post(
        "/v1/titles/t1/artworks",
        data={"file": (io.BytesIO(image_bytes(size=(600, 900))), "p.png"), "id": "a1"},
        content_type="multipart/form-data",
    )
    assert response.status_code == 201
    return "a1"


def fetch(client, query, **headers):
    return client.get(f"/v1/artworks/a1/image{query}", headers=headers)


@pytest.mark.parametrize(
    ("query", "size", "fmt"),
    [
        ("?w=342", (342, 513), "WEBP"),
        ("?w=154&format=jpeg", (154, 231), "JPEG"),
        ("?h=500&format=png", (333, 500), "PNG"),
        ("?w=342&h=342", (342, 342), "WEBP"),  # cropped to fill the box
        ("?w=500&h=500", (500, 500), "WEBP"),
        ("?w=780&h=500", (600, 385), "WEBP"),  # wider than the master: the box keeps its shape, shrunk
        ("?w=1280", (600, 900), "WEBP"),  # never enlarged
        ("?w=1280&h=780", (600, 366), "WEBP"),  # the box shrinks to what the master can fill
        ("?format=jpeg", (600, 900), "JPEG"),
    ],
)
def test_renditions(client, artwork, query, size, fmt):
    response = fetch(client, query)
    assert response.status_code == 200
    with Image.open(io.BytesIO(response.data)) as image:
        assert image.size == size and image.format == fmt
    assert response.mimetype == f"image/{fmt.lower()}"


def test_cache_headers_and_304(app, client, artwork):
    first = fetch(client, "?w=342")
    assert "immutable" in first.headers["Cache-Control"] and first.headers["ETag"]
    assert fetch(client, "?w=342", **{"If-None-Match": first.headers["ETag"]}).status_code == 304
    other = fetch(client, "?w=154", **{"If-None-Match": first.headers["ETag"]})
    assert other.status_code == 200 and other.headers["ETag"] != first.headers["ETag"]
    master = fetch(client, "")
    assert fetch(client, "", **{"If-None-Match": master.headers["ETag"]}).status_code == 304
    cached = sorted(p.name for p in (Path(app.config["DATA_DIR"]) / "thumbs" / "a1").iterdir())
    assert len(cached) == 2 and all(name.endswith((".webp",)) for name in cached)


def test_304_needs_no_rendering(app, client, artwork):
    etag = fetch(client, "?w=500").headers["ETag"]
    for path in (Path(app.config["DATA_DIR"]) / "thumbs" / "a1").iterdir():
        path.unlink()
    assert fetch(client, "?w=500", **{"If-None-Match": etag}).status_code == 304
    assert not any((Path(app.config["DATA_DIR"]) / "thumbs" / "a1").iterdir())


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("?w=343", "w: must be one of"),
        ("?w=100000", "w: must be one of"),
        ("?h=-5", "h: must be one of"),
        ("?w=abc", "w: must be one of"),
        ("?format=gif", "format: must be one of"),
        ("?format=../../x", "format"),
    ],
)
def test_unbounded_or_unknown_parameters_are_refused(app, client, artwork, query, message):
    response = fetch(client, query)
    assert response.status_code == 422 and message in response.get_json()["error"]["message"]
    assert not (Path(app.config["DATA_DIR"]) / "thumbs").exists()


def test_transparent_png_becomes_white_in_jpeg(client):
    client.post("/v1/titles", json={"id": "t2", "name": "Clear"})
    out = io.BytesIO()
    Image.new("RGBA", (200, 300), (0, 0, 0, 0)).save(out, "PNG")
    client.post(
        "/v1/titles/t2/artworks",
        data={"file": (io.BytesIO(out.getvalue()), "c.png"), "id": "clear"},
        content_type="multipart/form-data",
    )
    response = client.get("/v1/artworks/clear/image?w=154&format=jpeg")
    with Image.open(io.BytesIO(response.data)) as image:
        assert image.getpixel((10, 10)) == pytest.approx((255, 255, 255), abs=2)


def test_rank_artwork_url_serves_a_thumbnail(client, catalog):
    slot = client.post("/v1/rank", json={"slots": 1}).get_json()["slots"][0]
    response = client.get(slot["artwork_url"])
    assert response.status_code == 200 and response.mimetype == "image/webp"
    with Image.open(io.BytesIO(response.data)) as image:
        assert image.width <= 342


def test_thumbnails_of_a_rotated_upload_are_upright(client):
    from PIL import ImageDraw

    image = Image.new("RGB", (400, 200), (200, 30, 30))
    ImageDraw.Draw(image).rectangle([0, 0, 60, 60], fill=(0, 0, 255))
    exif = Image.Exif()
    exif[0x0112] = 6  # shown turned 90 degrees clockwise
    out = io.BytesIO()
    image.save(out, "JPEG", exif=exif, quality=95)
    client.post("/v1/titles", json={"id": "t3", "name": "Turned"})
    client.post(
        "/v1/titles/t3/artworks",
        data={"file": (io.BytesIO(out.getvalue()), "r.jpg"), "id": "turned"},
        content_type="multipart/form-data",
    )
    with Image.open(io.BytesIO(client.get("/v1/artworks/turned/image?w=154&format=png").data)) as thumb:
        assert thumb.size == (154, 308)
        assert not thumb.getexif()
        assert thumb.getpixel((150, 3))[2] > 150  # the blue corner is now top-right
