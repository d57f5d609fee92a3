"""What benchmark results say of the machine they were taken on."""

from __future__ import annotations

from pathlib import Path

from bench.report import cpu_idle


def _write(root: Path, relative: str, text: str) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_a_virtual_machines_idle_polling_is_named(tmp_path: Path):
    _write(tmp_path, "devices/system/cpu/cpuidle/current_driver", "haltpoll\n")
    _write(tmp_path, "module/haltpoll/parameters/guest_halt_poll_ns", "200000\n")
    assert cpu_idle(tmp_path) == "cpuidle haltpoll, guest_halt_poll_ns 200000"


def test_a_driver_without_polling_and_a_machine_that_says_nothing(tmp_path: Path):
    _write(tmp_path, "devices/system/cpu/cpuidle/current_driver", "intel_idle\n")
    assert cpu_idle(tmp_path) == "cpuidle intel_idle"
    assert cpu_idle(tmp_path / "elsewhere") == "cpuidle unknown"
