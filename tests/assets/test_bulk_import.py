"""Bulk import from a folder and a manifest, with broken files among the good ones."""

from __future__ import annotations

import json

from tests.helpers import image_bytes, table_counts


def test_import_reports_every_refusal_and_imports_the_rest(app, client, db, tmp_path):
    folder = tmp_path / "drop"
    (folder / "posters").mkdir(parents=True)
    (folder / "posters" / "good1.png").write_bytes(image_bytes((200, 30, 30)))
    (folder / "posters" / "good2.jpg").write_bytes(image_bytes((30, 30, 200), fmt="JPEG"))
    (folder / "posters" / "good3.png").write_bytes(image_bytes((30, 200, 30)))
    (folder / "posters" / "broken.jpg").write_bytes(image_bytes(fmt="JPEG")[:200])
    (folder / "posters" / "notes.png").write_bytes(b"not an image at all")
    (tmp_path / "outside.png").write_bytes(image_bytes())
    (folder / "manifest.csv").write_text(
        "title_id,title,genres,year,maturity,file,artwork_id,tags\n"
        "t1,Heist Night,crime;comedy,2019,PG-13,posters/good1.png,t1-red,bold;warm\n"
        "t1,,,,,posters/good2.jpg,t1-blue,\n"
        "t2,Broken,drama,2001,R,posters/broken.jpg,,\n"
        "t3,Notes,drama,2001,R,posters/notes.png,,\n"
        "t4,Missing,drama,2001,R,posters/missing.png,,\n"
        "t5,Escape,drama,2001,R,../outside.png,,\n"
        "t6,,drama,2001,R,posters/good3.png,,\n"
        "t7,Bad year,drama,1200,R,posters/good3.png,,\n"
        "t1,,,,,posters/good3.png,t1-red,\n"
    )
    result = app.test_cli_runner().invoke(args=["import-catalog", str(folder)])
    assert result.exit_code == 1, result.output
    assert "1 titles created, 2 artworks added, 7 rows refused" in result.output
    for expected in (
        "row 3 (posters/broken.jpg): file: the image is corrupt or truncated",
        "row 4 (posters/notes.png): file: not a readable image",
        "row 5 (posters/missing.png): file: no such file",
        "row 6 (../outside.png): file: the path leads outside",
        "row 7 (posters/good3.png): title: the name is needed",
        "row 8 (posters/good3.png): year:",
        "row 9 (posters/good3.png): artwork 't1-red' already exists",
    ):
        assert expected in result.output, expected
    titles = client.get("/v1/titles").get_json()["titles"]
    assert [(t["id"], t["genres"], t["year"]) for t in titles] == [("t1", ["crime", "comedy"], 2019)]
    artworks = client.get("/v1/titles/t1/artworks").get_json()["artworks"]
    assert [(a["id"], a["tags"]) for a in artworks] == [("t1-red", ["bold", "warm"]), ("t1-blue", [])]


def test_json_manifest_and_a_second_run_changes_nothing(app, db, tmp_path):
    folder = tmp_path / "drop"
    folder.mkdir()
    (folder / "a.png").write_bytes(image_bytes())
    (folder / "manifest.json").write_text(
        json.dumps(
            [
                {
                    "title_id": "t9",
                    "title": "Nine",
                    "genres": ["sci-fi"],
                    "file": "a.png",
                    "artwork_id": "t9-a",
                    "tags": ["x"],
                }
            ]
        )
    )
    runner = app.test_cli_runner()
    assert runner.invoke(args=["import-catalog", str(folder)]).exit_code == 0
    before = table_counts(db)
    again = runner.invoke(args=["import-catalog", str(folder)])
    assert again.exit_code == 1 and "already exists" in again.output
    assert table_counts(db) == before


def test_unreadable_manifest_is_a_usage_error(app, tmp_path):
    folder = tmp_path / "drop"
    folder.mkdir()
    (folder / "manifest.json").write_text('{"not": "a list"}')
    result = app.test_cli_runner().invoke(args=["import-catalog", str(folder)])
    assert result.exit_code == 2 and "list of objects" in result.output
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no manifest.csv" in app.test_cli_runner().invoke(args=["import-catalog", str(empty)]).output


def test_odd_rows_are_refused_one_by_one_and_a_bom_is_fine(app, client, db, tmp_path):
    folder = tmp_path / "drop"
    folder.mkdir()
    (folder / "a.png").write_bytes(image_bytes())
    client.post("/v1/titles", json={"id": "t0", "name": "Zero"})
    client.post(
        "/v1/titles/t0/artworks",
        data={"file": (__import__("io").BytesIO(image_bytes()), "a.png"), "id": "taken"},
        content_type="multipart/form-data",
    )
    (folder / "manifest.json").write_text(
        json.dumps(
            [
                {"title_id": "t1", "title": "One", "year": {}, "file": "a.png"},
                {"title_id": "t2", "title": "Two", "file": "a.png", "artwork_id": True},
                {"title_id": 5, "title": "Five", "file": "a.png"},
                {"title_id": "t3", "title": "Three", "file": "a.png", "tags": ["x" * 100]},
                {"title_id": "t4", "title": "Four", "file": "a.png", "artwork_id": "taken"},
                {"title_id": "t6", "title": "Six", "file": "a.png", "year": 2001},
            ]
        ).replace("{}", "{}")
    )
    result = app.test_cli_runner().invoke(args=["import-catalog", str(folder)])
    assert "1 titles created, 1 artworks added, 5 rows refused" in result.output, result.output
    assert [t["id"] for t in client.get("/v1/titles").get_json()["titles"]] == ["t0", "t6"]  # t4 not created
    (folder / "manifest.json").unlink()
    (folder / "manifest.csv").write_text("\ufefftitle_id,title,file\nt7,Seven,a.png\n", encoding="utf-8")
    assert app.test_cli_runner().invoke(args=["import-catalog", str(folder)]).exit_code == 0
