"""Gradescope's autograder archive (tools/make_gradescope.py), tested without Gradescope: the zip
unpacked into a temporary folder standing for /autograder, run_autograder run on a reference, a
template and broken submissions, results.json checked against Gradescope's documented schema
(https://gradescope-autograders.readthedocs.io/en/latest/specs/). setup.sh's installs are not
run (this environment has the stack already): its syntax and its pins are checked."""

import json
import os
import subprocess
import sys
import tomllib
import zipfile

import jupytext
import nbformat
import pytest
from test_formats import assert_gradescope

from conftest import REPO

NAMES = sorted(p.stem for p in (REPO / "solutions").glob("*.py"))
FAST = ["bandits", "value_iteration"]


def build(tmp_path, name):
    archive = tmp_path / f"{name}.zip"
    result = subprocess.run(
        [sys.executable, "tools/make_gradescope.py", name, "-o", str(archive)], cwd=REPO, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    return archive


def unpack(archive, root):
    """The zip as Gradescope unpacks it: ROOT/source, with the recorded modes."""
    with zipfile.ZipFile(archive) as z:
        z.extractall(root / "source")
        for info in z.infolist():
            (root / "source" / info.filename).chmod((info.external_attr >> 16) & 0o777)
    (root / "submission").mkdir()
    return root


def run_autograder(root, python=sys.executable):
    env = dict(os.environ, AUTOGRADER_ROOT=str(root), GRADER_PYTHON=python)
    result = subprocess.run(
        [str(root / "source" / "run_autograder")], env=env, capture_output=True, text=True, timeout=900
    )
    assert result.returncode == 0, result.stderr
    data = json.loads((root / "results" / "results.json").read_text())
    assert_gradescope(data)
    for entry in data.get("leaderboard", []):
        assert set(entry) <= {"name", "value", "order"} and isinstance(entry["name"], str)
        assert isinstance(entry["value"], (int, float, str)) and entry.get("order", "desc") in ("asc", "desc")
    return data


@pytest.mark.parametrize("name", NAMES)
def test_the_archive_builds_for_every_assignment(tmp_path, name):
    archive = build(tmp_path, name)
    with zipfile.ZipFile(archive) as z:
        names = set(z.namelist())
        modes = {i.filename: (i.external_attr >> 16) & 0o777 for i in z.infolist()}
        setup = z.read("setup.sh").decode()
        run = z.read("run_autograder").decode()
    assert {
        "setup.sh",
        "run_autograder",
        "grader/__main__.py",
        "grader/notebook.py",
        f"grader/assignments/{name}.py",
        "grader/hidden/__init__.py",
        "datasets/__init__.py",
        "datasets/checksums.json",
        "scripts/setup_data.sh",
    } <= names
    assert not any(
        n.startswith(("solutions/", "tests/", "tools/", "assignments/")) or "__pycache__" in n for n in names
    )
    assert modes["setup.sh"] & 0o111 and modes["run_autograder"] & 0o111 and modes["scripts/setup_data.sh"] & 0o111
    assert subprocess.run(["bash", "-n", "-c", setup]).returncode == 0
    pins = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    assert all(f'"{pin}"' in setup for pin in pins if not pin.startswith("pytest"))
    assert "bubblewrap" in setup and "scripts/setup_data.sh .venv/bin/python" in setup
    compile(run, "run_autograder", "exec")
    assert f"ASSIGNMENT, MAX_SCORE = {name!r}" in run
    assert build(tmp_path / "again", name).read_bytes() == archive.read_bytes()  # reproducible


def test_an_unknown_assignment_is_a_usage_error():
    result = subprocess.run(
        [sys.executable, "tools/make_gradescope.py", "nope"], cwd=REPO, capture_output=True, text=True
    )
    assert result.returncode == 2 and "unknown assignment 'nope'" in result.stderr and "bandits" in result.stderr


@pytest.fixture(scope="module", params=FAST)
def autograder(request, tmp_path_factory):
    return request.param, build(tmp_path_factory.mktemp(request.param), request.param)


def test_a_reference_notebook_gets_full_marks(autograder, tmp_path):
    name, archive = autograder
    root = unpack(archive, tmp_path)
    notebook = jupytext.reads((REPO / "solutions" / f"{name}.py").read_text(), fmt="py:light")
    notebook.cells.insert(0, nbformat.v4.new_code_cell("%matplotlib inline"))
    (root / "submission" / f"{name}.ipynb").write_text(nbformat.writes(notebook))
    data = run_autograder(root)
    assert data["score"] == data["extra_data"]["max_score"] > 0
    assert all(t["status"] == "passed" for t in data["tests"])
    assert "left out when graded, in cell 1" in data["output"]
    if name == "bandits":  # the mean reward per step of each configuration, higher is better
        assert [e["order"] for e in data["leaderboard"]] == ["desc"] * 3
        assert all(1.0 < e["value"] < 1.6 for e in data["leaderboard"])
    else:
        assert "leaderboard" not in data


def test_a_template_fails_naming_its_todos(autograder, tmp_path):
    name, archive = autograder
    root = unpack(archive, tmp_path)
    (root / "submission" / "work").mkdir()
    (root / "submission" / "work" / f"{name}.py").write_text((REPO / "assignments" / f"{name}.py").read_text())
    data = run_autograder(root)
    assert data["score"] == 0 and all(t["status"] == "failed" for t in data["tests"])
    assert "unfinished TODOs" in data["output"] and "TODO" in data["tests"][0]["output"]


@pytest.mark.parametrize(
    "broken, says",
    [
        ("notebook.ipynb:{", "the notebook's JSON is broken"),  # any name: the only notebook submitted
        ("NAME.py:def f(:\n", "SyntaxError"),
        ("NAME.py:x = 1\n|NAME.ipynb:{}", "several files for NAME"),
        ("notes.txt:nothing to grade", "no submission found: expected NAME.py or NAME.ipynb"),
    ],
)
def test_a_broken_submission_still_gets_results(tmp_path, broken, says):
    name = "bandits"
    root = unpack(build(tmp_path, name), tmp_path / "autograder")
    for entry in broken.replace("NAME", name).split("|"):
        file, text = entry.split(":", 1)
        (root / "submission" / file).write_text(text)
    data = run_autograder(root)
    assert data["score"] == 0 and data["tests"] and all(t["status"] == "failed" for t in data["tests"])
    assert says.replace("NAME", name) in data["output"] + data["tests"][0]["output"], data


def test_results_are_written_even_when_the_grader_cannot_run(tmp_path):
    root = unpack(build(tmp_path, "bandits"), tmp_path / "autograder")
    (root / "submission" / "bandits.py").write_text((REPO / "solutions" / "bandits.py").read_text())
    data = run_autograder(root, python=str(tmp_path / "no-such-python"))
    assert data["score"] == 0 and "not your fault" in data["tests"][0]["output"]
    assert data["tests"][0]["max_score"] == data["extra_data"]["max_score"] == 10


def test_leaderboard_entries_where_a_figure_invites_them():
    from grader.formats import gradescope, leaderboard
    from grader.report import CheckResult, Report

    vae = Report(
        assignment="vae",
        checks=[CheckResult("test -ELBO, z_dim 2", value=144.4), CheckResult("latent loss: analytic KL", value=0.0)],
    )
    reinforce = Report(
        assignment="reinforce",
        checks=[
            CheckResult(
                "training: greedy mean return",
                value=2,
                details={"trainings": [{"training_episodes": 200}, {"training_episodes": 250}]},
            )
        ],
    )
    bandits = Report(
        assignment="bandits",
        checks=[CheckResult("testbed: epsilon 0.1, averaging", value=1.31), CheckResult("select: greedy", value=0)],
    )
    assert leaderboard(vae) == [{"name": "test -ELBO, z_dim 2 (nats)", "value": 144.4, "order": "asc"}]
    assert leaderboard(reinforce) == [
        {"name": "training episodes used (mean of the trainings)", "value": 225.0, "order": "asc"}
    ]
    assert leaderboard(bandits) == [{"name": "mean reward, epsilon 0.1, averaging", "value": 1.31, "order": "desc"}]
    assert leaderboard(Report(assignment="value_iteration", checks=[CheckResult("4x4: v*", value=0.1)])) == []
    assert gradescope([vae])["leaderboard"] and "leaderboard" not in gradescope([vae, Report(student="x")])
