"""REINFORCE and REINFORCE with baseline: named bugs in the losses, and full gradings (slow); the
templates and every TODO: the generic tests/test_assignments.py. More planted bugs: test_reinforce_bugs.py; the hand-coded
controller: test_reinforce_learned.py."""

import importlib

import numpy as np
import pytest

from conftest import checks_of, variant

UNIT = ["--check", "returns: ", "--check", "loss: ", "--check", "probabilities"]
LOSS = "    return -tf.reduce_mean(returns * tf.math.log(tf.maximum(taken, 1e-7)))\n"


@pytest.fixture
def fixed_key(tmp_path, monkeypatch):
    """A fixed grader key: the secret relabelling (drawn from the key) and so every training of a
    full grading are the same on every machine, instead of depending on the machine's own key."""
    key = tmp_path / "grader-key"
    key.write_text("5" * 64)
    monkeypatch.setenv("GRADER_KEY_FILE", str(key))


def spec(name):
    return importlib.import_module(f"grader.assignments.{name}").ASSIGNMENT


def test_sign_error_in_the_loss(tmp_path, submission):
    path = submission(
        variant("solutions/reinforce.py", (LOSS, LOSS.replace("return -", "return "))), name="reinforce.py"
    )
    result, checks, _ = checks_of(tmp_path, path, *UNIT)
    check = checks["policy loss: REINFORCE gradient"]
    assert result.returncode == 1 and not check["passed"]
    assert "sign error" in check["message"] and check["value"] < -0.99


def test_returns_not_reversed(tmp_path, submission):
    path = submission(
        variant("solutions/reinforce.py", ("for t in reversed(range(len(rewards))):", "for t in range(len(rewards)):")),
        name="reinforce.py",
    )
    result, checks, _ = checks_of(tmp_path, path, *UNIT)
    assert not checks["returns: discounted"]["passed"] and not checks["returns: undiscounted"]["passed"]
    assert "not reversed" in checks["returns: discounted"]["message"]
    assert checks["policy loss: REINFORCE gradient"]["passed"]


def test_baseline_gradient_flowing_into_the_policy_loss(tmp_path, submission):
    path = submission(
        variant("solutions/reinforce_baseline.py", ("tf.stop_gradient(baselines)", "baselines")),
        name="reinforce_baseline.py",
    )
    result, checks, _ = checks_of(tmp_path, path, *UNIT)
    check = checks["policy loss: gradient with baseline"]
    assert not check["passed"] and "tf.stop_gradient" in check["message"]
    assert checks["returns: discounted"]["passed"]


def test_a_sparse_categorical_cross_entropy_loss_is_accepted(tmp_path, submission):
    """The template says any way of computing the loss is fine: Keras's own cross-entropy with the
    returns as sample weights passes the gradient check."""
    body = "    taken = tf.gather(probs, tf.cast(actions, tf.int32), batch_dims=1)\n" + LOSS
    path = submission(
        variant(
            "solutions/reinforce.py",
            (
                body,
                ("    return keras.losses.SparseCategoricalCrossentropy()(actions, probs, sample_weight=returns)\n"),
            ),
        ),
        name="reinforce.py",
    )
    result, checks, _ = checks_of(tmp_path, path, "--check", "loss")
    assert result.returncode == 0, checks["policy loss: REINFORCE gradient"]["message"]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["reinforce", "reinforce_baseline"])
def test_full_grading_of_the_reference(tmp_path, fixed_key, name):
    result, checks, report = checks_of(tmp_path, f"solutions/{name}.py", "--plots", tmp_path / "plots")
    assert result.returncode == 0, result.stdout + result.stderr
    module = importlib.import_module(f"grader.assignments.{name}")
    check = checks["training: greedy mean return"]
    trainings = check["details"]["trainings"]
    assert check["value"] >= module.REQUIRED and module.REQUIRED <= len(trainings) <= module.TRAININGS
    assert sum(t["greedy_mean"] >= module.THRESHOLD for t in trainings) >= module.REQUIRED
    for training in trainings:
        assert len(training["evaluation_returns"]) == 100
        curve = training["learning_curve"]
        assert len(curve) == training["training_episodes"]  # the reference finishes every episode it starts
        assert max(curve) > min(curve)
        from PIL import Image

        with Image.open(training["plot"]) as image:
            assert image.size[0] > 300 and len(np.unique(np.asarray(image.convert("L")))) > 5
        if name == "reinforce_baseline":
            assert training["training_episodes"] <= module.BUDGET


@pytest.mark.slow
def test_a_training_loop_that_stops_too_early_is_diagnosed(tmp_path, submission, fixed_key):
    """Every unit check passes, but train() stops as soon as a greedy check reaches 100: the
    training check fails and points at the training loop, not at the loss (stopping at 150 let
    the greedy policy reach 475 on some runs, so the test stops earlier)."""
    path = submission(
        variant(
            "solutions/reinforce_baseline.py",
            ('"--check_return", default=400.0', '"--check_return", default=100.0'),
            ('"--target_return", default=500.0', '"--target_return", default=100.0'),
        ),
        name="reinforce_baseline.py",
    )
    result, checks, _ = checks_of(tmp_path, path)
    failed = {n: c["message"] for n, c in checks.items() if not c["passed"]}
    assert list(failed) == ["training: greedy mean return"], failed
    message = failed["training: greedy mean return"]
    assert "training loop `train`" in message and "policy_loss" not in message, message
    assert checks["training: greedy mean return"]["value"] == 0


@pytest.mark.slow
def test_a_training_loop_that_never_learns_is_diagnosed(tmp_path, submission, fixed_key):
    """Every unit check passes, but train() stops after 4 episodes: the training check says the
    training returns never rose, and points at the training loop."""
    path = submission(
        variant("solutions/reinforce_baseline.py", ('"--episodes", default=300', '"--episodes", default=4')),
        name="reinforce_baseline.py",
    )
    result, checks, _ = checks_of(tmp_path, path)
    failed = {n: c["message"] for n, c in checks.items() if not c["passed"]}
    assert list(failed) == ["training: greedy mean return"], failed
    assert "training returns never rose" in failed["training: greedy mean return"]
    assert "training loop `train`" in failed["training: greedy mean return"]


def test_training_episodes_show_progress_from_the_graders_own_counts(monkeypatch):
    """During training the grader reports the episodes it handed out and their recent mean return
    (its own counts, not the submission's), at most once every PROGRESS_SECONDS (a fake clock)."""
    from grader.assignments import _reinforce as common
    from grader.sandbox import Service

    clock = [0.0]
    monkeypatch.setattr(common.time, "monotonic", lambda: clock[0])
    messages = []
    episodes = common.TrainingEpisodes(np.random.default_rng(0), common.Identity(), budget=8, progress=messages.append)
    rng = np.random.default_rng(1)
    for batch in range(4):
        clock[0] += 2.0  # 2 s per batch: a message every third batch at most
        states, done = episodes.reset(2), np.zeros(2, bool)
        while not done.all():
            states, rewards, done = episodes.step(rng.integers(2, size=2))
    assert len(messages) == 1 and messages[0].startswith("4 episodes handed out, mean return of the last 4: ")
    assert float(messages[0].rsplit(" ", 1)[1]) == pytest.approx(np.mean(episodes.curve[:4]), abs=0.05)
    with pytest.raises(Service.Stop):
        episodes.reset(2)
    assert episodes.started == 8 and "budget of 8" in episodes.stop_reason
