"""Verdicts do not depend on the machine's load: time limits are CPU seconds of the sandbox, with a
wall-clock backstop (grader/limits.py, `Deadline`).

On a machine oversubscribed four times (4 busy processes per core beside the grading), a correct
reference keeps its verdict, also under a CPU limit so tight that a wall-clock limit of the same
seconds fails it (value iteration's whole run, about 0.3 CPU seconds, against 1 second)."""

import os
import subprocess
import sys

import pytest

from conftest import REPO

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
def test_a_correct_reference_keeps_its_verdict_on_an_oversubscribed_machine(oversubscribed):
    for name in ("bandits", "value_iteration"):
        report = grade(name)
        assert report["status"] == "passed", [c["message"] for c in report["checks"] if not c["passed"]]
        assert report["durations"]["cpu_s"] > 0
    # A tight limit: 1 CPU second per question passes; the same seconds as a wall-clock limit (the
    # grader before issue 15) fail the reference on the busy machine.
    report = grade("value_iteration", time=1)
    assert report["status"] == "passed", [c["message"] for c in report["checks"] if not c["passed"]]
    from grader import limits

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(
            limits.Deadline,
            "exceeded",
            lambda self, fresh=True: (
                f"{self.wall():.2f} wall seconds of {self.limit:g}" if self.wall() > self.limit else None
            ),
        )
        wall_clock = grade("value_iteration", time=1)
    assert wall_clock["status"] == "failed" and any("timed out" in c["message"] for c in wall_clock["checks"]), (
        "the machine was not busy enough for this test to show anything"
    )
