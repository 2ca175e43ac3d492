"""What an assignment declares: its checks, thresholds, limits and points.

Each assignment is one module in grader/assignments/ that defines `ASSIGNMENT = Assignment(...)`.
A check is a function `check(ctx) -> Outcome` that asks the submission questions through
`ctx.sandbox` (see grader/sandbox.py) and measures the answers itself.
"""
from dataclasses import dataclass, field, replace
from typing import Callable


@dataclass(frozen=True)
class Limits:
    time: float = 60            # seconds for one question to the submission (a unit check, an evaluation step)
    train_time: float = 300     # seconds for a training run
    start_time: float = 120     # seconds to start Python (and TensorFlow) and import the submission
    memory_mb: int = 2048       # resident memory of the submission's processes together
    threads: int = 2            # compute threads (TensorFlow, BLAS, OpenMP) given to the submission
    max_threads: int = 256      # operating-system threads in all its processes: a safety net
    max_message_bytes: int = 1 << 28  # largest answer accepted

    def override(self, **changes):
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


@dataclass
class Outcome:
    """The result of one check. `value` and `threshold` are shown as they are; `score` is the
    fraction of the check's points earned (partial credit), by default 1 if passed else 0."""
    passed: bool
    message: str = ""
    value: object = None
    threshold: str = ""
    score: float | None = None
    details: dict = field(default_factory=dict)  # extra data for the JSON report (curves...)


@dataclass(frozen=True)
class Check:
    name: str
    run: Callable
    points: float = 1.0
    visibility: str = "visible"  # or "hidden": shown to instructors only (Gradescope, JUnit)
    description: str = ""


@dataclass(frozen=True)
class Assignment:
    name: str                    # also the submission's file name: NAME.py
    title: str
    checks: tuple
    limits: Limits = Limits()
    tensorflow: bool = False     # the child imports TensorFlow and gets the requested device

    @property
    def max_score(self):
        return sum(check.points for check in self.checks)
