"""The report of a grading: its model (`Report`, `CheckResult`: what runner builds and batch,
formats, merge and the terminal read), its JSON form (the --json file and OUT/STUDENT/NAME.json,
whose schema README.md documents from these classes: `schema_table()`), and its rendering for
people: the per-check table of one submission, and the table of students by assignment of a
class (its data, `class_table`, also feeds the CSV and HTML)."""

import dataclasses
import shutil
import textwrap
from dataclasses import dataclass, field

SCHEMA_VERSION = 2


def _doc(text, json_type):
    return field(default=None, metadata={"doc": text, "type": json_type})


@dataclass
class CheckResult:
    """One check's result."""

    name: str = field(metadata={"doc": "the check's name, from the spec", "type": "str"})
    description: str = field(default="", metadata={"doc": "what it checks, in a few words", "type": "str"})
    passed: bool = field(default=False, metadata={"doc": "whether it passed", "type": "bool"})
    score: float = field(default=0, metadata={"doc": "points earned (partial credit possible)", "type": "number"})
    max_score: float = field(default=0, metadata={"doc": "points available", "type": "number"})
    value: object = _doc("the measured figure, or null", "number, str or null")
    threshold: str = field(
        default="", metadata={"doc": "what was required, e.g. `>= 490` or `1.306 ± 0.070`", "type": "str"}
    )
    message: str = field(default="", metadata={"doc": "what was found and, on failure, the likely bug", "type": "str"})
    visibility: str = field(default="visible", metadata={"doc": "`visible` or `hidden`, from the spec", "type": "str"})
    duration_s: float = field(default=0, metadata={"doc": "wall-clock seconds it took", "type": "number"})
    cpu_s: float = field(
        default=0,
        metadata={
            "doc": "CPU seconds the submission's processes used in it (time limits count these)",
            "type": "number",
        },
    )
    details: dict = field(
        default_factory=dict,
        metadata={
            "doc": "check-specific data (e.g. `average_reward_per_step`, `learning_curve`, `plot`); on failure "
            "`kind` and the submission's `traceback`; `needs` when another function's TODO blocked it",
            "type": "object",
        },
    )


# Fields a report has only in some cases: left out of its JSON when None.
OPTIONAL = ("student", "device", "seed", "limits", "durations", "versions", "options", "signature")


@dataclass
class Report:
    """A submission's grading, or the reason there is none (`missing`, `ambiguous`, `grader`)."""

    schema_version: int = field(
        default=SCHEMA_VERSION,
        metadata={
            "doc": f"{SCHEMA_VERSION} (2 added `sandbox`, `error_details`, `graded_at_submission` and `signature`)",
            "type": "int",
        },
    )
    student: str = _doc("(a class) the student: the folder under DIR; a file given directly: its path", "str")
    assignment: str = _doc("which assignment (null: nothing recognised)", "str or null")
    title: str = field(default="", metadata={"doc": "the assignment's title", "type": "str"})
    submission: str = _doc("the graded file (null: none was found)", "str or null")
    sha256: str = _doc("SHA-256 of the exact bytes graded", "str or null")
    sandbox: str = _doc("`bubblewrap` or `none` (no sandbox: bubblewrap missing, or `--no-sandbox`)", "str or null")
    status: str = field(
        default="failed",
        metadata={
            "doc": "`passed`, `failed` (the submission's fault) or `error` (the grader's, `error_kind` `grader`)",
            "type": "str",
        },
    )
    passed: bool = field(
        default=False, metadata={"doc": "every check passed and the submission could be imported", "type": "bool"}
    )
    score: float = field(default=0, metadata={"doc": "points earned", "type": "number"})
    max_score: float = field(default=0, metadata={"doc": "points available", "type": "number"})
    error: str = _doc("a problem that stopped every check (see `error_kind`), one line", "str or null")
    error_kind: str = _doc(
        "`syntax`, `import`, `exception`, `timeout`, `too_large`, `notebook` (unreadable)... at import; in a class also "
        "`missing`, `ambiguous`, `grader`",
        "str or null",
    )
    error_details: str = _doc(
        "for that problem, the submission's traceback (a syntax error: its line and a caret)", "str or null"
    )
    todos: list = field(
        default_factory=list,
        metadata={"doc": 'functions still raising `NotImplementedError("TODO: ...")`', "type": "[str]"},
    )
    notes: list = field(
        default_factory=list,
        metadata={
            "doc": "how the submission was read, e.g. a notebook's cells whose IPython-only lines were left out",
            "type": "[str]",
        },
    )
    checks: list = field(default_factory=list, metadata={"doc": "one per check, in order (below)", "type": "[object]"})
    graded_at_submission: list = field(
        default_factory=list,
        metadata={
            "doc": "hidden checks whose code this copy of the grader lacks (the students' handout): graded when "
            "the work is submitted",
            "type": "[str]",
        },
    )
    device: str = _doc("`cpu` or `gpu (name)` as seen by TensorFlow in the child", "str")
    seed: int = _doc("the grader's seed", "int")
    limits: dict = _doc(
        "the limits in force (`time`, `train_time`, `start_time`, `memory_mb`, `threads`, "
        "`max_threads`, `max_processes`, `disk_mb`, `max_message_bytes`, `max_submission_bytes`, "
        "`wall_factor`): time limits in CPU seconds, each with a wall-clock backstop of "
        "`wall_factor` times as many seconds",
        "object",
    )
    durations: dict = _doc(
        "`total_s`, `start_s` (start-up and import): wall-clock seconds; `cpu_s`, `start_cpu_s`: "
        "CPU seconds of the submission's processes",
        "object",
    )
    started_at: str = field(default="", metadata={"doc": "ISO 8601 UTC", "type": "str"})
    versions: dict = _doc("`python`, `numpy`, `tensorflow`, `tensorflow-probability`, `keras`, `gymnasium`", "object")
    options: dict = _doc(
        "(a class) what the grading depended on: `seed`, `device`, `limits`, `checks`, `plots`, "
        "`sandbox`, `grader` (a digest of the grader's code)",
        "object",
    )
    signature: str = _doc("(a class) HMAC-SHA256 of the rest of the report with the grader's key", "str")

    def to_dict(self):
        data = dataclasses.asdict(self)
        return {k: v for k, v in data.items() if not (k in OPTIONAL and v is None)}

    @classmethod
    def from_dict(cls, data):
        """The report of a JSON object; ValueError if it is not one."""
        if not isinstance(data, dict) or "schema_version" not in data:
            raise ValueError("not a report")
        names = {f.name for f in dataclasses.fields(cls)}
        try:
            checks = [CheckResult(**c) for c in data.get("checks", [])]
            return cls(**{k: v for k, v in data.items() if k in names and k != "checks"}, checks=checks)
        except TypeError as error:
            raise ValueError(f"not a report: {error}") from None

    @property
    def who(self):
        return self.student or self.submission

    @property
    def plots(self):
        return list(dict.fromkeys(c.details["plot"] for c in self.checks if c.details.get("plot")))


def schema_table(cls):
    """The Markdown table of a model's JSON fields (README.md carries it; a test keeps them equal)."""
    rows = ["| field | type | meaning |", "|---|---|---|"]
    rows += [f"| `{f.name}` | {f.metadata['type']} | {f.metadata['doc']} |" for f in dataclasses.fields(cls)]
    return "\n".join(rows)


def _value(value):
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _table(headers, rows):
    widths = [max(len(str(x)) for x in column) for column in zip(headers, *rows)]

    def line(cells):
        return "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()

    return [line(headers), line("-" * w for w in widths)] + [line(r) for r in rows]


def render(report):
    """The terminal report of one submission."""
    width = max(60, min(shutil.get_terminal_size((110, 20)).columns, 140))
    out = [
        f"{report.title}",
        f"submission: {report.submission}  (assignment {report.assignment}, "
        f"device {report.device}, seed {report.seed}, sandbox {report.sandbox or 'none'}, "
        f"{report.durations['total_s']:.1f} s, {report.durations.get('cpu_s', 0):.1f} CPU s)",
    ]
    out += [f"note: {note}" for note in report.notes]
    if report.error:
        out.append(f"error: {report.error}")
        if report.error_details and report.error_kind in ("syntax", "import", "exception", "todo"):
            out += ["    " + line for line in report.error_details.rstrip().splitlines()[-12:]]
    if report.error and report.checks and all(c.message.startswith("not run") for c in report.checks):
        out.append(f"not run ({len(report.checks)} checks): " + "; ".join(c.name for c in report.checks))
        out.append(f"FAILED: {report.score:g}/{report.max_score:g} points")
        return "\n".join(out)
    rows = [
        ("PASS" if c.passed else "FAIL", c.name, _value(c.value), c.threshold or "", f"{c.score:g}/{c.max_score:g}")
        for c in report.checks
    ]
    table = _table(("", "check", "value", "threshold", "points"), rows)
    out += table[:2]
    for line, check in zip(table[2:], report.checks):
        out.append(line)
        if check.message:
            out += textwrap.wrap(check.message, width - 6, initial_indent="      ", subsequent_indent="      ")
    if report.todos:
        out.append("unfinished TODOs: " + ", ".join(report.todos))
    if report.plots:
        out.append("plots written: " + ", ".join(report.plots))
    if report.graded_at_submission:
        out.append("also graded at submission (hidden checks): " + "; ".join(report.graded_at_submission))
    verdict = "PASSED" if report.passed else "FAILED"
    out.append(f"{verdict}: {report.score:g}/{report.max_score:g} points")
    return "\n".join(out)


def first_problem(report):
    """What went wrong first, in one line ("" if nothing did)."""
    if report.error:
        return report.error.splitlines()[0]
    return next((f"{c.name}: {c.message}" for c in report.checks if not c.passed), "")


VERDICTS = {"passed": "PASSED", "failed": "FAILED", "error": "ERROR"}


def one_line(report):
    reason = first_problem(report)
    where = report.submission or report.student
    return (
        f"{VERDICTS[report.status]} {where} ({report.assignment or 'no assignment'}) "
        f"{report.score:g}/{report.max_score:g}" + (f" - {reason}" if reason else "")
    )


def student_of(report):
    return report.who


def class_table(reports):
    """(assignments, max_scores, rows): a row per student, sorted, as a dict with `student`,
    `cells` (assignment -> report; an assignment without one was not submitted), `total`,
    `max_total` (over all the table's assignments) and `problems` (one line each)."""
    assignments = sorted({r.assignment for r in reports if r.assignment})
    max_scores = {a: max(r.max_score for r in reports if r.assignment == a) for a in assignments}
    students = {}
    for r in reports:
        students.setdefault(student_of(r), []).append(r)
    rows = []
    for student in sorted(students):
        mine = sorted(students[student], key=lambda r: r.assignment or "")
        rows.append(
            {
                "student": student,
                "cells": {r.assignment: r for r in mine if r.assignment},
                "total": round(sum(r.score for r in mine), 4),
                "max_total": sum(max_scores.values()),
                "problems": [
                    f"{r.assignment or 'submission'}: {first_problem(r)}" for r in mine if r.status != "passed"
                ],
            }
        )
    return assignments, max_scores, rows


def cell_text(report, max_score):
    if report is None:
        return "-"
    if report.status == "error":
        return "ERROR"
    return f"{report.score:g}/{max_score:g}" + ("" if report.passed else " FAIL")


def render_class(reports, width=60):
    """The terminal table of students by assignment, and a count of the results."""
    assignments, max_scores, rows = class_table(reports)
    lines = _table(
        ["student", *assignments, "total", "first problem"],
        [
            [
                row["student"],
                *(cell_text(row["cells"].get(a), max_scores[a]) for a in assignments),
                f"{row['total']:g}/{row['max_total']:g}",
                (row["problems"] or [""])[0][:width],
            ]
            for row in rows
        ],
    )
    counts = {status: sum(r.status == status for r in reports) for status in VERDICTS}
    lines.append(
        f"{len(reports)} result(s) of {len(rows)} student(s): {counts['passed']} passed, "
        f"{counts['failed']} failed, {counts['error']} grader error(s)"
    )
    return "\n".join(lines)
