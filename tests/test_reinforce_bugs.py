"""Planted bugs in the REINFORCE solutions, each failing a unit check whose message names it
(issue 9: every part the student writes is checked by name, fast, without a full training)."""

import pytest

from conftest import checks_of, variant

UNITS = [
    "--check",
    "returns",
    "--check",
    "loss",
    "--check",
    "probabilities",
    "--check",
    "Agent.train",
    "--check",
    "sample_actions",
    "--check",
    "train:",
    "--check",
    "evaluate",
]
BASELINE = "solutions/reinforce_baseline.py"
VALUE_STEP = "            loss_of_values = value_loss(values, returns)\n"
UPDATE_BOTH = (
    "        for loss, model, optimizer in [(loss, self.policy, self.optimizer),\n"
    "                                       (loss_of_values, self.value, self.value_optimizer)]:\n"
)
PLAY = "            actions = sample_actions(agent.predict(states), rng)\n"


def grade(tmp_path, submission, path, *replacements):
    name = path.split("/")[-1]
    result, checks, report = checks_of(tmp_path, submission(variant(path, *replacements), name=name), *UNITS)
    failed = {n: c["message"] for n, c in checks.items() if not c["passed"]}
    return result, checks, failed


def only_failure(failed, name, *words):
    """`name` is the one check that failed, and its message has every one of `words`."""
    assert list(failed) == [name], failed
    for word in words:
        assert word in failed[name], failed[name]


@pytest.mark.parametrize("target", ["returns - values", "returns - tf.stop_gradient(values)"])
def test_value_network_trained_towards_the_advantages(tmp_path, submission, target):
    _, _, failed = grade(tmp_path, submission, BASELINE, (VALUE_STEP, VALUE_STEP.replace("returns)", f"{target})")))
    only_failure(
        failed,
        "Agent.train: the value network moves towards the returns",
        "trained towards the advantages (returns - V(s)) instead of the returns",
    )


def test_value_network_never_updated(tmp_path, submission):
    _, _, failed = grade(
        tmp_path,
        submission,
        BASELINE,
        (UPDATE_BOTH, "        for loss, model, optimizer in [(loss, self.policy, self.optimizer)]:\n"),
    )
    only_failure(failed, "Agent.train: the value network moves towards the returns", "never updated")


@pytest.mark.parametrize("path", ["solutions/reinforce.py", BASELINE])
def test_playing_the_greedy_actions_during_training(tmp_path, submission, path):
    _, _, failed = grade(
        tmp_path, submission, path, (PLAY, "            actions = np.argmax(agent.predict(states), axis=1)\n")
    )
    only_failure(failed, "train: the steps played are the steps trained on", "most probable action (argmax)", "sampled")


@pytest.mark.parametrize("path", ["solutions/reinforce.py", BASELINE])
def test_training_on_the_greedy_actions_instead_of_the_sampled_ones(tmp_path, submission, path):
    _, _, failed = grade(
        tmp_path,
        submission,
        path,
        (
            "            all_actions.append(actions)\n",
            "            all_actions.append(np.argmax(agent.predict(states), axis=1))\n",
        ),
    )
    only_failure(
        failed,
        "train: the steps played are the steps trained on",
        "trains on the most probable (argmax) actions instead of the actions played",
    )


def test_baseline_added_in_the_loss(tmp_path, submission):
    _, _, failed = grade(
        tmp_path,
        submission,
        BASELINE,
        ("advantages = returns - tf.stop_gradient(baselines)", "advantages = returns + tf.stop_gradient(baselines)"),
    )
    assert "baseline is added to the returns instead of subtracted" in failed["policy loss: gradient with baseline"]
    assert set(failed) <= {"policy loss: gradient with baseline", "Agent.train: the policy follows returns - V(s)"}
    if "Agent.train: the policy follows returns - V(s)" in failed:  # the same bug, seen through Agent.train
        assert "policy_loss failed its own check" in failed["Agent.train: the policy follows returns - V(s)"]


def test_baseline_added_in_the_training_step(tmp_path, submission):
    _, _, failed = grade(
        tmp_path,
        submission,
        BASELINE,
        ("loss = policy_loss(probs, actions, returns, values)", "loss = policy_loss(probs, actions, returns, -values)"),
    )
    only_failure(
        failed,
        "Agent.train: the policy follows returns - V(s)",
        "baseline is added to the returns instead of subtracted",
    )


def test_baseline_ignored_in_the_training_step(tmp_path, submission):
    _, _, failed = grade(
        tmp_path,
        submission,
        BASELINE,
        (
            "loss = policy_loss(probs, actions, returns, values)",
            "loss = policy_loss(probs, actions, returns, 0 * values)",
        ),
    )
    only_failure(failed, "Agent.train: the policy follows returns - V(s)", "baseline is not subtracted")


def test_gradient_ascent_in_the_training_step(tmp_path, submission):
    _, _, failed = grade(
        tmp_path,
        submission,
        "solutions/reinforce.py",
        (
            "loss = policy_loss(self.policy(states, training=True), actions, returns)",
            "loss = -policy_loss(self.policy(states, training=True), actions, returns)",
        ),
    )
    only_failure(failed, "Agent.train: one step follows the returns", "AGAINST the returns")


def test_sampling_the_most_probable_action(tmp_path, submission):
    _, _, failed = grade(
        tmp_path,
        submission,
        "solutions/reinforce.py",
        ("    actions = (uniform[:, None] >= cumulative).sum(axis=1)\n", "    actions = np.argmax(probs, axis=1)\n"),
    )
    assert "most probable action (argmax) instead of sampling" in failed["sample_actions: frequencies"]
    assert set(failed) <= {"sample_actions: frequencies", "train: the steps played are the steps trained on"}


def test_one_random_number_for_every_row(tmp_path, submission):
    _, _, failed = grade(tmp_path, submission, "solutions/reinforce.py", ("rng.random(len(probs))", "rng.random()"))
    assert "one random number per row" in failed["sample_actions: frequencies"]


def test_evaluate_sampling_instead_of_the_greedy_action(tmp_path, submission):
    _, _, failed = grade(
        tmp_path,
        submission,
        "solutions/reinforce.py",
        (
            "        actions = np.argmax(agent.predict(states), axis=1)\n",
            "        actions = sample_actions(agent.predict(states), np.random.default_rng(0))\n",
        ),
    )
    only_failure(failed, "evaluate: greedy returns", "argmax")


def test_training_on_the_steps_after_the_episodes_ended(tmp_path, submission):
    _, _, failed = grade(
        tmp_path,
        submission,
        "solutions/reinforce.py",
        ("batch_states.append(all_states[i, :length])", "batch_states.append(all_states[i])"),
        ("batch_actions.append(all_actions[i, :length])", "batch_actions.append(all_actions[i])"),
        ("compute_returns(all_rewards[i, :length], args.gamma)", "compute_returns(all_rewards[i], args.gamma)"),
    )
    only_failure(failed, "train: the steps played are the steps trained on", "after an episode had ended")


RETURNS_LOOP = "        following = rewards[t] + gamma * following\n        returns[t] = following\n"


@pytest.mark.parametrize(
    "edit, hint",
    [
        (
            (RETURNS_LOOP, "        returns[t] = following\n        following = rewards[t] + gamma * following\n"),
            "shifted by one step: G_t must include r_t itself",
        ),
        (
            ("    for t in reversed(range(len(rewards))):\n", "    for t in reversed(range(len(rewards) - 1)):\n"),
            "the episode's last reward is left out",
        ),
    ],
    ids=["G_t-off-by-one", "total-short-by-one-reward"],
)
def test_returns_off_by_one_are_named(tmp_path, submission, edit, hint):
    path = submission(variant("solutions/reinforce.py", edit), name="reinforce.py")
    _, checks, _ = checks_of(tmp_path, path, "--check", "returns: discounted")
    check = checks["returns: discounted"]
    assert not check["passed"] and hint in check["message"], check["message"]


def test_sampling_that_ignores_its_generator(tmp_path, submission):
    """Right frequencies, same actions for the same seed, but also for another seed: a generator
    of its own with a fixed seed draws the same numbers at every call."""
    path = submission(
        variant(
            "solutions/reinforce.py",
            ("    uniform = rng.random(len(probs))", "    uniform = np.random.default_rng(0).random(len(probs))"),
        ),
        name="reinforce.py",
    )
    _, checks, _ = checks_of(tmp_path, path, "--check", "sample_actions")
    check = checks["sample_actions: frequencies"]
    assert not check["passed"] and "ignores the generator `rng` it is given" in check["message"], check["message"]


@pytest.mark.parametrize("path", ["solutions/reinforce.py", BASELINE])
def test_evaluate_that_never_plays_is_the_submissions_failure(tmp_path, submission, path):
    """evaluate() returning n numbers without playing an episode (issue 15: an exit 3 before)."""
    text = variant(
        path,
        (
            "    states = episodes.reset(n)\n    done = np.zeros(n, dtype=bool)\n    returns = "
            "np.zeros(n, dtype=np.float32)\n",
            "    return np.full(n, 500.0)\n",
        ),
    )
    result, checks, report = checks_of(tmp_path, submission(text, name=path.split("/")[-1]), "--check", "evaluate")
    check = checks["evaluate: greedy returns"]
    assert result.returncode == 1 and report["status"] == "failed", result.stderr
    assert not check["passed"] and "without playing a step" in check["message"], check["message"]


def test_a_batch_carried_over_to_the_next_one(tmp_path, submission):
    """The lists of a batch made once, before the loop over batches: the second agent.train call
    gets the first batch's steps again (the check follows two batches)."""
    text = variant(
        "solutions/reinforce.py",
        ("        batch_states, batch_actions, batch_returns = [], [], []\n", ""),
        (
            "    while trained < args.episodes:\n",
            "    batch_states, batch_actions, batch_returns = [], [], []\n    while trained < args.episodes:\n",
        ),
    )
    _, checks, _ = checks_of(tmp_path, submission(text, name="reinforce.py"), "--check", "train:")
    check = checks["train: the steps played are the steps trained on"]
    assert not check["passed"] and "steps of the first batch again" in check["message"], check["message"]
