import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# The grader's key decides its secret draws (a random map, a relabelling of CartPole...). Tests use
# this fixed key, so that their verdicts are the same on every machine (a machine's own key is
# made at random on first use); tests/test_keys.py runs the named bugs under many other keys.
TEST_KEY = "course-grader-test-key-" + "0123456789abcdef" * 3


def write_key(path, text=TEST_KEY):
    """Writes a grader key file as the grader makes one (mode 0600, folder 0700); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.write_text(text)
    path.chmod(0o600)
    return path


@pytest.fixture(scope="session")
def test_key_file():
    """The fixed key, in the home folder like a real one (the sandbox never sees the home folder)."""
    return write_key(Path.home() / ".cache" / "course-grader-tests" / f"key-{os.getpid()}")


@pytest.fixture(autouse=True)
def fixed_grader_key(request, monkeypatch, test_key_file):
    """Every test grades with the fixed key (also in the grader processes it starts), unless it is
    marked `own_key` because it is about the key itself."""
    if "own_key" not in request.keywords:
        monkeypatch.setenv("GRADER_KEY_FILE", str(test_key_file))


def run_grader(*args, timeout=900):
    """Runs `python -m grader ARGS` from the repository root, as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "grader", *map(str, args)], cwd=REPO, capture_output=True, text=True, timeout=timeout
    )


def variant(path, *replacements):
    """The text of a repository file with (old, new) replacements; each old must occur."""
    text = (REPO / path).read_text()
    for old, new in replacements:
        assert old in text, f"{old!r} not in {path}: update this test"
        text = text.replace(old, new)
    return text


def with_one_todo(name, index):
    """solutions/NAME.py with only its index-th solution region left as the template's TODO:
    (text, the TODO's function name), or (None, None) past the last region."""
    sys.path.insert(0, str(REPO / "tools"))
    from make_templates import BEGIN, END, enclosing_name

    lines = (REPO / "solutions" / f"{name}.py").read_text().splitlines(keepends=True)
    begins = [i for i, line in enumerate(lines) if line.strip() == BEGIN]
    if index >= len(begins):
        return None, None
    start = begins[index]
    end = next(i for i in range(start, len(lines)) if lines[i].strip() == END)
    indent = len(lines[start]) - len(lines[start].lstrip())
    function = enclosing_name(lines, start, indent)
    todo = " " * indent + f'raise NotImplementedError("TODO: {function}")\n'
    return "".join(lines[:start] + [todo] + lines[end + 1 :]), function


def checks_of(tmp_path, path, *args):
    """Grades `path` with a JSON report; (process result, {check name: check}, report)."""
    result = run_grader(path, "--json", tmp_path / "r.json", "--quiet", *args)
    report = json.loads((tmp_path / "r.json").read_text())
    return result, {c["name"]: c for c in report["checks"]}, report


@pytest.fixture
def submission(tmp_path):
    """Writes a submission file named NAME.py in its own folder and returns its path."""

    def write(text, name="bandits.py"):
        path = tmp_path / name
        path.write_text(text)
        return path

    return write
