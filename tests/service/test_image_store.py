"""Artwork masters kept in the database: nodes that share no folder serve every upload, byte for byte."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest
from PIL import Image

from bandits.storage import connect
from service import create_app
from tests.helpers import image_bytes, postgres_schema, table_counts


def upload(client, title_id: str, data: bytes):
    return client.post(
        f"/v1/titles/{title_id}/artworks",
        data={"file": (io.BytesIO(data), "poster.png")},
        content_type="multipart/form-data",
    )


def node(folder: Path, url: str = "", store: str = "database"):
    return create_app(
        {"DATA_DIR": str(folder), "DATABASE_URL": url, "LEARNER": False, "IMAGE_STORE": store}
    ).test_client()


def test_two_nodes_without_a_shared_folder_serve_each_others_uploads(tmp_path: Path):
    with postgres_schema() as url:
        first, second = node(tmp_path / "first", url), node(tmp_path / "second", url)
        assert (
            first.post("/v1/titles", json={"id": "t1", "name": "Heist Night", "genres": ["crime"]}).status_code == 201
        )
        data = image_bytes((10, 120, 200), size=(160, 240))
        stored = upload(first, "t1", data).get_json()
        assert not (tmp_path / "second" / "artworks").exists()
        master = second.get(f"/v1/artworks/{stored['id']}/image")
        assert master.status_code == 200 and hashlib.sha256(master.data).hexdigest() == stored["sha256"]
        thumbnail = second.get(f"/v1/artworks/{stored['id']}/image?w=92&format=webp")
        assert thumbnail.status_code == 200 and Image.open(io.BytesIO(thumbnail.data)).size[0] == 92
        # The second node keeps its copy: the first node's folder is not needed again.
        assert (tmp_path / "second" / "artworks" / f"{stored['id']}.png").read_bytes() == data


def test_a_lost_master_comes_back_from_the_database_and_only_from_there(tmp_path: Path):
    client = node(tmp_path / "kept")
    client.post("/v1/titles", json={"id": "t1", "name": "Heist Night", "genres": ["crime"]})
    data = image_bytes((30, 30, 30))
    stored = upload(client, "t1", data).get_json()
    master = tmp_path / "kept" / "artworks" / f"{stored['id']}.png"
    master.unlink()
    assert client.get(f"/v1/artworks/{stored['id']}/image").data == data and master.read_bytes() == data

    folder_only = node(tmp_path / "folder", store="folder")
    folder_only.post("/v1/titles", json={"id": "t1", "name": "Heist Night", "genres": ["crime"]})
    other = upload(folder_only, "t1", data).get_json()
    (tmp_path / "folder" / "artworks" / f"{other['id']}.png").unlink()
    missing = folder_only.get(f"/v1/artworks/{other['id']}/image")
    assert missing.status_code == 404
    assert "missing from the data folder (and the database keeps no copy" in missing.get_json()["error"]["message"]


def test_a_refused_upload_stores_no_bytes_and_a_bad_setting_is_named(tmp_path: Path):
    client = node(tmp_path / "refused")
    client.post("/v1/titles", json={"id": "t1", "name": "Heist Night", "genres": ["crime"]})
    db = connect(client.application.config["DATABASE"])
    before = table_counts(db)
    assert upload(client, "t1", b"not an image").status_code == 422
    assert upload(client, "missing", image_bytes()).status_code == 404
    assert table_counts(db) == before and db.execute("SELECT COUNT(*) FROM artwork_images").fetchone()[0] == 0
    with pytest.raises(ValueError, match="IMAGE_STORE must be folder or database, got 'bucket'"):
        node(tmp_path / "bad", store="bucket")
