"""tools/new_assignment.py: a new assignment, scaffolded in a copy of the repository, passes the
generic tests and its own at once; a name that exists or is not an identifier is refused."""

import shutil
import subprocess
import sys

import pytest

from conftest import REPO

NAME, TITLE = "gradient_bandit", "Gradient bandit: preferences and a softmax policy"


def scaffold(root, *args):
    return subprocess.run(
        [sys.executable, "tools/new_assignment.py", *args], cwd=root, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(
    "name, says",
    [
        ("bandits", "'bandits' exists already: solutions/bandits.py"),
        ("1bandit", "not a lower-case Python identifier"),
        ("Bandits", "not a lower-case Python identifier"),
        ("class", "not a lower-case Python identifier"),
        ("_helper", "not a lower-case Python identifier"),
    ],
)
def test_a_name_that_exists_or_is_not_an_identifier_is_refused(name, says):
    before = subprocess.run(["git", "status", "--porcelain"], cwd=REPO, capture_output=True, text=True).stdout
    result = scaffold(REPO, name, "A title")
    assert result.returncode == 2 and says in result.stderr and result.stderr.count("\n") == 1, result.stderr
    assert subprocess.run(["git", "status", "--porcelain"], cwd=REPO, capture_output=True, text=True).stdout == before


def test_a_scaffolded_assignment_passes_its_tests_at_once(tmp_path):
    """In a copy of the repository's files (this venv's Python), the scaffold writes the new
    assignment, and `pytest -k NAME` runs the generic tests and the assignment's own, all passing."""
    root = tmp_path / "repo"
    tracked = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\0")
    for path in filter(None, tracked):
        if (REPO / path).is_file():
            (root / path).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / path, root / path)
    result = scaffold(root, NAME, TITLE)
    assert result.returncode == 0, result.stderr
    for path in (
        f"solutions/{NAME}.py",
        f"grader/assignments/{NAME}.py",
        f"assignments/{NAME}.py",
        f"tests/test_{NAME}.py",
    ):
        assert (root / path).is_file(), path
    readme = (root / "README.md").read_text()
    assert f"| {TITLE} | `solutions/{NAME}.py` | - |" in readme and f"### {TITLE} (`{NAME}.py`)" in readme
    assert 'raise NotImplementedError("TODO: discounted_returns")' in (root / f"assignments/{NAME}.py").read_text()
    tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider", "-k", NAME, "tests"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert tests.returncode == 0, tests.stdout[-3000:]
    summary = tests.stdout.strip().splitlines()[-1]
    assert " passed" in summary and "failed" not in summary and "skipped" not in summary, summary
    # every generic test ran for the new assignment, and its own bug test
    for test in (
        "test_the_reference_passes_its_unit_checks",
        "test_an_unfinished_todo_fails_a_check_that_names_it",
        "test_the_grading_paragraphs_are_the_specs",
        "test_without_the_grader_interface",
        "test_the_readme_has_the_registrys_table",
        "test_the_handout_rules_hold_for_the_assignment",
        "test_bugs_fail_their_named_check",
    ):
        assert any(test in line and NAME in line and "PASSED" in line for line in tests.stdout.splitlines()), test
    assert scaffold(root, NAME, TITLE).returncode == 2  # now it exists
