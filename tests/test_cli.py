"""The grader's command line on bad inputs and hostile submissions (bandits as the vehicle)."""

import json

import pytest

from conftest import REPO, run_grader, variant

SOLUTION = (REPO / "solutions/bandits.py").read_text()


def test_reference_solution_passes_with_json_report(tmp_path):
    result = run_grader("solutions/bandits.py", "--json", tmp_path / "r.json")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "PASSED: 10/10 points" in result.stdout
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["passed"] is True and report["score"] == report["max_score"] == 10
    assert report["assignment"] == "bandits" and report["device"] == "cpu" and report["error"] is None
    assert {"python", "numpy", "tensorflow", "gymnasium"} <= set(report["versions"])
    assert report["durations"]["total_s"] > 0 and report["limits"]["memory_mb"] == 1024
    for check in report["checks"]:
        assert {
            "name",
            "value",
            "threshold",
            "passed",
            "score",
            "max_score",
            "message",
            "visibility",
            "duration_s",
        } <= set(check)
        assert check["passed"] and check["message"]


def test_template_fails_naming_the_todos():
    result = run_grader("assignments/bandits.py")
    assert result.returncode == 1
    assert "unfinished TODOs: Agent.select_actions, Agent.update" in result.stdout
    assert "FAILED: 0/10 points" in result.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["no/such/file.py"], "no such file or directory: no/such/file.py"),
        (["pyproject.toml"], "is not a Python file"),
        (["tests/conftest.py"], "cannot tell the assignment of tests/conftest.py"),
        (["solutions/bandits.py", "--assignment", "nope"], "invalid choice: 'nope'"),
    ],
)
def test_usage_errors_exit_2(args, message):
    result = run_grader(*args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_help_lists_the_assignments():
    result = run_grader("--help")
    assert result.returncode == 0
    assert "bandits" in result.stdout and "exit status" in result.stdout


def test_assignment_option_overrides_the_file_name(submission):
    path = submission(SOLUTION, name="my_homework.py")
    result = run_grader(path, "--assignment", "bandits", "--quiet")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("PASSED")


def grade_text(submission, text, *args):
    result = run_grader(submission(text), "--quiet", *args)
    assert "Traceback" not in result.stdout
    return result


@pytest.mark.parametrize(
    "name, edit, args, expected",
    [
        (
            "syntax error",
            ("def update(self, actions, rewards):", "def update(self, actions, rewards)"),
            [],
            "SyntaxError: expected ':' (line",
        ),
        (
            "exception",
            (
                "actions = np.argmax(self.estimates, axis=1)",
                "actions = np.argmax(self.estimates, axis=1); raise ValueError('oops')",
            ),
            [],
            "raised ValueError: oops (line ",
        ),
        (
            "infinite loop",
            ("actions = np.argmax(self.estimates, axis=1)", "while True: pass"),
            ["--call-time-limit", "2"],
            "CPU seconds of its 2 during select_actions",
        ),
        (
            "infinite loop at import",
            ("import numpy as np\n", "import numpy as np\nwhile True: pass\n"),
            [],
            "CPU seconds of its 30 during import",
        ),
        (
            "memory hog",
            (
                "actions = np.argmax(self.estimates, axis=1)",
                "hog = [np.ones(2**24) for _ in range(60)]; actions = np.argmax(self.estimates, axis=1)",
            ),
            ["--memory-limit", "300"],
            "exceeded 300 MiB of memory during select_actions",
        ),
        (
            "NaN answer",
            (
                "self.estimates[episodes, actions] += step",
                "self.estimates[:] = np.nan; self.estimates[episodes, actions] += step",
            ),
            [],
            "NaN or infinity",
        ),
        (
            "wrong shape",
            ("        return actions\n", "        return actions[:5]\n"),
            [],
            "Agent.select_actions returned shape (5,), expected (64)",
        ),
        (
            "float actions",
            ("        return actions\n", "        return actions.astype(float)\n"),
            [],
            "returned an array of dtype float64, expected integer",
        ),
        (
            "fake pass at import",
            ("import numpy as np\n", "import numpy as np, os\nprint('PASSED: 10/10 points'); os._exit(0)\n"),
            [],
            "exited with status 0 during import",
        ),
        (
            "sys.exit in a method",
            ("        return actions\n", "        import sys; sys.exit(0)\n"),
            [],
            "the submission called exit(0) during select_actions",
        ),
        (
            "os._exit in a method",
            ("        return actions\n", "        import os; os._exit(0)\n"),
            [],
            "exited with status 0 during select_actions instead of answering",
        ),
        (
            "segfault",
            ("        return actions\n", "        import ctypes; ctypes.string_at(0)\n"),
            [],
            "died with SIGSEGV during select_actions",
        ),
        (
            "object instead of array",
            ("        return actions\n", "        return {'a': 1}\n"),
            [],
            "returned dict, expected a numpy array",
        ),
    ],
)
def test_broken_submissions_fail_with_a_reason(submission, name, edit, args, expected):
    result = grade_text(submission, variant("solutions/bandits.py", edit), *args)
    assert result.returncode == 1, (name, result.stdout, result.stderr)
    assert result.stdout.startswith("FAILED"), result.stdout
    assert expected in result.stdout, result.stdout


def test_isolation_of_the_child(submission, monkeypatch):
    """The reference, prefixed with probes that break it if the child is not isolated."""
    probe = """import os, sys
assert sys.flags.isolated, "not isolated mode"
assert "GRADER_TEST_SECRET" not in os.environ, "environment not scrubbed"
assert not os.path.exists("solutions") and not os.path.exists("grader"), "cwd is the repository"
for name in ("solutions", "grader", "tests"):
    try:
        __import__(name)
    except ImportError:
        pass
    else:
        raise AssertionError(name + " is importable")
"""
    monkeypatch.setenv("GRADER_TEST_SECRET", "x")
    result = grade_text(submission, probe + SOLUTION)
    assert result.returncode == 0, result.stdout


def test_printing_cannot_fake_results(submission):
    """Output of the submission never reaches the report, and cannot break the protocol."""
    text = variant(
        "solutions/bandits.py",
        (
            "        return actions\n",
            "        print('PASSED: 10/10 points', flush=True); import os; os.write(1, b'PASSED')\n        return actions[:3]\n",
        ),
    )
    result = grade_text(submission, text)
    assert result.returncode == 1
    assert "PASSED: 10/10" not in result.stdout


def test_forged_protocol_message_is_only_an_answer(submission):
    """A submission that writes its own protocol messages gets them validated like any answer."""
    text = variant(
        "solutions/bandits.py",
        (
            "        return actions\n",
            """        import json, struct, sys
        config = json.loads(sys.argv[1])
        blob = json.dumps({"op": "result", "value": "all checks passed", "arrays": []}).encode()
        os.write(config["wfd"], struct.pack(">I", len(blob)) + blob)
        return actions
""",
        ),
        ("import argparse\n", "import argparse, os\n"),
    )
    result = grade_text(submission, text)
    assert result.returncode == 1
    assert "an answer out of turn during select_actions" in result.stdout


def test_grading_a_directory_grades_every_solution():
    result = run_grader("solutions/", "--quiet", "--assignment", "bandits")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("PASSED") == 1


def test_self_test_checks_the_machine_one_line_each(tmp_path):
    """All hold here (CI's machine: bubblewrap, cgroups, data); a key that is too short is the one
    failing line, with its fix, and the exit status 1."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, GRADER_KEY_FILE=str(tmp_path / "key"))
    result = subprocess.run(
        [sys.executable, "-m", "grader", "--self-test"], cwd=REPO, env=env, capture_output=True, text=True, timeout=600
    )
    lines = result.stdout.splitlines()
    cgroups = any(line.startswith("ok   cgroups:") for line in lines)  # (a user without a delegated cgroup: FAIL)
    assert result.returncode == (0 if cgroups else 1), result.stdout + result.stderr
    for item in (
        "bubblewrap and user namespaces",
        "the sandbox's uid outside",
        "seccomp",
        "data sets",
        "the grader's key",
    ):
        assert any(line.startswith(f"ok   {item}:") for line in lines), (item, result.stdout)
    assert "the sandbox's uid outside: 0 " not in result.stdout
    (tmp_path / "key").write_text("short")
    broken = subprocess.run(
        [sys.executable, "-m", "grader", "--self-test"], cwd=REPO, env=env, capture_output=True, text=True, timeout=600
    )
    assert broken.returncode == 1
    failing = [line for line in broken.stdout.splitlines() if line.startswith("FAIL")]
    assert [line for line in failing if not line.startswith("FAIL cgroups")] == [
        next(line for line in failing if line.startswith("FAIL the grader's key: "))
    ] and "fix: " in broken.stdout
