"""What a student sees: a syntax error once with its line and caret, checks blocked by another
function's TODO saying what they need, the plots written, live progress, --help's groups."""

import dataclasses

from conftest import run_grader, variant, with_one_todo
from grader.assignments import all_assignments
from grader.runner import grade


def test_a_syntax_error_is_reported_once_with_its_line_and_caret(submission):
    path = submission(
        variant("solutions/bandits.py", ("def update(self, actions, rewards):", "def update(self, actions, rewards)"))
    )
    result = run_grader(path)
    assert result.returncode == 1
    out = result.stdout
    assert out.count("SyntaxError: expected ':'") == 2  # the one-line reason and the traceback's last line
    assert f'File "{path}", line' in out and "def update(self, actions, rewards)\n" in out
    caret = out.splitlines()[
        out.splitlines().index(next(l for l in out.splitlines() if l.strip() == "def update(self, actions, rewards)"))
        + 1
    ]
    assert caret.strip() == "^" and len(caret) > 30  # under the end of the line, where the colon is missing
    assert "not run (7 checks)" in out and out.count("not run") == 1


def test_an_import_error_shows_the_students_traceback(submission):
    path = submission(
        variant("solutions/bandits.py", ("import numpy as np\n", "import numpy as np\nimport nosuchmodule\n"))
    )
    result = run_grader(path)
    assert result.returncode == 1
    assert "ModuleNotFoundError: No module named 'nosuchmodule'" in result.stdout
    assert f'File "{path}", line' in result.stdout and "/sandbox/" not in result.stdout


def test_a_check_blocked_by_another_functions_todo_names_what_it_needs(tmp_path):
    """In value_iteration, sweep calls q_values: with q_values unfinished, sweep's check needs it."""
    from test_assignments import todos

    path = tmp_path / "value_iteration.py"
    path.write_text(with_one_todo("value_iteration", todos("value_iteration").index("q_values"))[0])
    spec = all_assignments()["value_iteration"]
    checks = tuple(c for c in spec.checks if c.functions in (("q_values",), ("sweep",)))
    report = grade(dataclasses.replace(spec, checks=checks), path)
    messages = {c.functions[0]: r.message for c, r in zip(checks, report.checks)}
    assert messages["q_values"] == "unfinished TODO: q_values"
    assert messages["sweep"] == "not run: needs q_values, which is unfinished (TODO); this check is about sweep"
    assert report.todos == ["q_values"]


def test_the_plots_written_are_listed(tmp_path):
    result = run_grader("solutions/bandits.py", "--plots", tmp_path, "--check", "testbed: epsilon 0.1, alpha")
    assert result.returncode == 0, result.stdout + result.stderr
    line = next(l for l in result.stdout.splitlines() if l.startswith("plots written: "))
    for path in line.removeprefix("plots written: ").split(", "):
        assert path.startswith(str(tmp_path)) and (tmp_path / path.split("/")[-1]).stat().st_size > 1000


def test_what_the_submission_prints_is_relayed_live_as_its_own(submission):
    path = submission(
        variant(
            "solutions/bandits.py",
            (
                "    def select_actions(self):\n",
                "    def select_actions(self):\n        print('choosing', flush=True)\n",
            ),
        )
    )
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


def test_the_submission_cannot_write_control_characters_to_the_terminal(submission):
    """Escape sequences could move the cursor and overwrite the grader's verdict."""
    path = submission(
        variant(
            "solutions/bandits.py",
            (
                "    def select_actions(self):\n",
                "    def select_actions(self):\n        print('\\x1b[2J\\x1b[HPASSED: 10/10 points', flush=True)\n"
                "        raise ValueError('\\x1b[1A\\rPASSED')\n",
            ),
        )
    )
    result = run_grader(path, "--check", "greedy")
    assert result.returncode == 1
    assert "\x1b" not in result.stdout + result.stderr
    assert "[bandits.py prints] ?[2J?[HPASSED" in result.stderr


def test_the_runtimes_log_lines_are_not_shown_as_the_submissions_prints(submission):
    """TensorFlow's and CUDA's own log lines (e.g. cuInit failing where there is no GPU) are the
    runtime's: not relayed as the submission's prints, one note says why; its own prints are."""
    cuinit = "E0000 00:00:1732900000.123456   1234 cuda_executor.cc:1228] failed call to cuInit: UNKNOWN ERROR (303)"
    path = submission(
        variant(
            "solutions/bandits.py",
            (
                "    def select_actions(self):\n",
                "    def select_actions(self):\n"
                f"        import sys; print({cuinit!r}, file=sys.stderr, flush=True); print('mine', flush=True)\n",
            ),
        )
    )
    result = run_grader(path, "--check", "greedy")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "cuInit: UNKNOWN" not in result.stderr + result.stdout
    assert result.stderr.count("TensorFlow's own start-up and device messages are not shown") == 1
    assert "[bandits.py prints] mine" in result.stderr
