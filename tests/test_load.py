"""Verdicts do not depend on the machine's load: time limits are CPU seconds of the sandbox, with a
wall-clock backstop (grader/limits.py, `Deadline`).

On a machine oversubscribed four times (4 busy processes per core beside the grading), a correct
reference keeps its verdict, also under a tight CPU limit of 1 second a question. Whether a
wall-clock limit of the same seconds would have failed it depends on how busy the machine is; the
rule itself is tested on a clock of the test's own."""

import os
import subprocess
import sys

import pytest

from conftest import REPO
from grader.spec import Limits

BUSY_PER_CORE = 4


@pytest.fixture
def oversubscribed():
    """4 busy processes per core, for the duration of the test."""
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(BUSY_PER_CORE * os.cpu_count())]
    try:
        yield
    finally:
        for process in busy:
            process.kill()
        for process in busy:
            process.wait()


def grade(name, **limits):
    from grader import runner
    from grader.assignments import all_assignments

    assignment = all_assignments()[name]
    return runner.grade(
        assignment, REPO / "solutions" / f"{name}.py", limits=assignment.limits.override(**limits)
    ).to_dict()


@pytest.mark.slow
@pytest.mark.serial  # run alone: the load would starve the tests beside it
def test_a_correct_reference_keeps_its_verdict_on_an_oversubscribed_machine(oversubscribed):
    for name in ("bandits", "value_iteration"):
        report = grade(name)
        assert report["status"] == "passed", [c["message"] for c in report["checks"] if not c["passed"]]
        assert report["durations"]["cpu_s"] > 0
    # A tight limit: 1 CPU second per question still passes on the busy machine.
    report = grade("value_iteration", time=1)
    assert report["status"] == "passed", [c["message"] for c in report["checks"] if not c["passed"]]


@pytest.mark.thorough  # minutes: a TensorFlow grading on a machine loaded 4 times over
@pytest.mark.serial
def test_the_reinforce_reference_keeps_its_verdict_on_an_oversubscribed_machine(oversubscribed):
    """The training limit is CPU seconds: REINFORCE's reference trains as far, and passes, while 4
    busy processes per core take most of the machine (a wall-clock limit of 300 s would be reached
    at a fifth of the CPU time)."""
    report = grade("reinforce")
    assert report["status"] == "passed", [c["message"] for c in report["checks"] if not c["passed"]]
    assert report["durations"]["total_s"] > report["durations"]["cpu_s"], report["durations"]


class Clock:
    def __init__(self):
        self.now = 100.0

    def monotonic(self):
        return self.now


class Box:
    """What a Deadline reads of its sandbox: the CPU seconds used, the limits, no usage scan."""

    limits, usage, cpu = Limits(), None, 0.0

    def cpu_seconds(self, cached=False):
        return self.cpu


def test_a_deadline_counts_cpu_seconds_and_stops_a_sleeper_at_the_backstop(monkeypatch):
    """The rule itself, on a machine of any load: past the limit in wall-clock seconds but not in CPU
    seconds (a busy machine) is within the limit; past it in CPU seconds is not; sleeping until the
    backstop (wall_factor x the limit) is stopped as sleeping."""
    from grader import limits

    clock, box = Clock(), Box()
    monkeypatch.setattr(limits, "time", clock)
    deadline = limits.Deadline(box, 1.0)
    clock.now += 2.5  # 2.5 wall seconds, 0.5 CPU seconds: the old wall-clock rule would have failed it
    box.cpu = 0.5
    assert deadline.exceeded() is None
    box.cpu = 1.2
    assert deadline.exceeded() == "used 1.2 CPU seconds of its 1"
    box.cpu = 0.0
    sleeper = limits.Deadline(box, 1.0)
    clock.now += Limits().wall_factor + 0.1  # the backstop: watched for a moment whether it waits for a CPU
    assert sleeper.exceeded() is None
    clock.now += limits.Deadline.PROBE_SECONDS + 0.1
    assert sleeper.exceeded().startswith("slept: ")
