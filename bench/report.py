"""Benchmark results: saved as JSON under bench/results/ and printed as a Markdown table."""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

RESULTS = Path(__file__).resolve().parent / "results"


def machine(*extra: str) -> str:
    """Describe the machine a benchmark ran on: architecture, cores, Python, then ``extra`` (library versions, ...)."""
    return ", ".join(
        [f"{platform.machine()}", f"{os.cpu_count()} cores", f"Python {platform.python_version()}", *extra]
    )


def cpu_idle(sysfs: Path = Path("/sys")) -> str:
    """Describe how the CPUs idle: the cpuidle driver and, for a virtual machine's ``haltpoll``, its poll time.

    How a virtual machine's idle CPUs wait is one of the machine's settings a fixed-rate tail may
    depend on; whether it does here was not established (BENCHMARKS.md, "2026-12-07 (late night)"),
    so the figures say what it was.
    """
    driver = sysfs / "devices/system/cpu/cpuidle/current_driver"
    poll = sysfs / "module/haltpoll/parameters/guest_halt_poll_ns"
    try:
        described = f"cpuidle {driver.read_text().strip()}"
    except OSError:
        return "cpuidle unknown"
    try:
        described += f", guest_halt_poll_ns {int(poll.read_text())}"
    except (OSError, ValueError):
        pass
    return described


def report(name: str, result: Mapping[str, Any]) -> Path:
    """Save ``result`` as ``bench/results/<name>-<time>.json``, print it as a table, return the path."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(dict(result), indent=2))
    print("| measure | value |\n|---|---|")
    for key, value in result.items():
        print(f"| {key} | {value} |")
    return path


def chosen(
    configurations: Mapping[str, T], names: Sequence[str] | None, parser: argparse.ArgumentParser
) -> dict[str, T]:
    """Return the configurations ``--only`` names (all when it names none); an unknown name is a usage error."""
    if not names:
        return dict(configurations)
    unknown = [name for name in names if name not in configurations]
    if unknown:
        parser.error(f"--only: no configuration named {', '.join(unknown)} (names: {', '.join(configurations)})")
    return {name: configurations[name] for name in names}
