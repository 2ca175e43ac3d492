"""The files made from reports, validated against the published formats: Gradescope's
results.json (https://gradescope-autograders.readthedocs.io/en/latest/specs/), JUnit XML (the
Ant JUnit schema and Jenkins' junit-10.xsd, read faithfully: required attributes, their types,
the order of the children, counts that add up), the summary CSV and the HTML page."""

import csv
import dataclasses
import io
import json
import re
from collections import Counter
from html.parser import HTMLParser
from xml.etree import ElementTree

import numpy as np
import pytest

from conftest import REPO, run_grader
from grader import formats
from grader.assignments import all_assignments
from grader.assignments.bandits import plot_average_reward
from grader.runner import grade, problem_report
from grader.spec import Check, Outcome

BANDITS = all_assignments()["bandits"]
AWKWARD = 'half of it <works> & "quotes" \u00e9'


def half_credit(ctx):
    return Outcome(False, AWKWARD, value=0.5, threshold=">= 1", score=0.5)


# The update checks, a check that declares partial credit (4 points) and a hidden one (2 points).
SPEC = dataclasses.replace(
    BANDITS,
    checks=BANDITS.checks[:2]
    + (
        Check("partial", half_credit, points=4),
        Check("secret", lambda ctx: Outcome(True, "fine"), points=2, visibility="hidden"),
    ),
)


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    root = tmp_path_factory.mktemp("class")
    for student, source in (("alice", "solutions"), ("bob", "assignments"), ("dan", "solutions")):
        (root / student).mkdir()
        (root / student / "bandits.py").write_text((REPO / source / "bandits.py").read_text())
    reports = [
        grade(SPEC, root / "alice/bandits.py"),
        grade(SPEC, root / "bob/bandits.py"),
        problem_report(None, None, "missing", "no submission found: expected bandits.py"),
        problem_report(
            SPEC,
            root / "dan/bandits.py",
            "grader",
            "grader error (not the submission's fault) while "
            "grading x:\nTraceback (most recent call last):\nKeyError: 'secret internals'",
            status="error",
        ),
    ]
    for report, student in zip(reports, ("alice", "bob", "carol", "dan")):
        report.student = student
    return reports


# ------------------------------------------------------------------ Gradescope
TOP_LEVEL = {
    "score",
    "execution_time",
    "output",
    "output_format",
    "test_output_format",
    "test_name_format",
    "visibility",
    "stdout_visibility",
    "extra_data",
    "tests",
    "leaderboard",
}
TEST_KEYS = {
    "score",
    "max_score",
    "status",
    "name",
    "name_format",
    "number",
    "output",
    "output_format",
    "tags",
    "visibility",
    "extra_data",
}
VISIBILITY = {"visible", "hidden", "after_due_date", "after_published"}


def is_number(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def assert_gradescope(data):
    json.dumps(data, allow_nan=False)  # plain JSON, no NaN
    assert set(data) <= TOP_LEVEL, set(data) - TOP_LEVEL
    assert is_number(data["score"]) and isinstance(data["execution_time"], int)
    assert isinstance(data["output"], str) and isinstance(data["extra_data"], dict)
    assert data["visibility"] in VISIBILITY and data["stdout_visibility"] in VISIBILITY
    for test in data["tests"]:
        assert set(test) <= TEST_KEYS, set(test) - TEST_KEYS
        assert isinstance(test["name"], str) and test["name"] and isinstance(test["output"], str)
        assert is_number(test["score"]) and is_number(test["max_score"]) and 0 <= test["score"] <= test["max_score"]
        assert test["status"] in ("passed", "failed") and test["visibility"] in VISIBILITY
    # the top-level score overrides the tests' total in Gradescope: it must be that total
    assert data["score"] == pytest.approx(sum(t["score"] for t in data["tests"]))


def test_gradescope_results_follow_the_spec(reports):
    data = formats.gradescope(reports)
    assert_gradescope(data)
    tests = {t["name"]: t for t in data["tests"]}
    assert tests["alice / bandits: partial"] == {
        "name": "alice / bandits: partial",
        "score": 2.0,
        "max_score": 4,
        "status": "failed",
        "output": f"{AWKWARD}\nmeasured: 0.5   required: >= 1",
        "visibility": "visible",
    }
    assert tests["alice / bandits: secret"]["visibility"] == "hidden"
    assert tests["alice / bandits: update: sample averaging"]["status"] == "passed"
    assert "unfinished TODO" in tests["bob / bandits: update: sample averaging"]["output"]
    assert (
        tests["carol / submission"]["status"] == "failed"
        and "no submission found" in tests["carol / submission"]["output"]
    )
    dan = tests["dan / bandits"]
    assert dan["score"] == 0 and dan["max_score"] == 8 and "not your fault" in dan["output"]
    assert "secret internals" not in json.dumps(data)  # a grader's traceback is for the staff
    assert data["score"] == 1 + 1 + 2 + 2 + 0 + 0 + 2 + 2
    assert data["extra_data"]["max_score"] == 8 * 3


def test_gradescope_of_one_student_names_the_checks_only(reports):
    data = formats.gradescope(reports[:1])
    assert_gradescope(data)
    assert [t["name"] for t in data["tests"]] == [f"bandits: {c.name}" for c in SPEC.checks]
    assert data["score"] == reports[0].score == 6


def test_gradescope_option_of_the_command_line(tmp_path):
    result = run_grader("solutions/bandits.py", "--check", "select", "--gradescope", tmp_path / "gs/results.json")
    assert result.returncode == 0
    data = json.loads((tmp_path / "gs/results.json").read_text())
    assert_gradescope(data)
    assert data["score"] == 2 and [t["status"] for t in data["tests"]] == ["passed", "passed"]


# ------------------------------------------------------------------ JUnit
TIME = re.compile(r"^[0-9]+(\.[0-9]{1,3})?$")  # decimal seconds; junit-10.xsd: at most 3 decimals
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d$")  # Ant's ISO8601_DATETIME_PATTERN, no time zone


def assert_junit(text):
    root = ElementTree.fromstring(text.encode())
    assert root.tag == "testsuites"
    totals = Counter()
    for index, suite in enumerate(root):
        assert suite.tag == "testsuite"
        attrs = suite.attrib
        for name in ("name", "tests", "failures", "errors", "time", "timestamp", "hostname", "id", "package"):
            assert attrs.get(name), (name, attrs)
        assert attrs["id"] == str(index) and TIME.match(attrs["time"]) and TIMESTAMP.match(attrs["timestamp"])
        # Ant's sequence: properties, testcase*, system-out, system-err
        tags = [child.tag for child in suite]
        assert tags[0] == "properties" and tags[-2:] == ["system-out", "system-err"]
        assert set(tags[1:-2]) <= {"testcase"}
        assert all(p.tag == "property" and p.get("name") and p.get("value") is not None for p in suite[0])
        counts = Counter()
        for case in suite.iter("testcase"):
            assert case.get("name") and case.get("classname") and TIME.match(case.get("time"))
            outcomes = [child for child in case if child.tag in ("failure", "error", "skipped")]
            assert len(outcomes) <= 1 and {child.tag for child in case} <= {
                "failure",
                "error",
                "skipped",
                "system-out",
                "system-err",
            }
            for outcome in outcomes:
                assert outcome.get("message") is not None and outcome.get("type")
                counts[outcome.tag] += 1
            counts["tests"] += 1
        assert int(attrs["tests"]) == counts["tests"] and int(attrs["failures"]) == counts["failure"]
        assert int(attrs["errors"]) == counts["error"] and int(attrs.get("skipped", 0)) == counts["skipped"]
        totals.update({"tests": counts["tests"], "failures": counts["failure"], "errors": counts["error"]})
    for name in ("tests", "failures", "errors"):
        assert int(root.get(name)) == totals[name]
    assert TIME.match(root.get("time"))
    return root


def test_junit_follows_the_schema(reports):
    root = assert_junit(formats.junit(reports))
    suites = {suite.get("name"): suite for suite in root}
    assert list(suites) == ["alice/bandits", "bob/bandits", "carol/submission", "dan/bandits"]
    alice = suites["alice/bandits"]
    assert (alice.get("tests"), alice.get("failures"), alice.get("errors")) == ("4", "1", "0")
    assert {p.get("name"): p.get("value") for p in alice.find("properties")}["score"] == "6"
    failure = alice.find("testcase[@name='partial']/failure")
    assert failure.get("message") == AWKWARD and AWKWARD in failure.text  # escaped and read back whole
    assert root.find("testsuite[@name='bob/bandits']").get("failures") == "3"
    assert root.find("testsuite[@name='carol/submission']/testcase/failure").get("type") == "missing"
    error = root.find("testsuite[@name='dan/bandits']/testcase/error")
    assert error.get("type") == "grader" and "KeyError" in error.text
    assert root.get("errors") == "1"


# ------------------------------------------------------------------ CSV and HTML
def test_summary_csv(reports):
    rows = list(csv.DictReader(io.StringIO(formats.summary_csv(reports))))
    assert list(rows[0]) == ["student", "bandits", "bandits_status", "total", "max_total", "problems"]
    by = {row["student"]: row for row in rows}
    assert (
        by["alice"]["bandits"] == "6" and by["alice"]["bandits_status"] == "failed" and by["alice"]["max_total"] == "8"
    )
    assert by["alice"]["problems"] == f"bandits: partial: {AWKWARD}"
    assert (by["carol"]["bandits"], by["carol"]["bandits_status"]) == ("", "missing")
    assert by["carol"]["problems"].startswith("submission: no submission found")
    assert by["dan"]["bandits_status"] == "error" and by["dan"]["total"] == "0"


class Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.images, self.rows, self.text = [], 0, []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.images.append(dict(attrs)["src"])
        self.rows += tag == "tr"
        assert tag != "works"  # the awkward message stays text

    def handle_data(self, data):
        self.text.append(data)


def test_html_page_links_the_plots(reports, tmp_path):
    plot = plot_average_reward(
        tmp_path / "plots/alice/bandits-average-reward.png", {(0.1, 0.0, 0.0): np.linspace(0, 1.3, 1000)}
    )
    with_plot = [dataclasses.replace(r) for r in reports]
    with_plot[0].checks = [dataclasses.replace(c, details=dict(c.details, plot=plot)) for c in reports[0].checks]
    page_path = tmp_path / "site/index.html"
    formats.write_text(page_path, formats.summary_html(with_plot, page_path))
    page = Page()
    page.feed(page_path.read_text())
    assert page.images == ["../plots/alice/bandits-average-reward.png"]
    assert all((page_path.parent / src).resolve().is_file() for src in page.images)
    text = "".join(page.text)
    assert AWKWARD in text and "Grading summary" in text
    assert page.rows == 1 + 4 + 2 * (len(SPEC.checks) + 1)  # the class table, then two submissions' checks


def test_the_readme_documents_the_report_model():
    from grader.report import CheckResult, Report, schema_table

    readme = (REPO / "README.md").read_text()
    assert schema_table(Report) in readme and schema_table(CheckResult) in readme


def test_reports_read_back_as_they_were_written(reports):
    from grader.report import Report

    for report in reports:
        again = Report.from_dict(json.loads(json.dumps(report.to_dict())))
        assert again == report
    with pytest.raises(ValueError):
        Report.from_dict({"schema_version": 2, "checks": [{"nonsense": 1}]})


FORMULAS = ['=HYPERLINK("http:__x","y")', "+1+1", "-2+3", "@SUM(A1)", "\tx", "\rx"]


@pytest.mark.parametrize("text", FORMULAS)
def test_csv_text_cells_starting_like_a_formula_stay_text(text):
    assert formats.text_cell(text) == "'" + text
    assert formats.text_cell("alice") == "alice" and formats.text_cell("") == ""


def test_student_names_cannot_become_formulas_in_summary_csv(tmp_path):
    """Student folders named like formulas (an LMS export's display names), one of them with a
    submission whose error message is a formula: read back with the csv module, no text cell starts
    like a formula, numbers stay numbers, and the names are the students' behind the quote."""
    root = tmp_path / "class"
    for name in FORMULAS:
        (root / name).mkdir(parents=True)
        (root / name / "bandits.py").write_text((REPO / "solutions/bandits.py").read_text())
    (root / FORMULAS[0] / "bandits.py").write_text("raise ValueError(\"=cmd|' /C calc'!A0\")\n")
    result = run_grader(root, "--out", tmp_path / "out", "--check", "update: sample", "--jobs", "2", "--quiet")
    assert result.returncode == 1, result.stdout + result.stderr
    rows = list(csv.reader(io.StringIO((tmp_path / "out" / "summary.csv").read_bytes().decode(), newline="")))
    assert rows[0] == ["student", "bandits", "bandits_status", "total", "max_total", "problems"]
    assert sorted(row[0] for row in rows[1:]) == sorted("'" + name for name in FORMULAS)
    for row in rows[1:]:
        assert all(not cell.startswith(formats.FORMULA_STARTS) for cell in row), row
        float(row[1]), float(row[3]), float(row[4])  # numbers stay numbers
    broken = next(row for row in rows if row[0] == "'" + FORMULAS[0])
    assert broken[2] == "failed" and "=cmd|" in broken[5]
