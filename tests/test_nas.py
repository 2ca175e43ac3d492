"""Neural architecture search: the tabulated benchmark (verified, reproducible), the template
(every TODO checked by name), planted bugs each failing its named check, the grader's own
controller model, and a full grading of the reference (slow)."""

import hashlib
import importlib
import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO, checks_of, variant

SOLUTION = "solutions/nas.py"
UNIT = ["--check", "policy loss", "--check", "baseline:", "--check", "Controller.", "--check", "train:"]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tools"))


def spec():
    return importlib.import_module("grader.assignments.nas")


# ------------------------------------------------------------------ the table
def test_the_table_is_verified_by_its_checksum(tmp_path):
    from datasets import DatasetError
    from datasets.nas import load_table

    table = load_table()
    import make_nas_table

    assert len(table.choices) == 3 ** len(make_nas_table.DECISIONS) == spec().SPACE_SIZE
    assert [(name, values) for name, values in table.decisions] == [(n, list(v)) for n, v in make_nas_table.DECISIONS]
    for row, choices in enumerate(table.choices):  # parameters and FLOPs as the builder counts them
        assert (table.params[row], table.flops[row]) == make_nas_table.cost(tuple(choices))
    assert table.dev_accuracy.shape == table.test_accuracy.shape == (len(table.choices), len(make_nas_table.SEEDS))
    assert 0.1 < table.dev_accuracy.min() and table.dev_accuracy.max() < 1
    edited = tmp_path / "nas_table.json"
    edited.write_bytes(
        (REPO / "datasets" / "nas_table.json").read_bytes().replace(b'"dev_accuracy": [0.', b'"dev_accuracy": [1.', 1)
    )
    with pytest.raises(DatasetError, match="SHA-256"):
        load_table(edited)


@pytest.mark.slow
def test_the_table_is_regenerated_byte_for_byte(tmp_path):
    """The first 2 architectures trained again give the table's rows exactly (same stack)."""
    out = tmp_path / "t.json"
    subprocess.run(
        [sys.executable, "tools/make_nas_table.py", "--limit", "2", "--out", out],
        cwd=REPO,
        check=True,
        capture_output=True,
        timeout=600,
    )
    rows = (REPO / "datasets" / "nas_table.json").read_text().split('"architectures": [\n', 1)[1].splitlines()
    again = out.read_text().split('"architectures": [\n', 1)[1].splitlines()
    assert again[0] == rows[0] and again[1].rstrip(",") == rows[1].rstrip(",")


# ------------------------------------------------------------------ the grader's own model of the controller
def test_the_graders_controller_model_matches_keras():
    """ControllerWeights (numpy) computes the template's Keras controller's logits from its weights,
    and the greedy architecture decoded from them is the solution's own greedy()."""
    sys.path.insert(0, str(REPO / "solutions"))
    import nas

    args = nas.parse_args(["--seed", "3"])
    controller = nas.Controller(4, 3, args)
    weights = [w * 3 for w in controller.model.get_weights()]  # sharper: a decoding error would show
    controller.model.set_weights(weights)
    model = spec().ControllerWeights(controller.model.get_weights(), 4, 3)
    tokens = spec().tokens_of(np.random.default_rng(0).integers(3, size=(32, 4)), 3)
    assert np.allclose(model.logits(tokens), controller.logits(tokens).numpy(), atol=1e-4)
    assert np.array_equal(spec().tokens_of(tokens % 3, 3), controller.tokens(tokens % 3))
    assert model.greedy()[0].tolist() == controller.greedy().tolist()


def test_the_relabelling_is_a_bijection():
    nas = spec()
    relabelling = nas.Relabelling(np.random.default_rng(1), 4, 3)
    every = np.array(list(np.ndindex(*(3,) * 4)))
    mapped = relabelling.to_table(every)
    assert len({tuple(a) for a in mapped}) == len(every)
    assert not np.array_equal(mapped, every)


# ------------------------------------------------------------------ the template and the reference
def test_template_fails_naming_the_todos(tmp_path):
    result, checks, report = checks_of(tmp_path, "assignments/nas.py", *UNIT)
    assert result.returncode == 1
    assert set(report["todos"]) == {
        "policy_loss",
        "update_baseline",
        "Controller.sample",
        "Controller.log_probability",
        "Controller.train",
        "Controller.greedy",
        "train",
    }
    assert checks and all(not c["passed"] and "TODO" in c["message"] for c in checks.values())


# ------------------------------------------------------------------ typical bugs, each named
LOSS = "    advantages = returns - tf.stop_gradient(baseline)\n"
BUGS = {
    "baseline differentiated": (
        (LOSS, "    advantages = returns - baseline\n"),
        "policy loss: gradient with the baseline a constant",
        "differentiated",
    ),
    "baseline added": (
        (LOSS, "    advantages = returns + tf.stop_gradient(baseline)\n"),
        "policy loss: gradient with the baseline a constant",
        "added to the returns",
    ),
    "loss sign": (
        ("    return -tf.reduce_mean(advantages * log_probs)", "    return tf.reduce_mean(advantages * log_probs)"),
        "policy loss: gradient with the baseline a constant",
        "sign error",
    ),
    "baseline never updated": (
        (
            "    return mean if baseline is None else float(decay * baseline + (1 - decay) * mean)",
            "    return mean if baseline is None else float(baseline)",
        ),
        "baseline: moving average of the returns",
        "never updated",
    ),
    "decay swapped": (
        ("float(decay * baseline + (1 - decay) * mean)", "float((1 - decay) * baseline + decay * mean)"),
        "baseline: moving average of the returns",
        "swapped",
    ),
    "log-probability of the wrong decision": (
        (
            "tf.gather(log_probs, tf.cast(choices, tf.int32), batch_dims=2)",
            "tf.gather(log_probs, tf.cast(np.roll(choices, 1, axis=1), tf.int32), batch_dims=2)",
        ),
        "Controller.log_probability: sum of log pi(a_t | a_<t)",
        "wrong decision",
    ),
    "greedy decoding that samples": (
        (
            "            choices[0, t] = int(np.argmax(self.logits(self.tokens(choices))[0, t]))",
            "            choices[0, t] = int(tf.random.categorical(self.logits(self.tokens(choices))[:, t], 1)[0, 0])",
        ),
        "Controller.greedy: the most probable architecture",
        "does not sample",
    ),
    "sampling that takes the argmax": (
        (
            "            choices[:, t] = np.minimum((rng.random(n)[:, None] >= cumulative).sum(axis=1), self.num_choices - 1)",
            "            choices[:, t] = np.argmax(logits, axis=1)",
        ),
        "Controller.sample: frequencies step by step",
        "argmax",
    ),
    "decisions not fed back": (
        (
            "            logits = np.asarray(self.logits(self.tokens(choices))[:, t], np.float64)",
            "            logits = np.asarray(self.logits(np.zeros_like(choices))[:, t], np.float64)",
        ),
        "Controller.sample: frequencies step by step",
        "not fed back",
    ),
    "baseline not updated in Controller.train": (
        ("        self.baseline = update_baseline(self.baseline, returns, self.decay)\n", ""),
        "Controller.train: one step along R - b",
        "never updated",
    ),
    "training on the greedy architecture": (
        (
            "        returns = evaluations.evaluate(choices)\n",
            (
                "        choices = np.repeat(controller.greedy()[None], n, axis=0)\n"
                "        returns = evaluations.evaluate(choices)\n"
            ),
        ),
        "train: the evaluation budget, every batch trained on",
        "sampled",
    ),
}


@pytest.mark.parametrize("bug", list(BUGS))
def test_each_typical_bug_fails_its_named_check(tmp_path, submission, bug):
    replacement, name, words = BUGS[bug]
    path = submission(variant(SOLUTION, replacement), name="nas.py")
    result, checks, _ = checks_of(tmp_path, path, *UNIT)
    failed = {n: c["message"] for n, c in checks.items() if not c["passed"]}
    assert result.returncode == 1 and name in failed, failed
    assert words in failed[name], failed[name]
    assert all(
        n == name or "fix that first" in m or n.startswith(("Controller.train", "train:")) for n, m in failed.items()
    ), failed  # no other part is blamed


def test_tampered_logits_are_refused(tmp_path, submission):
    """A controller whose logits are not its model's (e.g. a hand-written table of preferences)
    is refused: the grader measures the exported model."""
    text = variant(
        SOLUTION,
        (
            "        return self._call(np.asarray(tokens, np.int32))",
            "        return self._call(np.asarray(tokens, np.int32)) + 1.0 * (np.arange(3) == 0)",
        ),
    )
    result, checks, _ = checks_of(tmp_path, submission(text, name="nas.py"), "--check", "Controller.greedy")
    assert result.returncode == 1
    assert (
        "recomputed by the grader from its exported weights"
        in checks["Controller.greedy: the most probable architecture"]["message"]
    )


def test_a_controller_of_another_shape_is_refused(tmp_path, submission):
    """The grader measures the template's controller: one sharing a single Dense layer of logits
    across the decisions (not the template's) is refused with the shapes it expects."""
    text = variant(
        SOLUTION,
        (
            """        logits = keras.layers.EinsumDense(  # logits[:, t] = hidden[:, t] @ W[t] + b[t]
            "ntu,tuc->ntc", output_shape=[num_decisions, num_choices], bias_axes="tc")(hidden)""",
            "        logits = keras.layers.Dense(num_choices)(hidden)",
        ),
    )
    result, checks, _ = checks_of(tmp_path, submission(text, name="nas.py"), "--check", "Controller.greedy")
    message = checks["Controller.greedy: the most probable architecture"]["message"]
    assert result.returncode == 1 and "EinsumDense of 3 logits per decision" in message, message


# ------------------------------------------------------------------ full gradings
@pytest.fixture
def fixed_key(tmp_path, monkeypatch):
    key = tmp_path / "grader-key"
    key.write_text("6" * 64)
    monkeypatch.setenv("GRADER_KEY_FILE", str(key))


@pytest.mark.slow
def test_reference_passes_the_search_with_plots(tmp_path, fixed_key):
    result, checks, _ = checks_of(tmp_path, SOLUTION, "--check", "search", "--plots", tmp_path / "plots")
    search = checks["search: greedy architecture in the top"]
    assert result.returncode == 0 and search["passed"], search["message"]
    assert "random search with the same budget" in search["message"]
    for training in search["details"]["trainings"]:
        assert len(training["returns"]) == spec().BUDGET
        assert (tmp_path / "plots" / f"nas-training-{training['index']}.png").stat().st_size > 10_000


def test_table_digest_matches_the_checksums():
    data = (REPO / "datasets" / "nas_table.json").read_bytes()
    entry = json.loads((REPO / "datasets" / "checksums.json").read_text())["nas_table"]
    assert hashlib.sha256(data).hexdigest() == entry["sha256"] and len(data) == entry["size"]


@pytest.mark.slow
def test_a_controller_that_trains_only_when_watched_fails_the_search(tmp_path, submission, fixed_key):
    """A submission that trains only in the unit check of train() (12 evaluations) and leaves the
    controller untrained in the search passes every unit check and fails the search, which names
    the loop: the controller's greedy architecture is measured from its weights, so it cannot
    claim what it did not learn."""
    text = variant(
        SOLUTION,
        (
            "        controller.train(choices, returns)\n",
            "        if args.evaluations < 20:\n            controller.train(choices, returns)\n",
        ),
    )
    result, checks, _ = checks_of(tmp_path, submission(text, name="nas.py"))
    failed = {n: c["message"] for n, c in checks.items() if not c["passed"]}
    assert result.returncode == 1 and list(failed) == ["search: greedy architecture in the top"], failed
    message = failed["search: greedy architecture in the top"]
    assert "every unit check passed" in message and "did not learn: look at the training loop" in message, message
