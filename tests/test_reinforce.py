"""REINFORCE and REINFORCE with baseline: templates, named bugs, and the full gradings."""
import json

import numpy as np
import pytest

from conftest import REPO, run_grader, variant

UNIT = ["--check", "returns", "--check", "loss", "--check", "probabilities"]
LOSS = "    return -tf.reduce_mean(returns * tf.math.log(tf.maximum(taken, 1e-7)))\n"


def checks_of(tmp_path, path, *args):
    result = run_grader(path, "--json", tmp_path / "r.json", "--quiet", *args)
    report = json.loads((tmp_path / "r.json").read_text())
    return result, {c["name"]: c for c in report["checks"]}, report


@pytest.mark.parametrize("name", ["reinforce", "reinforce_baseline"])
def test_template_fails_naming_the_todos(tmp_path, name):
    result, checks, report = checks_of(tmp_path, f"assignments/{name}.py", *UNIT)
    assert result.returncode == 1
    assert "compute_returns" in report["todos"] and "policy_loss" in report["todos"]
    assert all(not c["passed"] and "unfinished TODO" in c["message"] for c in checks.values())


@pytest.mark.parametrize("name", ["reinforce", "reinforce_baseline"])
def test_reference_passes_the_unit_checks(tmp_path, name):
    result, checks, _ = checks_of(tmp_path, f"solutions/{name}.py", *UNIT)
    assert result.returncode == 0, checks
    assert len(checks) >= 4


def test_sign_error_in_the_loss(tmp_path, submission):
    path = submission(variant("solutions/reinforce.py", (LOSS, LOSS.replace("return -", "return "))),
                      name="reinforce.py")
    result, checks, _ = checks_of(tmp_path, path, *UNIT)
    check = checks["policy loss: REINFORCE gradient"]
    assert result.returncode == 1 and not check["passed"]
    assert "sign error" in check["message"] and check["value"] < -0.99


def test_returns_not_reversed(tmp_path, submission):
    path = submission(variant("solutions/reinforce.py", ("for t in reversed(range(len(rewards))):", "for t in range(len(rewards)):")),
                      name="reinforce.py")
    result, checks, _ = checks_of(tmp_path, path, *UNIT)
    assert not checks["returns: discounted"]["passed"] and not checks["returns: undiscounted"]["passed"]
    assert "not reversed" in checks["returns: discounted"]["message"]
    assert checks["policy loss: REINFORCE gradient"]["passed"]


def test_baseline_gradient_flowing_into_the_policy_loss(tmp_path, submission):
    text = (REPO / "solutions/reinforce_baseline.py").read_text()
    assert "tf.stop_gradient(baselines)" in text
    path = submission(text.replace("tf.stop_gradient(baselines)", "baselines"), name="reinforce_baseline.py")
    result, checks, _ = checks_of(tmp_path, path, *UNIT)
    check = checks["policy loss: gradient with baseline"]
    assert not check["passed"] and "tf.stop_gradient" in check["message"]
    assert checks["returns: discounted"]["passed"]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["reinforce", "reinforce_baseline"])
def test_full_grading_of_the_reference(tmp_path, name):
    result, checks, report = checks_of(tmp_path, f"solutions/{name}.py", "--plots", tmp_path / "plots")
    assert result.returncode == 0, result.stdout + result.stderr
    training = [c for n, c in checks.items() if n.startswith("training")]
    assert len(training) == 2
    for check in training:
        assert check["value"] >= 490
        assert len(check["details"]["evaluation_returns"]) == 100
        curve = check["details"]["learning_curve"]
        assert len(curve) == check["details"]["training_episodes"]  # the reference finishes every episode it starts
        assert max(curve) > min(curve)
        from PIL import Image
        with Image.open(check["details"]["plot"]) as image:
            assert image.size[0] > 300 and len(np.unique(np.asarray(image.convert("L")))) > 5
    if name == "reinforce_baseline":
        assert all(c["details"]["training_episodes"] <= 200 for c in training)
