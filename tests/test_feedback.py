"""What a student sees: a syntax error once with its line and caret, checks blocked by another
function's TODO saying what they need, the plots written, live progress, --help's groups."""
import dataclasses

from conftest import REPO, run_grader, variant
from grader.assignments import all_assignments
from grader.runner import grade

BANDITS = all_assignments()["bandits"]


def test_a_syntax_error_is_reported_once_with_its_line_and_caret(submission):
    path = submission(variant("solutions/bandits.py", ("def update(self, actions, rewards):",
                                                       "def update(self, actions, rewards)")))
    result = run_grader(path)
    assert result.returncode == 1
    out = result.stdout
    assert out.count("SyntaxError: expected ':'") == 2  # the one-line reason and the traceback's last line
    assert f'File "{path}", line' in out and "def update(self, actions, rewards)\n" in out
    caret = out.splitlines()[out.splitlines().index(next(l for l in out.splitlines() if l.strip() == "def update(self, actions, rewards)")) + 1]
    assert caret.strip() == "^" and len(caret) > 30  # under the end of the line, where the colon is missing
    assert "not run (7 checks)" in out and out.count("not run") == 1


def test_an_import_error_shows_the_students_traceback(submission):
    path = submission(variant("solutions/bandits.py", ("import numpy as np\n", "import numpy as np\nimport nosuchmodule\n")))
    result = run_grader(path)
    assert result.returncode == 1
    assert "ModuleNotFoundError: No module named 'nosuchmodule'" in result.stdout
    assert f'File "{path}", line' in result.stdout and "/sandbox/" not in result.stdout


def test_a_check_blocked_by_another_functions_todo_names_what_it_needs():
    """The template's select_actions check needs Agent.update (to give an arm the best estimate)."""
    checks = tuple(dataclasses.replace(c, functions=("Agent.select_actions",)) if c.name.startswith("select") else c
                   for c in BANDITS.checks)
    report = grade(dataclasses.replace(BANDITS, checks=checks), REPO / "assignments/bandits.py")
    blocked = [c for c in report["checks"] if c["name"].startswith("select") and "needs" in c["message"]]
    for check in blocked:
        assert check["message"].startswith("not run: needs Agent.update, which is unfinished (TODO)")
        assert "this check is about Agent.select_actions" in check["message"]
    updates = [c for c in report["checks"] if c["name"].startswith("update")]
    assert all(c["message"] == "unfinished TODO: Agent.update" for c in updates)


def test_the_plots_written_are_listed(tmp_path):
    result = run_grader("solutions/bandits.py", "--plots", tmp_path, "--check", "testbed: epsilon 0.1, alpha")
    assert result.returncode == 0, result.stdout + result.stderr
    line = next(l for l in result.stdout.splitlines() if l.startswith("plots written: "))
    for path in line.removeprefix("plots written: ").split(", "):
        assert path.startswith(str(tmp_path)) and (tmp_path / path.split("/")[-1]).stat().st_size > 1000


def test_what_the_submission_prints_is_relayed_live_as_its_own(submission):
    path = submission(variant("solutions/bandits.py", ("    def select_actions(self):\n",
                                                       "    def select_actions(self):\n        print('choosing', flush=True)\n")))
    result = run_grader(path, "--check", "greedy")
    assert result.returncode == 0, result.stdout + result.stderr
    relayed = [l for l in result.stderr.splitlines() if "[bandits.py prints] choosing" in l]
    assert 1 <= len(relayed) <= 5 * 10  # at most 5 lines a second are shown
    assert "choosing" not in result.stdout  # never part of the report


def test_help_shows_the_students_options_first():
    out = run_grader("--help").stdout
    student, instructor = out.split("for instructors:")
    for option in ("--check", "--plots", "--device", "--json"):
        assert option in student
    for option in ("--jobs", "--out", "--shard", "--gradescope", "--junit", "--html", "--no-sandbox", "--time-limit"):
        assert option in instructor and option not in student
