"""The README documents every setting, route and command, and its test command is what CI runs."""

from __future__ import annotations

import re
from pathlib import Path

from service import config, create_app

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def code_blocks() -> list[str]:
    return re.findall(r"```\w*\n(.*?)```", README, flags=re.S)


def test_first_two_commands_run_and_test():
    run, test = code_blocks()[:2]
    assert "requirements.txt" in run and "demo-catalog" in run and "gunicorn" in run and "wsgi:app" in run
    assert "requirements-dev.txt" in test and "pytest" in test
    assert test.strip() in (ROOT / ".ci" / "run").read_text()


def test_every_setting_is_documented():
    for name in config.SETTINGS:
        assert f"`MARQUEE_{name}`" in README, name


def test_every_route_is_documented(tmp_path):
    app = create_app({"DATA_DIR": str(tmp_path), "LEARNER": False})
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
        assert path in README, path


def test_every_cli_command_is_documented(tmp_path):
    app = create_app({"DATA_DIR": str(tmp_path), "LEARNER": False})
    for name in app.cli.list_commands(None):  # type: ignore[arg-type]
        assert f"flask --app wsgi {name}" in README, name
