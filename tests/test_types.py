"""The type hints hold: mypy (configured in mypy.ini) finds no error."""

from __future__ import annotations

import subprocess
import sys

from tests.helpers import ROOT


def test_mypy_finds_no_errors():
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-incremental"], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout + result.stderr
