"""What every assignment of the registry must satisfy, one test per assignment (`-k NAME` selects
one): the reference passes its unit checks; every TODO of the template fails a check that names
it; the grading paragraphs are the spec's; without the fenced grader interface the checks that
need it fail saying so; the README's table is the registry's; the handout's rules hold.
A per-assignment test file (tests/test_NAME.py) holds only that assignment's bug variants and
calibration. The checks that train or grade a learned model (`Check.training`) are left to those."""

import ast
import dataclasses
import re
import sys

import pytest

from conftest import REPO, with_one_todo
from grader.assignments import all_assignments, table
from grader.runner import grade

sys.path.insert(0, str(REPO / "tools"))
import make_handout  # noqa: E402
from make_templates import GRADED, make_template  # noqa: E402

ASSIGNMENTS = all_assignments()
NAMES = list(ASSIGNMENTS)
FENCE = "# " + "=" * 86 + "\n# Grader interface: what the grader calls. You need not read or change anything below.\n"


def solution(name):
    return (REPO / "solutions" / f"{name}.py").read_text()


def todos(name):
    """The functions of solutions/NAME.py's solution regions, in order."""
    found = []
    while (function := with_one_todo(name, len(found))[1]) is not None:
        found.append(function)
    return found


def unit_checks(assignment, function=None):
    """The assignment's checks that train nothing (about `function` if given)."""
    return tuple(c for c in assignment.checks if not c.training and (function is None or function in c.functions))


def graded(tmp_path, name, text, checks):
    path = tmp_path / f"{name}.py"
    path.write_text(text)
    return grade(dataclasses.replace(ASSIGNMENTS[name], checks=checks), path)


def grading_paragraph(text, name):
    lines = text.split("\n")
    start = lines.index(GRADED.format(name=name)) + 1
    end = next(i for i in range(start, len(lines)) if not lines[i].strip() or '"""' in lines[i])
    return " ".join(" ".join(lines[start:end]).split())


@pytest.mark.parametrize("name", NAMES)
def test_the_reference_passes_its_unit_checks(tmp_path, name):
    checks = unit_checks(ASSIGNMENTS[name])
    assert checks, f"{name}: no unit checks (every check has training=True)"
    report = graded(tmp_path, name, solution(name), checks)
    assert report.error is None, report.error
    assert [c.name for c in report.checks if not c.passed] == [], [(c.name, c.message) for c in report.checks]


@pytest.mark.parametrize("name", NAMES)
def test_the_template_has_a_todo_per_solution_region_each_checked_by_name(name):
    template = (REPO / "assignments" / f"{name}.py").read_text()
    assert re.findall(r'NotImplementedError\("TODO: ([\w.]+)"\)', template) == todos(name)
    assert todos(name), f"{name}: solutions/{name}.py has no ### BEGIN SOLUTION region"
    for function in todos(name):
        assert any(function in c.functions for c in ASSIGNMENTS[name].checks), (
            f"{name}: no check lists {function} in its functions"
        )


@pytest.mark.parametrize("name", NAMES)
def test_the_template_fails_its_unit_checks_naming_its_todos(tmp_path, name):
    """The template as students get it: every unit check about a TODO fails saying which TODO (its
    own, or the one it needs); the report lists only the template's TODOs."""
    template = (REPO / "assignments" / f"{name}.py").read_text()
    checks = unit_checks(ASSIGNMENTS[name])
    report = graded(tmp_path, name, template, checks)
    assert not report.passed and report.todos and set(report.todos) <= set(todos(name)), report.todos
    for check, result in zip(checks, report.checks):
        if set(check.functions) & set(todos(name)):
            assert not result.passed and "TODO" in result.message, (result.name, result.message)


CASES = [(name, function, index) for name in NAMES for index, function in enumerate(todos(name))]


@pytest.mark.parametrize("name, function, index", CASES, ids=[f"{n}:{f}" for n, f, _ in CASES])
def test_an_unfinished_todo_fails_a_check_that_names_it(tmp_path, name, function, index):
    """The reference with only that function left as the template's TODO: the checks about it
    (the unit ones, if there are any) fail, and one names the function."""
    checks = unit_checks(ASSIGNMENTS[name], function) or tuple(
        c for c in ASSIGNMENTS[name].checks if function in c.functions
    )
    report = graded(tmp_path, name, with_one_todo(name, index)[0], checks)
    assert function in report.todos or report.error_kind == "todo"
    named = [c for c in report.checks if not c.passed and re.search(rf"\b{re.escape(function)}\b", c.message)]
    assert named, [(c.name, c.message) for c in report.checks]


@pytest.mark.parametrize("name", NAMES)
def test_the_grading_paragraphs_are_the_specs(name):
    """solutions/NAME.py's and assignments/NAME.py's "How it is graded" is grading_text() (written by
    tools/make_templates.py), and the template is the one generated from the solution."""
    text = ASSIGNMENTS[name].grading_text()
    template = (REPO / "assignments" / f"{name}.py").read_text()
    stale = f"stale: run python tools/make_templates.py {name}"
    fresh = grading_paragraph(solution(name), name) == text  # (no diff of two long texts: the fix is one command)
    assert fresh, f"solutions/{name}.py's grading paragraph is {stale}"
    fresh = grading_paragraph(template, name) == text
    assert fresh, f"assignments/{name}.py's grading paragraph is {stale}"
    fresh = template == make_template(solution(name))
    assert fresh, f"assignments/{name}.py is {stale}"
    spec_file = (REPO / "grader" / "assignments" / f"{name}.py").read_text()
    assert f'name="{name}"' in spec_file


def interface(name):
    """(solution without its fenced grader interface, the names it defines), or None without one."""
    text = solution(name)
    if FENCE not in text:
        return None
    head, block = text.split(FENCE, 1)
    main = 'if __name__ == "__main__":\n'
    defined = {
        node.name for node in ast.parse(block.split(main)[0]).body if isinstance(node, (ast.FunctionDef, ast.ClassDef))
    } - {"main", "compiled"}
    return head + (main + block.split(main, 1)[1] if main in block else ""), defined


@pytest.mark.parametrize("name", [n for n in NAMES if interface(n)])
def test_without_the_grader_interface_the_checks_that_need_it_fail_saying_so(tmp_path, name):
    text, defined = interface(name)
    report = graded(tmp_path, name, text, unit_checks(ASSIGNMENTS[name]))
    failed = [c for c in report.checks if not c.passed]
    assert failed, f"{name}: no check needs the grader interface ({sorted(defined)})"
    for check in failed:
        assert any(re.search(rf"\b{d}\b", check.message) for d in defined), (check.name, check.message)


@pytest.mark.parametrize("name", NAMES)
def test_the_readme_has_the_registrys_table_and_a_section(name):
    readme = (REPO / "README.md").read_text()
    assert table("solutions") in readme, "README.md's table of assignments: paste grader.assignments.table('solutions')"
    assignments = readme.split("\n## The assignments\n", 1)[1].split("\n## ", 1)[0]
    assert any(line.startswith("### ") and f"`{name}.py`" in line for line in assignments.splitlines()), (
        f"README.md: no section '### ... (`{name}.py`)' under '## The assignments'"
    )


@pytest.fixture(scope="module")
def handout_files():
    return make_handout.handout_files()[0]


@pytest.mark.parametrize("name", NAMES)
def test_the_handout_rules_hold_for_the_assignment(handout_files, name):
    """No file of the handout holds three consecutive lines of solutions/NAME.py's regions; the
    assignment's files refer to bench/, tests/, tools/ only as "in the course's repository"."""
    assert [leak for leak in make_handout.leaks(handout_files) if leak[1] == f"{name}.py"] == []
    own = {
        path: data
        for path, data in handout_files.items()
        if re.fullmatch(rf"(assignments|grader/assignments|grader/hidden)/{name}(_\w+)?\.(py|ipynb)", path)
    }
    assert f"assignments/{name}.py" in own and f"grader/assignments/{name}.py" in own
    assert make_handout.dangling(own) == []


def test_the_handout_rules_catch_what_they_are_for():
    """The two functions tools/make_handout.py refuses with, on planted cases."""
    region = next(run for file, run in make_handout.solution_runs() if len(run) == 3)
    planted = {"grader/x.py": ("x = 1\n" + "\n".join(f"    {line}" for line in region) + "\n").encode()}
    assert make_handout.leaks(planted) and make_handout.leaks({"grader/x.py": b"x = 1\n"}) == []
    assert make_handout.dangling({"grader/x.py": b"# see bench/x.py\n"}) == [("grader/x.py", 1, "# see bench/x.py")]
    assert make_handout.dangling({"grader/x.py": b"# bench/x.py in the course's repository\n"}) == []
    assert make_handout.dangling({"grader/x.py": b"# grader/tests/x.py, my.tools/x\n"}) == []
