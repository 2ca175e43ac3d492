"""Verdicts and hints do not depend on the grader's key (issue 19).

The unit checks of the fast assignments draw their instances from the key (value_iteration's
random map and values, the bandits' estimates): every named bug of tests/test_bandits.py and
tests/test_value_iteration.py is graded under 8 different keys in CI (40 more with `-m thorough`),
as one class per key, and must fail the same check with the same hint under each."""

import json

import pytest
import test_bandits
import test_value_iteration

from conftest import run_grader, variant, write_key

KEYS = range(8)  # CI
MORE_KEYS = range(8, 48)  # -m thorough


def bug_class(folder):
    """A class folder with one student per named bug: {student: (assignment, check, hint)}."""
    expected = {}
    for i, (edit, _, check, function, hint) in enumerate(test_bandits.BUGS):
        edits = edit if isinstance(edit[0], tuple) else (edit,)
        (folder / f"bandits-{i:02d}").mkdir(parents=True)
        (folder / f"bandits-{i:02d}" / "bandits.py").write_text(variant("solutions/bandits.py", *edits))
        expected[f"bandits-{i:02d}"] = ("bandits", check, [function, hint])
    for i, (edits, function, hint) in enumerate(test_value_iteration.BUGS):
        (folder / f"vi-{i:02d}").mkdir(parents=True)
        (folder / f"vi-{i:02d}" / "value_iteration.py").write_text(variant(test_value_iteration.SOLUTION, *edits))
        expected[f"vi-{i:02d}"] = ("value_iteration", test_value_iteration.UNIT[function], ["likely bug: ", hint])
    return expected


UNIT_CHECKS = ["update", "select", *[name.split(":")[0] + ":" for name in test_value_iteration.UNIT.values()]]


@pytest.mark.slow
@pytest.mark.own_key
def test_named_bugs_fail_alike_under_any_key(tmp_path, monkeypatch):
    named_bugs_fail_alike(tmp_path, monkeypatch, KEYS)


@pytest.mark.thorough
@pytest.mark.own_key
def test_named_bugs_fail_alike_under_many_more_keys(tmp_path, monkeypatch):
    named_bugs_fail_alike(tmp_path, monkeypatch, MORE_KEYS)


def named_bugs_fail_alike(tmp_path, monkeypatch, keys):
    expected = bug_class(tmp_path / "class")
    checks = [arg for name in UNIT_CHECKS for arg in ("--check", name)]
    for k in keys:
        monkeypatch.setenv("GRADER_KEY_FILE", str(write_key(tmp_path / "keys" / f"key-{k}", f"{k:02d}" * 32)))
        out = tmp_path / f"out-{k}"
        # Not a test of the sandbox: a plain child process starts faster, and the draws are the same.
        # 5 CPU seconds a question (the unit checks take well under 1): the bug whose values diverge
        # (q not weighted by the probabilities) would otherwise keep value_iteration's check for 60.
        result = run_grader(
            tmp_path / "class",
            "--jobs",
            "2",
            "--out",
            out,
            "--quiet",
            "--no-sandbox",
            "--call-time-limit",
            "5",
            *checks,
        )
        assert result.returncode == 1, result.stdout + result.stderr
        for student, (assignment, check, words) in expected.items():
            report = json.loads((out / student / f"{assignment}.json").read_text())
            found = {c["name"]: c for c in report["checks"]}
            assert not found[check]["passed"] and all(w in found[check]["message"] for w in words), (
                f"key {k}, {student}: {found[check]['message']}"
            )
