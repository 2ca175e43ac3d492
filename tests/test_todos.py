"""Every TODO is checked: for every TODO of every template, the reference solution with only that
function left unfinished fails a check that is about that function (its spec's `functions`)
and names it."""
import dataclasses
import re

import pytest

from conftest import with_one_todo
from grader.assignments import all_assignments
from grader.runner import grade

ASSIGNMENTS = all_assignments()


def todos(name):
    """The functions of solutions/NAME.py's TODOs, in order."""
    found, index = [], 0
    while (function := with_one_todo(name, index)[1]) is not None:
        found.append(function)
        index += 1
    return found


CASES = [(name, function, index) for name in ASSIGNMENTS for index, function in enumerate(todos(name))]


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
    path.write_text(with_one_todo(name, index)[0])
    report = grade(dataclasses.replace(assignment, checks=checks), path)
    assert function in report.todos or report.error_kind == "todo"
    named = [c for c in report.checks if not c.passed and re.search(rf"\b{re.escape(function)}\b", c.message)]
    assert named, [(c.name, c.message) for c in report.checks]
