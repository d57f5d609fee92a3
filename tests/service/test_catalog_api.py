"""Catalog endpoints: titles, artwork uploads and images; every refusal leaves the catalog as it was."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from tests.helpers import image_bytes, table_counts


def upload(client, title_id, data, **form):
    return client.post(
        f"/v1/titles/{title_id}/artworks",
        data={"file": (io.BytesIO(data), "x.png"), **form},
        content_type="multipart/form-data",
    )


def test_title_crud_round_trip(client):
    created = client.post(
        "/v1/titles",
        json={
            "id": "t1",
            "name": "Heist Night",
            "genres": ["crime", "comedy"],
            "year": 2019,
            "maturity": "PG-13",
            "features": {"studio": "North"},
        },
    )
    assert created.status_code == 201
    assert created.get_json()["genres"] == ["crime", "comedy"]
    assert client.get("/v1/titles/t1").get_json()["features"] == {"studio": "North"}
    replaced = client.put("/v1/titles/t1", json={"name": "Heist Night 2", "genres": ["crime"]})
    assert replaced.status_code == 200 and replaced.get_json()["name"] == "Heist Night 2"
    assert replaced.get_json()["year"] is None  # PUT replaces every field
    assert [t["id"] for t in client.get("/v1/titles").get_json()["titles"]] == ["t1"]
    assert client.delete("/v1/titles/t1").status_code == 204
    assert client.get("/v1/titles").get_json()["titles"] == []
    retired = client.get("/v1/titles?include_retired=true").get_json()["titles"]
    assert [(t["id"], t["active"]) for t in retired] == [("t1", False)]
    assert client.get("/v1/titles/t1").get_json()["active"] is False
    assert client.post("/v1/titles", json={"id": "t1", "name": "again"}).status_code == 409


def test_generated_title_id(client):
    body = client.post("/v1/titles", json={"name": "No id"}).get_json()
    assert body["id"].startswith("t-")


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"name": ""}, 422, "name"),
        ({"name": "x", "year": 1200}, 422, "year"),
        ({"name": "x", "year": "2019"}, 422, "year"),
        ({"name": "x", "genres": "drama"}, 422, "genres"),
        ({"name": "x", "genres": [""]}, 422, "genres"),
        ({"name": "x", "features": {"a": {"b": 1}}}, 422, "features"),
        ({"name": "x", "id": "../etc/passwd"}, 422, "id"),
        ({"name": "x", "colour": "red"}, 422, "colour"),
        ([1, 2], 422, "JSON object"),
    ],
)
def test_bad_title_bodies_are_refused_and_change_nothing(client, db, body, status, message):
    before = table_counts(db)
    response = client.post("/v1/titles", json=body)
    assert response.status_code == status
    assert message in response.get_json()["error"]["message"]
    assert table_counts(db) == before


def test_title_errors(client):
    assert client.post("/v1/titles", data="name=x").status_code == 415
    assert client.post("/v1/titles", data="{not json", content_type="application/json").status_code == 422
    assert client.get("/v1/titles/nope").status_code == 404
    assert client.put("/v1/titles/nope", json={"name": "x"}).status_code == 404
    assert client.delete("/v1/titles/nope").status_code == 404
    client.post("/v1/titles", json={"id": "t1", "name": "x"})
    mismatch = client.put("/v1/titles/t1", json={"id": "t2", "name": "x"})
    assert mismatch.status_code == 422 and "differs" in mismatch.get_json()["error"]["message"]
    assert client.get("/v1/titles?include_retired=maybe").status_code == 422
    assert client.patch("/v1/titles/t1", json={}).status_code == 405


def test_upload_computes_visual_features_and_serves_the_image(client):
    client.post("/v1/titles", json={"id": "t1", "name": "Red"})
    response = upload(client, "t1", image_bytes((255, 0, 0)), id="red", tags="bold, warm")
    assert response.status_code == 201
    body = response.get_json()
    assert body["tags"] == ["bold", "warm"]
    assert body["visual"]["dominant_hue"] == "red"
    assert body["visual"]["saturation"] == pytest.approx(1.0)
    assert (body["width"], body["height"], body["format"]) == (64, 96, "PNG")
    image = client.get("/v1/artworks/red/image")
    assert image.status_code == 200 and image.mimetype == "image/png"
    assert Image.open(io.BytesIO(image.data)).getpixel((0, 0)) == (255, 0, 0)
    again = client.get("/v1/artworks/red/image", headers={"If-None-Match": image.headers["ETag"]})
    assert again.status_code == 304
    listed = client.get("/v1/titles/t1/artworks").get_json()["artworks"]
    assert [a["id"] for a in listed] == ["red"]
    assert client.delete("/v1/artworks/red").status_code == 204
    assert client.get("/v1/titles/t1/artworks").get_json()["artworks"] == []
    assert client.get("/v1/artworks/red/image").status_code == 200  # retired artwork stays for the log


def _cmyk_jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("CMYK", (40, 40), (0, 200, 200, 0)).save(out, "JPEG")
    return out.getvalue()


def _truncated_jpeg() -> bytes:
    data = image_bytes(size=(400, 400), fmt="JPEG")
    return data[: len(data) // 2]


def _gif() -> bytes:
    out = io.BytesIO()
    Image.new("P", (40, 40)).save(out, "GIF")
    return out.getvalue()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"this is not an image", "not a readable image"),
        (_truncated_jpeg(), "corrupt or truncated"),
        (_gif(), "format GIF is not accepted"),
        (image_bytes(size=(8, 8)), "smaller than"),
    ],
)
def test_bad_uploads_are_refused_and_change_nothing(app, client, db, data, message):
    client.post("/v1/titles", json={"id": "t1", "name": "x"})
    before = table_counts(db)
    files_before = sorted(p.name for p in Path(app.config["DATA_DIR"]).rglob("*"))
    response = upload(client, "t1", data)
    assert response.status_code == 422, response.get_json()
    assert message in response.get_json()["error"]["message"]
    assert table_counts(db) == before
    files_after = sorted(p.name for p in Path(app.config["DATA_DIR"]).rglob("*"))
    assert files_after == files_before


def test_cmyk_and_palette_images_are_accepted(client):
    client.post("/v1/titles", json={"id": "t1", "name": "x"})
    assert upload(client, "t1", _cmyk_jpeg()).status_code == 201
    assert upload(client, "t1", image_bytes(fmt="PNG", mode="P")).status_code == 201


def test_upload_errors(client, db):
    client.post("/v1/titles", json={"id": "t1", "name": "x"})
    assert upload(client, "nope", image_bytes()).status_code == 404
    assert upload(client, "t1", image_bytes(), id="bad id!").status_code == 422
    assert upload(client, "t1", image_bytes(), tags=",".join(f"t{i}" for i in range(30))).status_code == 422
    missing = client.post("/v1/titles/t1/artworks", data={"other": "x"}, content_type="multipart/form-data")
    assert missing.status_code == 422 and "file" in missing.get_json()["error"]["message"]
    assert client.post("/v1/titles/t1/artworks", json={"file": "x"}).status_code == 415
    assert upload(client, "t1", image_bytes(), id="a1").status_code == 201
    before = table_counts(db)
    assert upload(client, "t1", image_bytes(), id="a1").status_code == 409
    assert table_counts(db) == before
    assert client.delete("/v1/artworks/nope").status_code == 404
    assert client.get("/v1/artworks/nope/image").status_code == 404


def test_oversized_body_is_413(tmp_path):
    from service import create_app

    small = create_app({"DATA_DIR": str(tmp_path / "d"), "LEARNER": False, "MAX_CONTENT_LENGTH": 1000})
    client = small.test_client()
    client.post("/v1/titles", json={"id": "t1", "name": "x"})
    response = upload(client, "t1", image_bytes(size=(300, 300), fmt="PNG") + b"\0" * 2000)
    assert response.status_code == 413
    assert "1000 bytes" in response.get_json()["error"]["message"]


def test_sixteen_bit_grey_images_keep_their_brightness(client):
    import numpy as np

    client.post("/v1/titles", json={"id": "t1", "name": "Grey"})
    out = io.BytesIO()
    Image.fromarray(np.full((40, 40), 8000, dtype=np.uint16)).save(out, "PNG")  # dark: 8000 of 65535
    body = upload(client, "t1", out.getvalue()).get_json()
    assert body["visual"]["brightness"] == pytest.approx(8000 / 65535, abs=0.01)


def test_replace_retires_the_old_artwork_in_the_same_step(client, db):
    client.post("/v1/titles", json={"id": "t1", "name": "x"})
    client.post("/v1/titles", json={"id": "t2", "name": "y"})
    assert upload(client, "t1", image_bytes(), id="old").status_code == 201
    assert upload(client, "t2", image_bytes(), id="other").status_code == 201
    before = table_counts(db)
    assert upload(client, "t1", image_bytes(), id="x1", replaces="other").status_code == 409  # another title's
    assert upload(client, "t1", image_bytes(), id="x2", replaces="ghost").status_code == 404
    assert table_counts(db) == before
    assert upload(client, "t1", image_bytes((0, 0, 255)), id="new", replaces="old").status_code == 201
    assert [a["id"] for a in client.get("/v1/titles/t1/artworks").get_json()["artworks"]] == ["new"]
    retired = client.get("/v1/titles/t1/artworks?include_retired=true").get_json()["artworks"]
    assert [(a["id"], a["active"]) for a in retired] == [("old", False), ("new", True)]
    assert upload(client, "t1", image_bytes(), id="x3", replaces="old").status_code == 409  # already retired


def test_a_refused_duplicate_keeps_the_existing_image(client):
    client.post("/v1/titles", json={"id": "t1", "name": "x"})
    assert upload(client, "t1", image_bytes((255, 0, 0)), id="a1").status_code == 201
    assert upload(client, "t1", image_bytes((0, 0, 255)), id="a1").status_code == 409
    served = Image.open(io.BytesIO(client.get("/v1/artworks/a1/image").data))
    assert served.getpixel((1, 1)) == (255, 0, 0)


def test_concurrent_renders_of_one_thumbnail_all_succeed(client):
    from concurrent.futures import ThreadPoolExecutor

    client.post("/v1/titles", json={"id": "t1", "name": "x"})
    upload(client, "t1", image_bytes(size=(1200, 1800)), id="big")
    with ThreadPoolExecutor(8) as pool:
        statuses = list(
            pool.map(lambda _: client.get("/v1/artworks/big/image?w=1280&format=png").status_code, range(8))
        )
    assert statuses == [200] * 8


def test_icc_profiles_are_converted_and_never_served(client):
    from PIL import ImageCms

    client.post("/v1/titles", json={"id": "t1", "name": "x"})
    out = io.BytesIO()
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes()
    Image.new("RGB", (64, 64), (200, 30, 30)).save(out, "JPEG", icc_profile=b"UPLOADER-SECRET" + b"\0" * 200)
    assert upload(client, "t1", out.getvalue(), id="bogus").status_code == 201
    out = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 30, 30)).save(out, "PNG", icc_profile=profile)
    assert upload(client, "t1", out.getvalue(), id="lab").status_code == 201
    for artwork in ("bogus", "lab"):
        for query in ("", "?w=92&format=jpeg", "?format=webp"):
            data = client.get(f"/v1/artworks/{artwork}/image{query}").data
            assert b"UPLOADER-SECRET" not in data
            assert "icc_profile" not in Image.open(io.BytesIO(data)).info


@pytest.mark.parametrize("query", ["?w=%C2%B3", "?h=%D9%A3%D9%A4%D9%A2"])
def test_non_ascii_digits_are_refused(client, query):
    client.post("/v1/titles", json={"id": "t1", "name": "x"})
    upload(client, "t1", image_bytes(), id="a1")
    assert client.get(f"/v1/artworks/a1/image{query}").status_code == 422


def test_overlong_sides_are_refused(client, db):
    client.post("/v1/titles", json={"id": "t1", "name": "x"})
    before = table_counts(db)
    response = upload(client, "t1", image_bytes(size=(16, 20000)))
    assert response.status_code == 422 and "on a side" in response.get_json()["error"]["message"]
    assert table_counts(db) == before


def test_a_retired_artwork_can_be_restored(client, db):
    client.post("/v1/titles", json={"id": "t1", "name": "One"})
    for artwork_id, color in (("summer", (250, 200, 40)), ("winter", (40, 60, 200))):
        assert upload(client, "t1", image_bytes(color), id=artwork_id).status_code == 201
    assert client.delete("/v1/artworks/winter").status_code == 204
    shown = {client.post("/v1/rank", json={"slots": 1}).get_json()["slots"][0]["artwork_id"] for _ in range(30)}
    assert shown == {"summer"}  # retired: never chosen
    restored = client.post("/v1/artworks/winter/restore")
    assert restored.status_code == 200 and restored.get_json()["active"] is True
    assert restored.get_json()["retired_at"] is None and "path" not in restored.get_json()
    shown = {client.post("/v1/rank", json={"slots": 1}).get_json()["slots"][0]["artwork_id"] for _ in range(60)}
    assert shown == {"summer", "winter"}
    before = table_counts(db)
    assert client.post("/v1/artworks/winter/restore").status_code == 200  # already active: nothing changes
    assert table_counts(db) == before
    assert client.post("/v1/artworks/nope/restore").status_code == 404
    assert client.post("/v1/artworks/bad%20id/restore").status_code == 422
    assert table_counts(db) == before
