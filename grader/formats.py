"""Files made from reports for other tools and for people: the class summary as CSV and as an
HTML page (with the plots), Gradescope's results.json and JUnit XML.

Gradescope (https://gradescope-autograders.readthedocs.io/en/latest/specs/): one test per check,
named "ASSIGNMENT: CHECK" (prefixed with "STUDENT / " when the reports are of several
students), with the check's points, status, message and visibility from the assignment's spec;
a submission that could not be graded is one failed test. Gradescope runs the autograder once
per student, so that is the usual use.

JUnit: a <testsuite> per submission (name STUDENT/ASSIGNMENT, score and max_score as
properties), a <testcase> per check (classname STUDENT.ASSIGNMENT); a failed check is a
<failure>, a grader error an <error>. It follows the strictest common reading of the Ant JUnit
schema and Jenkins' junit-10.xsd (all required attributes, times in seconds with at most three
decimals, timestamps without a time zone).
"""

import csv
import datetime
import html
import io
import os
from pathlib import Path
from xml.etree import ElementTree

from .report import cell_text, class_table, first_problem, student_of

GRADESCOPE_VISIBILITY = ("visible", "hidden", "after_due_date", "after_published")


def _number(x):
    return f"{x:g}"


def write_text(path, text):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


# ------------------------------------------------------------------ CSV
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def text_cell(text):
    """Student-controlled text as a spreadsheet cell that stays data: a cell starting like a
    formula (=, +, -, @, a tab or a carriage return) gets a leading ' (OWASP's advice against CSV
    injection), which spreadsheets show as text and do not evaluate."""
    text = str(text)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def summary_csv(reports):
    """Students by assignment: per assignment its score and status (passed, failed, error or
    missing), then the total, the maximum total and the problems."""
    assignments, _, rows = class_table(reports)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")  # RFC 4180; a CR in a name is quoted too
    writer.writerow(
        [
            "student",
            *(text_cell(f"{a}{suffix}") for a in assignments for suffix in ("", "_status")),
            "total",
            "max_total",
            "problems",
        ]
    )
    for row in rows:
        cells = []
        for a in assignments:
            report = row["cells"].get(a)
            cells += [_number(report.score) if report else "", report.status if report else "missing"]
        writer.writerow(
            [
                text_cell(row["student"]),
                *cells,
                _number(row["total"]),
                _number(row["max_total"]),
                text_cell("; ".join(row["problems"])),
            ]
        )
    return out.getvalue()


# ------------------------------------------------------------------ Gradescope
def _check_output(check):
    lines = [check.message]
    if check.value is not None or check.threshold:
        lines.append(f"measured: {check.value}   required: {check.threshold or '-'}")
    if check.details.get("traceback"):
        lines.append(check.details["traceback"])
    return "\n".join(line for line in lines if line)


def leaderboard(report):
    """Gradescope's leaderboard entries of one report, where a figure invites a ranking: the
    VAE's test -ELBO (lower is better), REINFORCE's training episodes used (fewer is better),
    the bandits' mean reward per step (higher is better)."""
    entries = []
    for c in report.checks:
        if report.assignment == "vae" and c.name.startswith("test -ELBO") and isinstance(c.value, (int, float)):
            entries.append({"name": f"{c.name} (nats)", "value": c.value, "order": "asc"})
        elif report.assignment == "bandits" and c.name.startswith("testbed: ") and isinstance(c.value, (int, float)):
            entries.append({"name": f"mean reward, {c.name.split(': ', 1)[1]}", "value": c.value, "order": "desc"})
        elif c.name == "training: greedy mean return":
            used = [t["training_episodes"] for t in c.details.get("trainings", []) if t.get("training_episodes")]
            if used:
                entries.append(
                    {
                        "name": "training episodes used (mean of the trainings)",
                        "value": round(sum(used) / len(used), 1),
                        "order": "asc",
                    }
                )
    return entries


def gradescope(reports):
    """Gradescope's results.json (a dict) for the reports of one run; with one student, its
    leaderboard entries too."""
    several = len({student_of(r) for r in reports}) > 1
    tests, output = [], []
    for r in reports:
        label = (f"{student_of(r)} / " if several else "") + (r.assignment or "submission")
        output.append(
            f"{label}: {r.score:g}/{r.max_score:g} points, {r.status}" + (f" - {first_problem(r)}" if r.error else "")
        )
        output += [f"  note: {note}" for note in r.notes]
        if r.todos:
            output.append(f"  unfinished TODOs: {', '.join(r.todos)}")
        if not r.checks:
            message = first_problem(r)
            if r.status == "error":
                message = (
                    "The grader failed on this submission; this is not your fault, the course staff will look into it."
                )
            tests.append(
                {
                    "name": label,
                    "score": 0,
                    "max_score": r.max_score,
                    "status": "failed",
                    "output": message,
                    "visibility": "visible",
                }
            )
        for c in r.checks:
            tests.append(
                {
                    "name": f"{label}: {c.name}",
                    "score": c.score,
                    "max_score": c.max_score,
                    "status": "passed" if c.passed else "failed",
                    "output": _check_output(c),
                    "visibility": c.visibility if c.visibility in GRADESCOPE_VISIBILITY else "hidden",
                }
            )
    results = {
        "score": round(sum(t["score"] for t in tests), 4),
        "execution_time": round(sum((r.durations or {}).get("total_s", 0) for r in reports)),
        "output": "\n".join(output),
        "visibility": "visible",
        "stdout_visibility": "hidden",
        "tests": tests,
        "extra_data": {"max_score": sum(r.max_score for r in reports)},
    }
    board = [entry for r in reports for entry in leaderboard(r)] if not several else []
    if board:
        results["leaderboard"] = board
    return results


# ------------------------------------------------------------------ JUnit XML
def _seconds(s):
    return f"{float(s or 0):.3f}"


def _timestamp(iso):
    """ISO 8601 without a time zone (the Ant schema's pattern), in UTC."""
    try:
        moment = datetime.datetime.fromisoformat(iso)
    except (TypeError, ValueError):
        return "1970-01-01T00:00:00"
    if moment.tzinfo:
        moment = moment.astimezone(datetime.UTC).replace(tzinfo=None)
    return moment.strftime("%Y-%m-%dT%H:%M:%S")


def junit(reports):
    """JUnit XML (a str) for the reports: one testsuite per submission, one testcase per check."""
    root = ElementTree.Element("testsuites", name="grader")
    totals = dict(tests=0, failures=0, errors=0, time=0.0)
    for index, r in enumerate(reports):
        student, assignment = student_of(r), r.assignment or "submission"
        cases = []
        for c in r.checks:
            case = ElementTree.Element(
                "testcase", name=c.name, classname=f"{student}.{assignment}", time=_seconds(c.duration_s)
            )
            if not c.passed:
                ElementTree.SubElement(
                    case, "failure", message=c.message[:1000] or "failed", type=c.details.get("kind", "check")
                ).text = _check_output(c)
            cases.append(case)
        if not r.checks:
            case = ElementTree.Element("testcase", name="grading", classname=f"{student}.{assignment}", time="0.000")
            tag = "error" if r.status == "error" else "failure"
            ElementTree.SubElement(
                case, tag, message=first_problem(r)[:1000] or r.status, type=r.error_kind or r.status
            ).text = r.error or ""
            cases.append(case)
        failures = sum(case.find("failure") is not None for case in cases)
        errors = sum(case.find("error") is not None for case in cases)
        seconds = (r.durations or {}).get("total_s", 0)
        suite = ElementTree.SubElement(
            root,
            "testsuite",
            name=f"{student}/{assignment}",
            package=student,
            id=str(index),
            tests=str(len(cases)),
            failures=str(failures),
            errors=str(errors),
            skipped="0",
            time=_seconds(seconds),
            timestamp=_timestamp(r.started_at),
            hostname="localhost",
        )
        properties = ElementTree.SubElement(suite, "properties")
        for name in ("score", "max_score", "status", "submission", "sha256", "device", "seed"):
            if getattr(r, name) is not None:
                value = _number(getattr(r, name)) if name in ("score", "max_score") else str(getattr(r, name))
                ElementTree.SubElement(properties, "property", name=name, value=value)
        suite.extend(cases)
        ElementTree.SubElement(suite, "system-out").text = "\n".join(f"unfinished TODO: {t}" for t in r.todos)
        ElementTree.SubElement(suite, "system-err").text = ""
        for key, value in (("tests", len(cases)), ("failures", failures), ("errors", errors), ("time", seconds)):
            totals[key] += value
    root.attrib.update({k: (_seconds(v) if k == "time" else str(v)) for k, v in totals.items()})
    ElementTree.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ElementTree.tostring(root, encoding="unicode") + "\n"


# ------------------------------------------------------------------ HTML
STYLE = """body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; } td, th { border: 1px solid #ccc; padding: 4px 8px; text-align: left; }
.passed { background: #dff0d8; } .failed { background: #f8d7da; } .error { background: #fff3cd; } .missing { color: #999; }
img { max-width: 100%; border: 1px solid #ddd; margin: 4px 0; } details { margin: 0.5em 0 1em 1em; }
pre { white-space: pre-wrap; }"""


def summary_html(reports, path):
    """The page to be saved at `path` (the plots are linked relative to it): the table of
    students by assignment, then each submission's checks and plots."""
    assignments, max_scores, rows = class_table(reports)
    e = html.escape
    base = Path(path).resolve().parent
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8"><title>Grading summary</title>',
        f"<style>{STYLE}</style></head><body>",
        "<h1>Grading summary</h1>",
        "<table>",
        "<tr><th>student</th>"
        + "".join(f"<th>{e(a)}</th>" for a in assignments)
        + "<th>total</th><th>first problem</th></tr>",
    ]
    for row in rows:
        cells = "".join(
            f'<td class="{row["cells"][a].status if a in row["cells"] else "missing"}">'
            f'<a href="#{e(row["student"])}-{e(a)}">{e(cell_text(row["cells"].get(a), max_scores[a]))}</a></td>'
            if a in row["cells"]
            else '<td class="missing">-</td>'
            for a in assignments
        )
        out.append(
            f"<tr><td>{e(row['student'])}</td>{cells}<td>{row['total']:g}/{row['max_total']:g}</td>"
            f"<td>{e((row['problems'] or [''])[0][:120])}</td></tr>"
        )
    out.append("</table>")
    for r in reports:
        student, assignment = student_of(r), r.assignment or ""
        out.append(
            f'<h2 id="{e(student)}-{e(assignment)}">{e(student)}: {e(r.title or assignment or "submission")}</h2>'
        )
        out.append(
            f'<p class="{e(r.status)}">{e(r.status)}: {r.score:g}/{r.max_score:g} points'
            + (f" &mdash; {e(r.submission)}" if r.submission else "")
            + "</p>"
        )
        if r.error:
            out.append(f"<details><summary>{e(first_problem(r))}</summary><pre>{e(r.error)}</pre></details>")
        if r.checks:
            out.append("<table><tr><th>check</th><th>value</th><th>threshold</th><th>points</th><th>message</th></tr>")
            for c in r.checks:
                out.append(
                    f'<tr class="{"passed" if c.passed else "failed"}"><td>{e(c.name)}</td>'
                    f"<td>{e('' if c.value is None else str(c.value))}</td><td>{e(c.threshold or '')}</td>"
                    f"<td>{c.score:g}/{c.max_score:g}</td><td>{e(c.message)}</td></tr>"
                )
            out.append("</table>")
        for plot in r.plots:
            link = Path(os.path.relpath(Path(plot).resolve(), base)).as_posix()
            out.append(f'<p><img src="{e(link)}" alt="{e(Path(plot).name)}"></p>')
    out.append("</body></html>")
    return "\n".join(out) + "\n"
