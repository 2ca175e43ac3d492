"""Runs an assignment's checks against one submission and builds the report (a plain dict,
the same content as the --json file; its schema is documented in README.md)."""
import datetime
import hashlib
import platform
import time
import traceback
from dataclasses import asdict
from importlib import metadata
from pathlib import Path

import numpy as np

from .sandbox import DeviceUnavailable, Sandbox, SubmissionError
from .spec import Outcome

SCHEMA_VERSION = 1


class GraderBug(Exception):
    """An error in the grader or an assignment's checks, never the student's fault."""


class Context:
    """What a check gets: the submission's sandbox, the seed, the limits and a place for plots."""

    def __init__(self, assignment, submission, limits, device, seed, plots_dir=None):
        self.assignment, self.submission, self.limits = assignment, Path(submission), limits
        self.device_requested, self.seed = device, seed
        self.plots_dir = Path(plots_dir) if plots_dir else None
        self.device = None
        self.shared = {}  # state a check leaves for later checks (e.g. a trained agent's results)
        self._sandbox = None

    def rng(self, *labels):
        """A random generator owned by the grader, reproducible from the seed and the labels."""
        digest = hashlib.sha256(repr((self.seed,) + labels).encode()).digest()
        return np.random.default_rng(int.from_bytes(digest[:8], "little"))

    @property
    def sandbox(self):
        """The running child; started again (fresh import) if a previous check killed it."""
        if self._sandbox is None or not self._sandbox.alive:
            self.close()
            self._sandbox = Sandbox(self.submission, self.assignment.name, self.limits,
                                    self.device_requested, self.assignment.tensorflow)
            try:
                self._sandbox.start()
            finally:
                self.device = self._sandbox.device or self.device
        return self._sandbox

    def fresh_sandbox(self):
        """A new child with nothing left over from earlier checks (e.g. one per training seed)."""
        self.close()
        return self.sandbox

    def close(self):
        if self._sandbox is not None:
            self._sandbox.close()
            self._sandbox = None


def versions():
    found = {"python": platform.python_version()}
    for package in ("numpy", "tensorflow", "tensorflow-probability", "keras", "gymnasium"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = None
    return found


def grade(assignment, submission, *, limits=None, device="cpu", seed=42, plots_dir=None, progress=None):
    """Grades one submission file; returns the report dict. Raises DeviceUnavailable when the
    requested device is missing and GraderBug for errors of the grader itself."""
    limits = limits or assignment.limits
    ctx = Context(assignment, submission, limits, device, seed, plots_dir)
    started, t0 = datetime.datetime.now(datetime.timezone.utc), time.monotonic()
    results, todos, error = [], [], None
    try:
        try:
            ctx.sandbox  # import the submission once up front: a broken file fails every check alike
        except SubmissionError as failure:
            error = failure
        start_s = time.monotonic() - t0
        for check in assignment.checks:
            if progress:
                progress(check.name)
            t = time.monotonic()
            if error is not None:
                outcome = Outcome(False, f"not run: {error.message}")
            else:
                try:
                    outcome = check.run(ctx)
                except SubmissionError as failure:
                    outcome = Outcome(False, failure.message, details={"kind": failure.kind,
                                                                        "traceback": failure.details})
                    ctx.close()  # the child's state is unknown now: the next check starts afresh
                    if failure.kind == "todo":
                        todos.append(failure.message.split("TODO: ", 1)[-1])
                except DeviceUnavailable:
                    raise
                except Exception as bug:
                    raise GraderBug(f"check {check.name!r} of {assignment.name} failed inside the grader: "
                                    f"{type(bug).__name__}: {bug}\n{traceback.format_exc()}") from bug
            results.append(check_entry(check, outcome, time.monotonic() - t))
    finally:
        ctx.close()
    score = sum(r["score"] for r in results)
    passed = error is None and all(r["passed"] for r in results)
    return {
        "schema_version": SCHEMA_VERSION,
        "assignment": assignment.name,
        "title": assignment.title,
        "submission": str(submission),
        "passed": passed,
        "score": round(score, 4),
        "max_score": assignment.max_score,
        "error": error.message if error else None,
        "error_kind": error.kind if error else None,
        "todos": sorted(set(todos)),
        "checks": results,
        "device": ctx.device or "cpu",
        "seed": seed,
        "limits": asdict(limits),
        "durations": {"total_s": round(time.monotonic() - t0, 3), "start_s": round(start_s, 3)},
        "started_at": started.isoformat(timespec="seconds"),
        "versions": versions(),
    }


def check_entry(check, outcome, seconds):
    fraction = outcome.score if outcome.score is not None else float(outcome.passed)
    fraction = min(max(float(fraction), 0.0), 1.0)
    value = outcome.value
    if isinstance(value, (np.floating, np.integer)):
        value = value.item()
    if isinstance(value, float):
        value = round(value, 4)
    return {
        "name": check.name,
        "description": check.description,
        "passed": bool(outcome.passed),
        "score": round(fraction * check.points, 4),
        "max_score": check.points,
        "value": value,
        "threshold": outcome.threshold,
        "message": outcome.message,
        "visibility": check.visibility,
        "duration_s": round(seconds, 3),
        "details": outcome.details,
    }
