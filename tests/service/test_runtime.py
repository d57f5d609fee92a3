"""The learner's watchdog: a learner that keeps failing at start is started again ever more slowly."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

from service import runtime


def exited(code: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen([sys.executable, "-c", f"raise SystemExit({code})"])
    process.wait()
    return process


def killed() -> subprocess.Popen[bytes]:
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    process.send_signal(signal.SIGKILL)
    process.wait()
    return process


def test_a_learner_failing_at_start_waits_longer_each_time_and_a_killed_one_does_not(monkeypatch):
    supervisor = runtime.LearnerSupervisor({"DATABASE": "unused"})
    pauses: list[float] = []
    monkeypatch.setattr(runtime.time, "sleep", pauses.append)

    def after(process: subprocess.Popen[bytes], *, ran: float = 0.0) -> None:
        supervisor.launched_at = time.monotonic() - ran
        supervisor._pause_after(process)

    for _ in range(7):
        after(exited(1))
    assert pauses == [2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0]
    after(killed())  # kill -9 from outside: started again at once, and the count starts over
    after(exited(1))
    assert pauses[7:] == [2.0]
    after(exited(1), ran=runtime.LEARNER_HEALTHY_SECONDS + 1)  # it failed after a long run: not at start
    after(exited(0))  # it lost the election, or its parent went away
    after(exited(1))
    assert pauses[8:] == [2.0]
