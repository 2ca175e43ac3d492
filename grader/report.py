"""Rendering reports for people: the per-check table of one submission, and the table of
students by assignment of a class (its data, `class_table`, also feeds the CSV and HTML)."""
import shutil
import textwrap


def _value(value):
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _table(headers, rows):
    widths = [max(len(str(x)) for x in column) for column in zip(headers, *rows)]
    line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()
    return [line(headers), line("-" * w for w in widths)] + [line(r) for r in rows]


def render(report):
    """The terminal report of one submission."""
    width = max(60, min(shutil.get_terminal_size((110, 20)).columns, 140))
    out = [f"{report['title']}", f"submission: {report['submission']}  (assignment {report['assignment']}, "
           f"device {report['device']}, seed {report['seed']}, sandbox {report.get('sandbox') or 'none'}, "
           f"{report['durations']['total_s']:.1f} s)"]
    if report["error"]:
        out.append(f"error: {report['error']}")
        if report.get("error_details") and report.get("error_kind") in ("syntax", "import", "exception", "todo"):
            out += ["    " + line for line in report["error_details"].rstrip().splitlines()[-12:]]
    if report["error"] and report["checks"] and all(c["message"].startswith("not run") for c in report["checks"]):
        out.append(f"not run ({len(report['checks'])} checks): " + "; ".join(c["name"] for c in report["checks"]))
        out.append(f"FAILED: {report['score']:g}/{report['max_score']:g} points")
        return "\n".join(out)
    rows = [("PASS" if c["passed"] else "FAIL", c["name"], _value(c["value"]), c["threshold"] or "",
             f"{c['score']:g}/{c['max_score']:g}") for c in report["checks"]]
    table = _table(("", "check", "value", "threshold", "points"), rows)
    out += table[:2]
    for line, check in zip(table[2:], report["checks"]):
        out.append(line)
        if check["message"]:
            out += textwrap.wrap(check["message"], width - 6, initial_indent="      ", subsequent_indent="      ")
    if report["todos"]:
        out.append("unfinished TODOs: " + ", ".join(report["todos"]))
    plots = list(dict.fromkeys(c["details"]["plot"] for c in report["checks"] if c["details"].get("plot")))
    if plots:
        out.append("plots written: " + ", ".join(plots))
    verdict = "PASSED" if report["passed"] else "FAILED"
    out.append(f"{verdict}: {report['score']:g}/{report['max_score']:g} points")
    return "\n".join(out)


def first_problem(report):
    """What went wrong first, in one line ("" if nothing did)."""
    if report["error"]:
        return report["error"].splitlines()[0]
    return next((f"{c['name']}: {c['message']}" for c in report["checks"] if not c["passed"]), "")


VERDICTS = {"passed": "PASSED", "failed": "FAILED", "error": "ERROR"}


def one_line(report):
    reason = first_problem(report)
    where = report["submission"] or report.get("student")
    return (f"{VERDICTS[report['status']]} {where} ({report['assignment'] or 'no assignment'}) "
            f"{report['score']:g}/{report['max_score']:g}" + (f" - {reason}" if reason else ""))


def student_of(report):
    return report.get("student") or report["submission"]


def class_table(reports):
    """(assignments, max_scores, rows): a row per student, sorted, as a dict with `student`,
    `cells` (assignment -> report; an assignment without one was not submitted), `total`,
    `max_total` (over all the table's assignments) and `problems` (one line each)."""
    assignments = sorted({r["assignment"] for r in reports if r["assignment"]})
    max_scores = {a: max(r["max_score"] for r in reports if r["assignment"] == a) for a in assignments}
    students = {}
    for r in reports:
        students.setdefault(student_of(r), []).append(r)
    rows = []
    for student in sorted(students):
        mine = sorted(students[student], key=lambda r: r["assignment"] or "")
        rows.append({"student": student, "cells": {r["assignment"]: r for r in mine if r["assignment"]},
                     "total": round(sum(r["score"] for r in mine), 4), "max_total": sum(max_scores.values()),
                     "problems": [f"{r['assignment'] or 'submission'}: {first_problem(r)}"
                                  for r in mine if r["status"] != "passed"]})
    return assignments, max_scores, rows


def cell_text(report, max_score):
    if report is None:
        return "-"
    if report["status"] == "error":
        return "ERROR"
    return f"{report['score']:g}/{max_score:g}" + ("" if report["passed"] else " FAIL")


def render_class(reports, width=60):
    """The terminal table of students by assignment, and a count of the results."""
    assignments, max_scores, rows = class_table(reports)
    lines = _table(["student", *assignments, "total", "first problem"],
                   [[row["student"], *(cell_text(row["cells"].get(a), max_scores[a]) for a in assignments),
                     f"{row['total']:g}/{row['max_total']:g}", (row["problems"] or [""])[0][:width]]
                    for row in rows])
    counts = {status: sum(r["status"] == status for r in reports) for status in VERDICTS}
    lines.append(f"{len(reports)} result(s) of {len(rows)} student(s): {counts['passed']} passed, "
                 f"{counts['failed']} failed, {counts['error']} grader error(s)")
    return "\n".join(lines)
