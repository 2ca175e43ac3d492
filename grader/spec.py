"""What an assignment declares: its checks, thresholds, limits and points.

Each assignment is one module in grader/assignments/ that defines `ASSIGNMENT = Assignment(...)`.
A check is a function `check(ctx) -> Outcome` that asks the submission questions through
`ctx.sandbox` (see grader/sandbox.py), validates them (grader/answers.py) and measures them itself.
"""

from collections.abc import Callable
from dataclasses import dataclass, field, replace


@dataclass(frozen=True)
class Limits:
    # Time limits are CPU seconds of all the sandbox's processes together (so that a verdict does not
    # depend on the machine's load), with a wall-clock backstop of wall_factor times the limit (a
    # submission that sleeps or waits).
    time: float = 60  # CPU seconds for one question to the submission (a unit check, an evaluation step)
    train_time: float = 300  # CPU seconds for a training run
    start_time: float = 120  # CPU seconds to start Python (and TensorFlow) and import the submission
    memory_mb: int = 2048  # resident memory of the submission's processes together
    threads: int = 2  # compute threads (TensorFlow, BLAS, OpenMP) given to the submission
    max_threads: int = 256  # operating-system threads in all its processes: a safety net
    max_message_bytes: int = 1 << 28  # largest answer accepted
    max_submission_bytes: int = 128 << 10  # larger files are refused: no data set rides along in the source
    disk_mb: int = 512  # the sandbox's writable space (its /tmp, a tmpfs), counted in memory_mb too
    max_processes: int = 64  # processes in the sandbox at once (with max_threads, against fork bombs)
    wall_factor: float = 3  # the wall-clock backstop of every time limit, as a multiple of it

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
class Hidden:
    """A hidden check's function, kept in grader/hidden/MODULE.py (see grader/hidden/__init__.py):
    the course's repository has it, the students' handout does not."""

    module: str
    function: str

    def load(self):
        """The function, or None where grader/hidden/ is not there (the handout)."""
        import importlib

        try:
            module = importlib.import_module(f"{__package__}.hidden.{self.module}")
        except ModuleNotFoundError:
            return None
        return getattr(module, self.function)

    def __call__(self, ctx):
        return self.load()(ctx)


@dataclass(frozen=True)
class Check:
    name: str
    run: Callable
    points: float = 1.0
    visibility: str = "visible"  # or "hidden": shown to instructors only (Gradescope, JUnit)
    description: str = ""
    functions: tuple = ()  # the student's functions this check is about, e.g. ("Agent.update",):
    # an unfinished TODO elsewhere is reported as what the check needs
    training: bool = False  # it trains a model or grades a learned one (Limits.train_time applies;
    # tests run the other checks as the fast ones)
    end_to_end: bool = False  # it runs the student's parts together (a testbed, a whole map) without
    # training; a check neither end-to-end nor training is a unit check

    @property
    def unit(self):
        """A unit check: about one part of the student's code (a function, or a class's methods),
        which end-to-end and training checks that fail point at."""
        return not (self.training or self.end_to_end)


@dataclass(frozen=True)
class Assignment:
    name: str  # also the submission's file name: NAME.py
    title: str
    checks: tuple
    limits: Limits = Limits()
    tensorflow: bool = False  # the child imports TensorFlow and gets the requested device
    summary: str = ""  # how it is graded, for students: the templates' docstrings carry it
    # e.g. "about 2 minutes" on 2 idle cores: measured by bench/sandbox.py --full in the course's repository
    expected_time: str = ""
    prepare: Callable | None = None  # loads what the checks need (data, environments) before any child starts

    @property
    def graded_checks(self):
        """The checks this copy of the grader can run (not those hidden from the handout)."""
        return tuple(c for c in self.checks if not (isinstance(c.run, Hidden) and c.run.load() is None))

    @property
    def max_score(self):
        return sum(check.points for check in self.graded_checks)

    def grading_text(self):
        """How it is graded, for the docstring of the template (the course's repository writes it
        there from this spec, so that the two cannot drift)."""
        limits = self.limits
        memory = f"{limits.memory_mb / 1024:g} GiB" if limits.memory_mb >= 1024 else f"{limits.memory_mb} MiB"
        parts = [" ".join(self.summary.split())]
        timing = (
            f"{limits.time:g} CPU seconds for any other question"
            if self.tensorflow
            else f"{limits.time:g} CPU seconds per question"
        )
        if any(c.training for c in self.checks):
            timing = f"{limits.train_time:g} CPU seconds per training run, " + timing
        parts.append(
            f"Limits: {timing} (and at most {limits.wall_factor:g} times as many seconds of wall-clock "
            f"time), {memory} of memory, {limits.threads} compute thread(s), and a file "
            f"of at most {limits.max_submission_bytes // 1024} KiB."
        )
        if self.expected_time:
            parts.append(f"A grading takes {self.expected_time} on 2 idle cores (longer on a busy machine).")
        return " ".join(p for p in parts if p)
