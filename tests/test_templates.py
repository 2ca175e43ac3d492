"""Templates are generated from the solutions and cannot drift from them (per assignment:
tests/test_assignments.py)."""

import subprocess
import sys

import pytest

from conftest import REPO

sys.path.insert(0, str(REPO / "tools"))
from make_templates import make_template  # noqa: E402


def test_committed_templates_are_generated_from_the_solutions():
    result = subprocess.run(
        [sys.executable, "tools/make_templates.py", "--check"], cwd=REPO, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


def test_regions_become_todos_named_after_their_function():
    source = "class A:\n    def f(self):\n        x = 1\n        ### BEGIN SOLUTION\n        return 2\n        ### END SOLUTION\n"
    assert make_template(source) == (
        'class A:\n    def f(self):\n        x = 1\n        raise NotImplementedError("TODO: A.f")\n'
    )
    with pytest.raises(ValueError, match="never closed"):
        make_template("def f():\n    ### BEGIN SOLUTION\n")
    with pytest.raises(ValueError, match="without"):
        make_template("def f():\n    ### END SOLUTION\n")


def test_the_two_reinforce_solutions_share_their_common_parts():
    """Each assignment is one file a student hands in, so reinforce_baseline.py repeats what it
    has in common with reinforce.py; this keeps the repeated parts identical."""
    import ast

    def definitions(name):
        source = (REPO / "solutions" / f"{name}.py").read_text()
        return {
            node.name: ast.get_source_segment(source, node)
            for node in ast.parse(source).body
            if isinstance(node, (ast.FunctionDef, ast.ClassDef))
        }

    plain, baseline = definitions("reinforce"), definitions("reinforce_baseline")
    for name in ("Episodes", "compute_returns", "sample_actions", "train", "evaluate", "main"):
        assert plain[name] == baseline[name], f"{name} differs between the two REINFORCE solutions"
