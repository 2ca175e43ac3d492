import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def run_grader(*args, timeout=900):
    """Runs `python -m grader ARGS` from the repository root, as a user would."""
    return subprocess.run([sys.executable, "-m", "grader", *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)


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
    return "".join(lines[:start] + [todo] + lines[end + 1:]), function


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
