"""Runs an assignment's checks against one submission and builds the report (a plain dict,
the same content as the --json file; its schema is documented in README.md).

The submission's bytes are read once; their SHA-256 is the report's, and those exact bytes are
what every sandbox of the grading gets. What the checks need (data sets, environments) is
loaded by the assignment's `prepare` before any child starts, so nothing a child could have
touched is read afterwards."""

import contextlib
import datetime
import functools
import hashlib
import platform
import threading
import time
import traceback
from dataclasses import asdict
from importlib import metadata
from pathlib import Path

import numpy as np

from . import child, notebook, secret
from .report import CheckResult, Report
from .sandbox import DeviceUnavailable, Sandbox, SubmissionError, printable
from .spec import Outcome


class GraderBug(Exception):
    """An error in the grader or an assignment's checks, never the student's fault."""


class Cancelled(Exception):
    """The grading was stopped from outside (Cancel.cancel()): it has no result."""


class Cancel:
    """Lets another thread stop gradings in progress (a batch on Ctrl-C): cancel() kills their
    children at once, and every grade() given this object raises Cancelled instead of a report."""

    def __init__(self):
        self._event, self._lock, self._contexts = threading.Event(), threading.Lock(), set()

    @property
    def cancelled(self):
        return self._event.is_set()

    def cancel(self):
        self._event.set()
        with self._lock:
            contexts = list(self._contexts)
        for ctx in contexts:
            ctx.kill()

    def watch(self, ctx, on=True):
        with self._lock:
            (self._contexts.add if on else self._contexts.discard)(ctx)


class Context:
    """What a check gets: the submission's sandbox, the seed, the limits and a place for plots."""

    def __init__(
        self,
        assignment,
        submission,
        limits,
        device,
        seed,
        plots_dir=None,
        cancel=None,
        progress=None,
        source=None,
        isolation="bubblewrap",
    ):
        self.assignment, self.submission, self.limits = assignment, Path(submission), limits
        self.source = Path(submission).read_bytes() if source is None else source
        self.program, self.problem = self._program(limits)
        self.isolation = isolation
        self._progress = progress
        self._relayed = (0.0, 0)  # (second, lines relayed in it)
        self.cancel = cancel
        self.device_requested, self.seed = device, seed
        self.plots_dir = Path(plots_dir) if plots_dir else None
        self.device = None
        self.shared = {}  # state a check leaves for later checks (e.g. a trained agent's results)
        self.results = {}  # check name -> (the Check, passed), for the checks run so far
        self._sandbox = None
        self._measuring = set()  # the grader's measurement sandboxes running now (see measuring())
        self._cpu_closed = 0.0  # CPU seconds of the sandboxes closed so far

    def cpu_seconds(self):
        """CPU seconds used by the submission's processes in this grading so far (all its sandboxes)."""
        current = self._sandbox.cpu_seconds() if self._sandbox is not None else 0.0
        return self._cpu_closed + current

    def _program(self, limits):
        """(the Program the child imports, the submission's failure reading it or None): a
        notebook's code cells (grader/notebook.py), or the .py file itself."""
        try:
            program = notebook.program(self.submission, self.source, limits.max_submission_bytes)
        except notebook.NotebookError as error:
            return notebook.Program(b""), SubmissionError("notebook", str(error))
        if len(program.code) <= limits.max_submission_bytes:  # (the sandbox refuses a larger one)
            syntax = syntax_error(program, str(self.submission))
            if syntax is not None:
                return program, syntax
        if program.cells and len(program.code) > limits.max_submission_bytes:
            return program, SubmissionError(
                "too_large",
                f"the notebook's code cells have {len(program.code):,} bytes, "
                f"more than the {limits.max_submission_bytes:,} allowed (outputs do not count)",
            )
        return program, None

    def rng(self, *labels):
        """A random generator owned by the grader, reproducible from the seed and the labels."""
        digest = hashlib.sha256(repr((self.seed,) + labels).encode()).digest()
        return np.random.default_rng(int.from_bytes(digest[:8], "little"))

    def secret_rng(self, *labels):
        """A random generator reproducible for the grader (its key, the seed, the labels) but
        unpredictable to the submission: for what a submission must not be able to anticipate."""
        return secret.rng(self.seed, *labels)

    def failed_units(self, *functions):
        """The names of the unit checks (Check.unit) run so far that failed, among those about any
        of `functions` (all when none are given): what a later, end-to-end check that fails should
        point at. `unit_functions()` says which functions had unit checks run."""
        return [
            check.name
            for check, passed in self.results.values()
            if check.unit and not passed and (not functions or set(check.functions) & set(functions))
        ]

    def unit_functions(self):
        return {f for check, _ in self.results.values() if check.unit for f in check.functions}

    def progress(self, message):
        """Shows how a long check is going (e.g. episodes handed out, epochs); never scored."""
        if self._progress is not None:
            self._progress(f"  {message}")

    def _relay(self, line):
        """The submission's printed lines, shown as its own (at most 5 a second)."""
        second, count = self._relayed
        now = int(time.monotonic())
        count = count + 1 if now == second else 1
        self._relayed = (now, count)
        if count <= 5:
            self.progress(f"[{self.assignment.name}.py prints] {line[:200]}")

    @property
    def sandbox(self):
        """The running child; started again (fresh import) if a previous check killed it."""
        if self.cancel is not None and self.cancel.cancelled:
            raise Cancelled()
        if self.problem is not None:
            raise self.problem
        if self._sandbox is None or not self._sandbox.alive:
            self.close()
            self._sandbox = Sandbox(
                self.program.code,
                self.assignment.name,
                self.limits,
                self.device_requested,
                self.assignment.tensorflow,
                self.isolation,
                display_name=str(self.submission),
                on_output=self._relay if self._progress else None,
                cells=self.program.cells,
            )
            try:
                self._sandbox.start()
            finally:
                self.device = self._sandbox.device or self.device
        return self._sandbox

    def fresh_sandbox(self):
        """A new child with nothing left over from earlier checks (e.g. one per training seed)."""
        self.close()
        return self.sandbox

    @contextlib.contextmanager
    def measuring(self, sandbox):
        """Runs one of the grader's own sandboxes (grader/measured.py) for this grading: started
        here, closed on leaving, and killed by kill() like the submission's child."""
        if self.cancel is not None and self.cancel.cancelled:
            raise Cancelled()
        self._measuring.add(sandbox)
        try:
            sandbox.start()
            yield sandbox
        finally:
            self._measuring.discard(sandbox)
            sandbox.close()

    def kill(self):
        """Kills the child and any measurement sandbox from another thread; the grading thread then
        sees them die."""
        for sandbox in [self._sandbox, *list(self._measuring)]:
            if sandbox is not None:
                sandbox.kill()

    def close(self):
        if self._sandbox is not None:
            self._sandbox.close()
            self._cpu_closed += self._sandbox.usage.cpu if self._sandbox.usage is not None else 0.0
            self._sandbox = None


def versions():
    found = {"python": platform.python_version()}
    for package in ("numpy", "tensorflow", "tensorflow-probability", "keras", "gymnasium"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = None
    return found


def sha256_of(path):
    """The SHA-256 of a file's content (hex), or None if it cannot be read."""
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return None


def prepare(assignment):
    """Loads what the assignment's checks need, once per process, before any child starts."""
    if assignment.prepare is not None:
        _prepared(assignment.prepare)


@functools.cache
def _prepared(function):
    return function()


def syntax_error(program, display):
    """The submission's syntax error, told before any sandbox (or TensorFlow) starts: compile()
    runs none of its code. Worded as the child words it (grader/child.py), or None."""
    name = "<submission>"  # (no file of that name: Python takes the line it shows from the code itself)
    try:
        compile(program.code, name, "exec", dont_inherit=True)
    except SyntaxError as error:
        _, message = child.describe_exception(error, name, program.cells)
        details = child.traceback_text(error, {"submission": name, "cells": program.cells, "display": display})
        return SubmissionError("syntax", f"{printable(message)} in {display}", printable(details, newlines=True))
    except (ValueError, RecursionError, MemoryError):
        return None  # (e.g. a null byte, a deep nesting: the child reports it as it imports the file)
    return None


def grade(
    assignment,
    submission,
    *,
    limits=None,
    device="cpu",
    seed=42,
    plots_dir=None,
    progress=None,
    cancel=None,
    source=None,
    isolation="bubblewrap",
):
    """Grades one submission file (its bytes `source` when the caller has read them already);
    returns its Report (grader/report.py). Raises DeviceUnavailable when the requested device is missing,
    GraderBug for errors of the grader itself and Cancelled when `cancel` (a Cancel) was
    cancelled meanwhile. `progress(text)` is told each check as it starts and how long ones go."""
    limits = limits or assignment.limits
    prepare(assignment)
    ctx = Context(assignment, submission, limits, device, seed, plots_dir, cancel, progress, source, isolation)
    started, t0 = datetime.datetime.now(datetime.UTC), time.monotonic()
    results, todos, error = [], [], None
    if cancel is not None:
        cancel.watch(ctx)
    try:
        try:
            ctx.sandbox  # import the submission once up front: a broken file fails every check alike
        except SubmissionError as failure:
            error = failure
        start_s, start_cpu = time.monotonic() - t0, ctx.cpu_seconds()
        for check in assignment.graded_checks:
            if progress and error is None:  # (nothing to list when the file cannot be imported)
                progress(check.name)
            t, cpu = time.monotonic(), ctx.cpu_seconds()
            if error is not None:
                outcome = Outcome(
                    False, "not run: " + NOT_RUN.get(error.kind, "the submission could not be imported (see above)")
                )
            else:
                try:
                    outcome = check.run(ctx)
                except SubmissionError as failure:
                    outcome = failed(check, failure)
                    if failure.kind not in ("todo", "invalid"):  # (those leave the child as it was)
                        ctx.close()  # the child's state is unknown now: the next check starts afresh
                    if failure.kind == "todo":
                        todos.append(todo_name(failure))
                except (DeviceUnavailable, Cancelled):
                    raise
                except Exception as bug:
                    raise GraderBug(
                        f"check {check.name!r} of {assignment.name} failed inside the grader: "
                        f"{type(bug).__name__}: {bug}\n{traceback.format_exc()}"
                    ) from bug
            results.append(check_entry(check, outcome, time.monotonic() - t, ctx.cpu_seconds() - cpu))
            ctx.results[check.name] = (check, results[-1].passed)
    finally:
        if cancel is not None:
            cancel.watch(ctx, on=False)
        ctx.close()
    if cancel is not None and cancel.cancelled:
        raise Cancelled()  # the checks saw their child killed: not the submission's result
    score = sum(r.score for r in results)
    passed = error is None and all(r.passed for r in results)
    return Report(
        assignment=assignment.name,
        title=assignment.title,
        submission=str(submission),
        sha256=hashlib.sha256(ctx.source).hexdigest(),
        sandbox=isolation,
        status="passed" if passed else "failed",
        passed=passed,
        score=round(score, 4),
        max_score=assignment.max_score,
        error=error.message if error else None,
        error_kind=error.kind if error else None,
        error_details=(error.details or None) if error else None,
        todos=sorted(set(todos)),
        notes=list(ctx.program.notes),
        checks=results,
        graded_at_submission=[c.name for c in assignment.checks if c not in assignment.graded_checks],
        device=ctx.device or "cpu",
        seed=seed,
        limits=asdict(limits),
        durations={
            "total_s": round(time.monotonic() - t0, 3),
            "start_s": round(start_s, 3),
            "cpu_s": round(ctx.cpu_seconds(), 3),
            "start_cpu_s": round(start_cpu, 3),
        },
        started_at=started.isoformat(timespec="seconds"),
        versions=versions(),
    )


NOT_RUN = {
    "syntax": "the file has a syntax error (see above)",
    "import": "the file could not be imported (see above)",
    "too_large": "the file is too large (see above)",
    "notebook": "the notebook could not be read (see above)",
}


def todo_name(failure):
    return failure.message.split("TODO: ", 1)[-1].strip()


def failed(check, failure):
    """The outcome of a check that the submission failed with `failure`. An unfinished TODO of
    a function the check is not about is what the check needs, not what it found wrong."""
    details = {"kind": failure.kind, "traceback": failure.details}
    if failure.kind == "todo" and check.functions and todo_name(failure) not in check.functions:
        return Outcome(
            False,
            f"not run: needs {todo_name(failure)}, which is unfinished (TODO); this check is "
            f"about {', '.join(check.functions)}",
            details=dict(details, needs=todo_name(failure)),
        )
    return Outcome(False, failure.message, details=details)


def problem_report(assignment, submission, kind, message, status="failed"):
    """The report of a submission that could not be graded: `kind` says why (e.g. `missing`,
    `ambiguous`; status "error" and kind `grader` for an error of the grader itself)."""
    return Report(
        assignment=assignment.name if assignment else None,
        title=assignment.title if assignment else "",
        submission=str(submission) if submission else None,
        sha256=sha256_of(submission) if submission else None,
        status=status,
        max_score=assignment.max_score if assignment else 0,
        error=message,
        error_kind=kind,
        started_at=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    )


def check_entry(check, outcome, seconds, cpu_seconds=0.0):
    fraction = outcome.score if outcome.score is not None else float(outcome.passed)
    fraction = min(max(float(fraction), 0.0), 1.0)
    value = outcome.value
    if isinstance(value, (np.floating, np.integer)):
        value = value.item()
    if isinstance(value, float):
        value = round(value, 4)
    return CheckResult(
        name=check.name,
        description=check.description,
        passed=bool(outcome.passed),
        score=round(fraction * check.points, 4),
        max_score=check.points,
        value=value,
        threshold=outcome.threshold,
        message=outcome.message,
        visibility=check.visibility,
        duration_s=round(seconds, 3),
        cpu_s=round(cpu_seconds, 3),
        details=outcome.details,
    )
