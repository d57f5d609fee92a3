"""Benchmark results: saved as JSON under bench/results/ and printed as a Markdown table."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Any, Mapping

RESULTS = Path(__file__).resolve().parent / "results"


def machine(*extra: str) -> str:
    """Describe the machine a benchmark ran on: architecture, cores, Python, then ``extra`` (library versions, ...)."""
    return ", ".join([f"{platform.machine()}", f"{os.cpu_count()} cores", f"Python {platform.python_version()}", *extra])


def report(name: str, result: Mapping[str, Any]) -> Path:
    """Save ``result`` as ``bench/results/<name>-<time>.json``, print it as a table, return the path."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(dict(result), indent=2))
    print("| measure | value |\n|---|---|")
    for key, value in result.items():
        print(f"| {key} | {value} |")
    return path
