"""Notebook submissions (grader/notebook.py): a notebook is graded exactly as the .py it holds."""

import hashlib
import json

import jupytext
import nbformat
import pytest

from conftest import REPO, checks_of, run_grader, variant
from grader.notebook import NotebookError, to_program

SAME = ("name", "passed", "score", "max_score", "value", "threshold", "message")


def notebook_of(text, ipython=True):
    """The .py text as a notebook, converted by jupytext; with `ipython` also a `%matplotlib
    inline` cell after the first one and a `!pip` line above the imports, as students write."""
    notebook = jupytext.reads(text, fmt="py:light")
    if ipython:
        imports = next(c for c in notebook.cells if c.cell_type == "code" and "import numpy as np" in c.source)
        imports.source = "!pip install --quiet numpy\n" + imports.source
        notebook.cells.insert(1, nbformat.v4.new_code_cell("%matplotlib inline"))
    return nbformat.writes(notebook)


def write(folder, name, text):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text)
    return folder / name


def graded_both_ways(tmp_path, name, text, *args):
    """The reports of `text` graded as NAME.py and as NAME.ipynb (from jupytext, with IPython lines)."""
    py = write(tmp_path / "py", f"{name}.py", text)
    nb = write(tmp_path / "nb", f"{name}.ipynb", notebook_of(text))
    (tmp_path / "py" / "out").mkdir()
    (tmp_path / "nb" / "out").mkdir()
    results = [checks_of(tmp_path / kind / "out", path, *args) for kind, path in (("py", py), ("nb", nb))]
    (py_result, _, py_report), (nb_result, _, nb_report) = results
    assert py_result.returncode == nb_result.returncode, (py_result.stderr, nb_result.stderr)
    return py_report, nb_report, nb


def assert_same_grades(py_report, nb_report):
    assert [{k: c[k] for k in SAME} for c in nb_report["checks"]] == [
        {k: c[k] for k in SAME} for c in py_report["checks"]
    ]
    for key in ("status", "passed", "score", "max_score", "todos", "error_kind"):
        assert nb_report[key] == py_report[key], key


@pytest.mark.parametrize("name", ["bandits", "value_iteration"])
def test_a_filled_notebook_gets_the_same_checks_and_scores_as_the_py(tmp_path, name):
    py_report, nb_report, nb = graded_both_ways(tmp_path, name, (REPO / "solutions" / f"{name}.py").read_text())
    assert nb_report["passed"] and nb_report["score"] == nb_report["max_score"]
    assert_same_grades(py_report, nb_report)
    assert nb_report["sha256"] == hashlib.sha256(nb.read_bytes()).hexdigest()  # the notebook as submitted
    assert nb_report["submission"].endswith(f"{name}.ipynb")
    (note,) = nb_report["notes"]
    assert "cell 2" in note and "%matplotlib inline" in note and "!pip install" in note
    assert py_report["notes"] == []


def test_a_notebook_with_a_bug_gets_the_same_diagnosis(tmp_path):
    argmin = variant("solutions/bandits.py", ("np.argmax(self.estimates, axis=1)", "np.argmin(self.estimates, axis=1)"))
    py_report, nb_report, _ = graded_both_ways(tmp_path, "bandits", argmin, "--check", "select", "--check", "averaging")
    assert not nb_report["passed"]
    assert_same_grades(py_report, nb_report)
    assert "see the failed unit check(s): select: greedy" in nb_report["checks"][-1]["message"]


def test_the_template_as_a_notebook_names_the_same_todos(tmp_path):
    py_report, nb_report, _ = graded_both_ways(tmp_path, "bandits", (REPO / "assignments" / "bandits.py").read_text())
    assert nb_report["todos"] == ["Agent.select_actions", "Agent.update"]
    assert_same_grades(py_report, nb_report)


def test_a_tensorflow_notebook_imports_and_answers_like_the_py(tmp_path):
    py_report, nb_report, _ = graded_both_ways(
        tmp_path, "reinforce", (REPO / "solutions" / "reinforce.py").read_text(), "--check", "returns: "
    )
    assert nb_report["passed"] and nb_report["checks"]
    assert_same_grades(py_report, nb_report)


def cells_with(sources):
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [
        nbformat.v4.new_markdown_cell(s[3:]) if s.startswith("md:") else nbformat.v4.new_code_cell(s) for s in sources
    ]
    return nbformat.writes(notebook)


SOLUTION_CELLS = jupytext.reads((REPO / "solutions" / "bandits.py").read_text(), fmt="py:light").cells


def test_a_syntax_error_names_its_cell_and_line(tmp_path):
    sources = [c.source for c in SOLUTION_CELLS]
    sources.insert(0, "md:# My bandits")
    sources.insert(2, "x = 1\ny = (2,\n")  # the third cell, counted from the top, its second line
    path = write(tmp_path, "bandits.ipynb", cells_with(sources))
    result, _, report = checks_of(tmp_path, path, "--check", "update")
    assert result.returncode == 1 and report["error_kind"] == "syntax"
    assert "(cell 3, line 2)" in report["error"], report["error"]
    assert 'bandits.ipynb", cell 3, line 2' in report["error_details"] and "y = (2," in report["error_details"]
    assert all(c["message"].startswith("not run") for c in report["checks"])


def test_a_runtime_traceback_names_the_cell_and_line(tmp_path):
    sources = [
        c.source.replace(
            "    def update(self, actions, rewards):\n", "    def update(self, actions, rewards):\n        1 / 0\n"
        )
        for c in SOLUTION_CELLS
    ]
    cell = next(i for i, s in enumerate(sources, 1) if "1 / 0" in s)
    line = sources[cell - 1].splitlines().index("        1 / 0") + 1
    path = write(tmp_path, "bandits.ipynb", cells_with(sources))
    _, checks, _ = checks_of(tmp_path, path, "--check", "update: sample")
    check = checks["update: sample averaging"]
    assert f"ZeroDivisionError: division by zero (cell {cell}, line {line}, in update)" in check["message"]
    assert f'bandits.ipynb", cell {cell}, line {line}, in update' in check["details"]["traceback"]


@pytest.mark.parametrize(
    "content, reason",
    [
        ('{"cells": [{"cell_type": "code", ', "JSON is broken"),
        ("[1, 2, 3]", "not a notebook"),
        ('{"nbformat": 4, "nbformat_minor": 5, "metadata": {}}', "not valid"),
        ("\udcff", "not UTF-8"),
        (
            '{"nbformat": 4, "nbformat_minor": 5, "cells": [], "metadata": ' + '{"a": ' * 600 + "{}" + "}" * 601,
            "nested too deeply",
        ),
    ],
)
def test_a_notebook_that_cannot_be_read_is_the_students_failure(tmp_path, content, reason):
    path = tmp_path / "bandits.ipynb"
    path.write_bytes(content.encode("utf-8", "surrogateescape"))
    result, checks, report = checks_of(tmp_path, path)
    assert result.returncode == 1 and report["status"] == "failed", result.stderr  # not a grader error (3)
    assert report["error_kind"] == "notebook" and reason in report["error"], report["error"]
    assert report["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert all(c["message"] == "not run: the notebook could not be read (see above)" for c in checks.values())


def test_the_size_limit_counts_the_code_not_the_outputs(tmp_path):
    notebook = jupytext.reads((REPO / "solutions" / "bandits.py").read_text(), fmt="py:light")
    picture = nbformat.v4.new_output("display_data", data={"image/png": "iVBORw0KGgo" * 40_000})  # ~440 KB
    notebook.cells[-1].outputs = [picture]
    path = write(tmp_path / "outputs", "bandits.ipynb", nbformat.writes(notebook))
    assert path.stat().st_size > 128 * 1024
    result, checks, _ = checks_of(tmp_path / "outputs", path, "--check", "update")
    assert result.returncode == 0 and all(c["passed"] for c in checks.values())

    notebook.cells.append(nbformat.v4.new_code_cell("# padding\n" * 15_000))
    path = write(tmp_path / "code", "bandits.ipynb", nbformat.writes(notebook))
    result, _, report = checks_of(tmp_path / "code", path, "--check", "update")
    assert result.returncode == 1 and report["error_kind"] == "too_large"
    assert "the notebook's code cells have" in report["error"] and "outputs do not count" in report["error"]


def test_too_many_cells_are_refused_before_any_child_starts():
    with pytest.raises(NotebookError, match="2,001 code cells, more than 2,000"):
        to_program(cells_with(["x = 1"] * 2001).encode())
    assert len(to_program(cells_with(["x = 1"] * 2000).encode()).cells) == 2000


def test_guarded_experiments_do_not_run_when_graded(tmp_path):
    """The grader imports the notebook as the module `bandits`: __name__ is not "__main__"."""
    sources = [c.source for c in SOLUTION_CELLS] + [
        'assert __name__ == "bandits", __name__\nif __name__ == "__main__":\n    raise SystemExit("the experiment ran")'
    ]
    path = write(tmp_path, "bandits.ipynb", cells_with(sources))
    result, _, report = checks_of(tmp_path, path, "--check", "update")
    assert result.returncode == 0 and report["passed"], report["error"]


def test_a_class_of_py_and_ipynb_students(tmp_path):
    solution = (REPO / "solutions" / "bandits.py").read_text()
    write(tmp_path / "class" / "alice", "bandits.py", solution)
    write(tmp_path / "class" / "bob" / "work", "bandits.ipynb", notebook_of(solution))
    write(
        tmp_path / "class" / "carol",
        "value_iteration.ipynb",
        notebook_of((REPO / "solutions" / "value_iteration.py").read_text(), ipython=False),
    )
    write(tmp_path / "class" / "dave", "bandits.py", solution)
    write(tmp_path / "class" / "dave", "bandits.ipynb", notebook_of(solution))
    result = run_grader(
        tmp_path / "class",
        "--jobs",
        "2",
        "--out",
        tmp_path / "out",
        "--check",
        "update",
        "--check",
        "q_values",
        "--gradescope",
        tmp_path / "gs.json",
    )
    assert result.returncode == 1, result.stderr  # dave's two files
    reports = {p.parent.name: json.loads(p.read_text()) for p in (tmp_path / "out").glob("*/*.json")}
    assert reports["alice"]["passed"] and reports["bob"]["passed"] and reports["carol"]["passed"]
    assert reports["bob"]["submission"].endswith("bob/work/bandits.ipynb") and reports["bob"]["notes"]
    assert reports["dave"]["error_kind"] == "ambiguous" and "bandits.ipynb" in reports["dave"]["error"]
    summary = (tmp_path / "out" / "summary.csv").read_text()
    assert "bob,2,passed" in summary and "carol,,missing,1,passed" in summary, summary


def test_ipython_lines_are_left_out_only_where_a_statement_starts():
    program = to_program(
        cells_with(
            [
                "md:# text",
                "%matplotlib inline\nimport numpy as np",
                (
                    "x = (1\n     % 2)\ns = '''\n%not a magic\n!nor this\n'''\nfiles = !ls\nif 'colab' in str(get_ipython()):\n"
                    "    !pip install gymnasium\n    import os\nelse:\n    y = 3"
                ),
                "%%time\nthis is not python",
                "def f():\n    return 1",
            ]
        ).encode()
    )
    code = program.code.decode()
    compile(code, "notebook", "exec")
    assert "% 2)" in code and "%not a magic\n!nor this" in code and "files" not in code and "import os" in code
    assert "if False:" in code and "%%time" not in code and "this is not python" not in code
    assert program.cells == ((1, 2, 2), (4, 3, 12), (17, 5, 2))
    (note,) = program.notes
    assert "cells 2, 3, 4" in note and "%matplotlib inline" in note and "%%time" in note


def test_a_notebook_with_no_code_is_an_empty_module_and_junk_is_refused():
    assert to_program(cells_with(["md:only text"]).encode()).code == b""
    with pytest.raises(NotebookError, match="JSON is broken"):
        to_program(b"{")
    with pytest.raises(NotebookError, match="not valid"):
        to_program(
            json.dumps(
                {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [{"cell_type": "code", "source": 1}]}
            ).encode()
        )


def test_shell_lines_and_cell_magics_never_run(tmp_path):
    """Left out, not contained: even without the sandbox, `!cmd`, `%%bash` and get_ipython() do nothing."""
    marks = [tmp_path / f"ran-{i}" for i in range(4)]
    sources = [c.source for c in SOLUTION_CELLS] + [
        f"!touch {marks[0]}",
        f"%%bash\ntouch {marks[1]}",
        f'get_ipython().system("touch {marks[2]}")',
        f"out = !touch {marks[3]}",
    ]
    path = write(tmp_path / "work", "bandits.ipynb", cells_with(sources))
    result, _, report = checks_of(tmp_path, path, "--check", "update", "--no-sandbox")
    assert result.returncode == 0 and report["passed"], report["error"]
    assert not any(mark.exists() for mark in marks)
    assert (
        f"in cells {len(sources) - 3}, {len(sources) - 2}, {len(sources) - 1}, {len(sources)} (" in report["notes"][0]
    )
