"""Every TODO is checked: for every TODO of every template, the reference solution with only that
function left unfinished fails a check that is about that function (its spec's `functions`)
and names it."""
import dataclasses
import re
import sys

import pytest

from conftest import REPO
from grader.assignments import all_assignments
from grader.runner import grade

sys.path.insert(0, str(REPO / "tools"))
from make_templates import BEGIN, END, enclosing_name  # noqa: E402

ASSIGNMENTS = all_assignments()


def todos(source):
    """[(function name, index of its region)] of a solution."""
    lines, found = source.splitlines(), []
    for number, line in enumerate(lines):
        if line.strip() == BEGIN:
            found.append(enclosing_name(lines, number, len(line) - len(line.lstrip())))
    return found


def unfinished(source, index):
    """The solution with only its index-th region replaced by the template's TODO."""
    out, region, lines = [], -1, source.splitlines(keepends=True)
    inside = False
    for number, line in enumerate(lines):
        if line.strip() == BEGIN:
            region += 1
            inside = region == index
            if inside:
                indent = len(line) - len(line.lstrip())
                out.append(" " * indent + f'raise NotImplementedError("TODO: {enclosing_name(lines, number, indent)}")\n')
            continue
        if line.strip() == END:
            inside = False
            continue
        if not inside:
            out.append(line)
    return "".join(out)


CASES = [(name, function, index) for name in ASSIGNMENTS
         for index, function in enumerate(todos((REPO / "solutions" / f"{name}.py").read_text()))]


def test_every_todo_has_a_check_about_it():
    for name, function, _ in CASES:
        about = [c.name for c in ASSIGNMENTS[name].checks if function in c.functions]
        assert about, f"{name}: no check lists {function} in its functions"


@pytest.mark.parametrize("name, function, index", CASES, ids=[f"{n}:{f}" for n, f, _ in CASES])
def test_an_unfinished_function_fails_a_check_that_names_it(tmp_path, name, function, index):
    assignment = ASSIGNMENTS[name]
    checks = tuple(c for c in assignment.checks if function in c.functions)
    assert checks, f"no check is about {function}"
    path = tmp_path / f"{name}.py"
    path.write_text(unfinished((REPO / "solutions" / f"{name}.py").read_text(), index))
    report = grade(dataclasses.replace(assignment, checks=checks), path)
    assert function in report.todos or report.error_kind == "todo"
    named = [c for c in report.checks if not c.passed and re.search(rf"\b{re.escape(function)}\b", c.message)]
    assert named, [(c.name, c.message) for c in report.checks]
