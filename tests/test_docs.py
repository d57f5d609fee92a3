"""The README and docs/ document every setting, route and command, every link lands, and the test command is CI's."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from service import config, create_app
from tests.helpers import ROOT

README = (ROOT / "README.md").read_text()
PAGES = {path: path.read_text() for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]}
DOCS = "\n".join(PAGES.values())
MAX_README_LINES = 250  # the README is the fast path; the reference lives in docs/


def code_blocks() -> list[str]:
    return re.findall(r"```\w*\n(.*?)```", README, flags=re.S)


def test_first_two_commands_run_and_test():
    run, test = code_blocks()[:2]
    assert "requirements.txt" in run and "demo-catalog" in run and "gunicorn" in run and "wsgi:app" in run
    assert "requirements-dev.txt" in test and "pytest" in test
    assert test.strip() in (ROOT / ".ci" / "run").read_text()


def test_the_readme_stays_a_fast_path_that_links_every_page():
    assert len(README.splitlines()) <= MAX_README_LINES
    for path in PAGES:
        if path.name != "README.md":
            assert f"](docs/{path.name})" in README, path.name


def test_every_setting_is_documented():
    for name in config.SETTINGS:
        assert f"`MARQUEE_{name}`" in README, name  # the configuration table is the README's


def test_every_route_is_documented(tmp_path):
    app = create_app({"DATA_DIR": str(tmp_path), "LEARNER": False})
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
        assert path in DOCS, path


def test_every_cli_command_is_documented(tmp_path):
    app = create_app({"DATA_DIR": str(tmp_path), "LEARNER": False})
    for name in app.cli.list_commands(None):  # type: ignore[arg-type]
        assert f"flask --app wsgi {name}" in DOCS, name


def anchors(text: str) -> set[str]:
    """The anchors a Markdown page offers: its headings as GitHub slugs them, and its ``<a id>`` tags."""
    found = set(re.findall(r'<a id="([^"]+)"></a>', text))
    for heading in re.findall(r"^#+ (.*)$", text, flags=re.M):
        found.add(re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-"))
    return found


@pytest.mark.parametrize("page", sorted(PAGES), ids=lambda path: path.name)
def test_every_link_lands(page: Path):
    for target, anchor in re.findall(r"\]\(([^)#\s]*)(?:#([\w-]+))?\)", PAGES[page]):
        if target.startswith(("http://", "https://")):
            continue
        linked = (page.parent / target).resolve() if target else page
        assert linked.exists(), f"{page.name}: {target} does not exist"
        if anchor:
            assert anchor in anchors(linked.read_text()), f"{page.name}: no #{anchor} in {linked.name}"
