"""The command line explains itself: Marquee's own help, whole summaries, every option described."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import click
from flask import Flask

from tests.helpers import ROOT


def _commands(group: click.Group, prefix: str = "") -> list[tuple[str, click.Command]]:
    found = []
    for name, command in sorted(group.commands.items()):
        found.append((prefix + name, command))
        if isinstance(command, click.Group):
            found += _commands(command, prefix + name + " ")
    return found


def test_python_m_service_help_is_marquees_and_lists_every_command(tmp_path: Path) -> None:
    env = {**os.environ, "MARQUEE_DATA_DIR": str(tmp_path / "data")}
    result = subprocess.run(
        [sys.executable, "-m", "service", "--help"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert result.stdout.startswith("Usage: python -m service [OPTIONS] COMMAND [ARGS]...")
    assert "Marquee's command line" in result.stdout
    assert "general utility script" not in result.stdout and "-A, --app" not in result.stdout
    for name in ("demo-catalog", "evaluate", "keys", "learn", "simulate", "warm-start"):
        assert f"  {name} " in result.stdout


def test_python_m_service_runs_the_commands(tmp_path: Path) -> None:
    env = {**os.environ, "MARQUEE_DATA_DIR": str(tmp_path / "data")}
    result = subprocess.run(
        [sys.executable, "-m", "service", "keys", "create", "--name", "ops", "--role", "admin"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.strip()) >= 32  # the key itself, alone on stdout
    listed = subprocess.run(
        [sys.executable, "-m", "service", "keys", "list"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert "ops" in listed.stdout and "admin" in listed.stdout


def test_every_command_has_a_whole_summary_and_every_option_a_description(app: Flask) -> None:
    commands = _commands(app.cli)
    assert len(commands) >= 12
    for name, command in commands:
        summary = command.get_short_help_str(limit=45)
        assert summary and not summary.endswith("..."), f"{name}: summary cut off: {summary!r}"
        for param in command.params:
            if isinstance(param, click.Option):
                assert param.help, f"{name} {param.opts[0]}: no description"
            if isinstance(param, click.Option) and param.required:
                assert "[required]" in command.get_help(click.Context(command, info_name=name)), name
