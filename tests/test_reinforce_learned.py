"""Learned, not hand-coded: a hostile REINFORCE submission that returns a hand-written CartPole
controller as its "policy" fails both training checks, because the grader shows CartPole's
observations and actions through a secret relabelling (grader/assignments/_reinforce.py), and
because the policy that is evaluated is rebuilt from its Keras config and weights and run by the
grader's own code (grader/measured.py): a controller that identifies the relabelling online in
its `predict`, or a policy that was never trained, fails; a Lambda layer is refused by name."""

import importlib
import types

import numpy as np
import pytest

from conftest import REPO, checks_of, variant

HOSTILE = '''
import argparse

import numpy as np


def parse_args(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", default=42, type=int)
    return parser.parse_known_args(argv)[0]


def controller(states):
    """Push right when theta + 0.5 * theta_dot > 0, returned as "probabilities"."""
    states = np.asarray(states, dtype=np.float32)
    right = (states[:, 2] + 0.5 * states[:, 3] > 0).astype(np.float32)
    return np.stack([1 - right, right], axis=1)


class Agent:
    def __init__(self, observation_size, num_actions, args):
        pass

    def predict(self, states):
        return controller(states)


def train(agent, episodes, args):
    PLAY
'''
PLAY_NOTHING = "return  # trains on nothing: the controller is the policy"
PLAY_AND_IGNORE = """for _ in range(4):  # plays 40 episodes with the controller and learns nothing from them
        states, done = episodes.reset(10), np.zeros(10, dtype=bool)
        while not done.all():
            states, rewards, done = episodes.step(np.argmax(controller(states), axis=1))"""


def controller_return(transform, episodes=20):
    from grader.assignments import _reinforce

    predict = types.ModuleType("hostile")
    exec(HOSTILE.replace("PLAY", "pass"), predict.__dict__)
    return float(_reinforce.evaluate(predict.controller, transform, seed=123, episodes=episodes).mean())


@pytest.fixture
def key_that_scrambles(tmp_path, monkeypatch):
    """A grader key under which the relabelling of every training of `name` defeats the controller
    (a relabelling that happens to suit it has a probability of a few percent per training: the
    test must not depend on luck), set in the environment the grader is started with."""
    from grader import secret
    from grader.assignments import _reinforce

    def choose(name, path):
        indices = range(1, importlib.import_module(f"grader.assignments.{name}").TRAININGS + 1)
        for attempt in range(50):
            key = tmp_path / f"key-{attempt}"
            key.write_text(f"{attempt:064x}")
            monkeypatch.setenv("GRADER_KEY_FILE", str(key))
            ctx = types.SimpleNamespace(
                submission=path, source=path.read_bytes(), secret_rng=lambda *labels: secret.rng(42, *labels)
            )
            if all(controller_return(_reinforce.secret_transform(ctx, i)) < 300 for i in indices):
                return key
        raise AssertionError("no key found")

    return choose


def test_the_controller_solves_cartpole_without_the_relabelling():
    """The attack is real: in CartPole's own coordinates the controller balances the pole."""
    from grader.assignments import _reinforce

    assert controller_return(_reinforce.Identity()) >= 490


@pytest.mark.parametrize("name", ["reinforce", "reinforce_baseline"])
@pytest.mark.parametrize("play", [PLAY_NOTHING, PLAY_AND_IGNORE], ids=["plays-nothing", "plays-and-ignores"])
def test_a_hand_coded_controller_fails_the_training_checks(tmp_path, submission, key_that_scrambles, name, play):
    path = submission(HOSTILE.replace("PLAY", play), name=f"{name}.py")
    key_that_scrambles(name, path)
    result, checks, _ = checks_of(tmp_path, path, "--check", "training")
    check = checks["training: greedy mean return"]
    assert result.returncode == 1 and not check["passed"] and check["value"] == 0, check["message"]
    trainings = check["details"]["trainings"]
    assert len(trainings) >= 1
    assert check["message"].count("could not be measured") == len(trainings), check["message"]
    for training in trainings:  # it has no Agent.policy to rebuild: the grader cannot measure a controller
        assert training["greedy_mean"] is None and training["error"] == "exception", check["message"]
        assert training["training_episodes"] == (0 if play == PLAY_NOTHING else 40), check["message"]


def test_the_relabelling_is_secret_and_differs_per_training_and_submission(tmp_path, monkeypatch):
    """Drawn from the grader's key: another key, another training or another file content gives
    another relabelling; the same ones give the same (a grading is reproducible)."""
    from grader import secret
    from grader.assignments import _reinforce

    def relabelling(key, index, source):
        (tmp_path / "key").write_text(key)
        monkeypatch.setenv("GRADER_KEY_FILE", str(tmp_path / "key"))
        secret._key.cache_clear()
        ctx = types.SimpleNamespace(submission=None, source=source, secret_rng=lambda *l: secret.rng(42, *l))
        t = _reinforce.secret_transform(ctx, index)
        return tuple(t.order) + tuple(t.signs) + tuple(t.actions)

    key = "a" * 64
    drawn = {relabelling(key, 1, b"x")} | {relabelling(key, i, b"x" * i) for i in range(2, 30)}
    assert relabelling(key, 1, b"x") == relabelling(key, 1, b"x")
    assert len(drawn) > 20  # 24 orders x 16 signs x 2 action labellings
    assert relabelling("b" * 64, 1, b"x") != relabelling(key, 1, b"x") or relabelling("c" * 64, 1, b"x") != relabelling(
        key, 1, b"x"
    )
    assert relabelling(key, 2, b"x") != relabelling(key, 1, b"x") or relabelling(key, 3, b"x") != relabelling(
        key, 1, b"x"
    )


def test_prepare_loads_cartpole_in_the_parent():
    import subprocess
    import sys

    code = (
        "import sys; from grader.assignments import reinforce, reinforce_baseline as b;"
        "assert 'gymnasium.envs.classic_control.cartpole' not in sys.modules;"
        "reinforce.ASSIGNMENT.prepare(); assert b.ASSIGNMENT.prepare is reinforce.ASSIGNMENT.prepare;"
        "assert 'gymnasium.envs.classic_control.cartpole' in sys.modules"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_a_controller_that_knows_the_relabelling_balances_the_pole_in_training_and_evaluation():
    """The relabelling is one consistent change of coordinates (observations and actions alike,
    in the training episodes and in the evaluation): undoing it recovers the controller."""
    from grader.assignments import _reinforce

    transform = _reinforce.Transform(np.random.default_rng(7))
    theta, theta_dot = (int(np.flatnonzero(transform.order == i)[0]) for i in (2, 3))
    right = int(np.flatnonzero(transform.actions == 1)[0])  # the submission's label of "push right"

    def knowing(states):
        states = np.asarray(states)
        push = states[:, theta] * transform.signs[theta] + 0.5 * states[:, theta_dot] * transform.signs[theta_dot] > 0
        probs = np.zeros((len(states), 2), np.float32)
        probs[np.arange(len(states)), np.where(push, right, 1 - right)] = 1
        return probs

    assert _reinforce.evaluate(knowing, transform, seed=5, episodes=10).mean() >= 490
    episodes = _reinforce.TrainingEpisodes(np.random.default_rng(0), transform)
    states, done = episodes.reset(4), np.zeros(4, bool)
    while not done.all():
        states, rewards, done = episodes.step(np.argmax(knowing(states), axis=1))
    episodes.flush()
    assert episodes.curve == [500.0] * 4


# The attack of issue 15: no training; Agent.predict identifies the secret relabelling online from
# the first transition it sees (position' = position + 0.02 velocity finds the two pairs and their
# relative signs; the velocity that reacts more to the action is the pole's) and from then on plays
# theta + 0.5 theta_dot > 0 in those coordinates. Its Agent.policy is the reference's network, never
# trained. Under a grader that asks the submission's own predict() (whole batches, with state), it
# balances the pole; rebuilt and run by the grader it is an untrained network.
ONLINE = """

class Agent(Agent):
    def __init__(self, observation_size, num_actions, args):
        super().__init__(observation_size, num_actions, args)
        self.previous, self.rule = None, None

    def predict(self, states):
        states = np.asarray(states, np.float64)
        if self.rule is None and self.previous is not None and len(self.previous[0]) == len(states):
            self.rule = identify(*self.previous, states)
        if self.rule is None:
            actions = np.arange(len(states)) % 2  # a probing step: both actions, half the rows each
            self.previous = (states, actions)
        else:
            (theta, theta_dot, sign), lower = self.rule
            actions = np.where(states[:, theta] + 0.5 * sign * states[:, theta_dot] > 0, lower, 1 - lower)
        return np.eye(2, dtype=np.float32)[actions]


def identify(before, actions, after):
    pairs = []
    for p in range(4):
        for v in range(4):
            ratio = (after[:, p] - before[:, p]) / (0.02 * before[:, v] + 1e-12)
            if p != v and np.all(np.abs(np.abs(ratio) - 1) < 1e-2):
                pairs.append((p, v, float(np.sign(np.median(ratio)))))
    if len(pairs) != 2 or not np.any(actions == 0) or not np.any(actions == 1):
        return None
    change = after - before
    effect = [np.mean(change[actions == 1, v]) - np.mean(change[actions == 0, v]) for _, v, _ in pairs]
    pole = pairs[int(np.argmax(np.abs(effect)))]
    # the action that lowers sign * theta_dot' lowers theta + 0.5 theta_dot: play it when that sum is > 0
    return pole, int(pole[2] * effect[int(np.argmax(np.abs(effect)))] < 0)


def train(agent, episodes, args):
    return  # no training episode at all
"""


def online_attack(name):
    return (
        (REPO / "solutions" / f"{name}.py")
        .read_text()
        .replace('\nif __name__ == "__main__":', ONLINE + '\nif __name__ == "__main__":')
    )


@pytest.mark.parametrize("name", ["reinforce", "reinforce_baseline"])
def test_the_online_identification_attack_is_real(tmp_path, name):
    """Asked for whole batches with its own state, as a grader that ran the submission's predict()
    did, the attack balances the pole under secret relabellings without a training episode."""
    import sys

    from grader.assignments import _reinforce

    path = tmp_path / f"{name}_online.py"
    path.write_text(online_attack(name))
    sys.path.insert(0, str(REPO))
    module = types.ModuleType("online")
    module.__file__ = str(path)
    exec(compile(path.read_text(), str(path), "exec"), module.__dict__)
    args = module.parse_args(["--seed", "1"])
    for seed in range(3):
        agent = module.Agent(4, 2, args)
        transform = _reinforce.Transform(np.random.default_rng(seed))
        assert _reinforce.evaluate(agent.predict, transform, seed=seed, episodes=20).mean() >= 475


@pytest.mark.parametrize("name", ["reinforce", "reinforce_baseline"])
@pytest.mark.parametrize("attack", ["online", "fixed"])
def test_attacks_without_training_fail_the_training_check(tmp_path, submission, name, attack):
    """The online-identification controller and the reference's untrained network (0 training
    episodes: train() returns at once) both fail, as the submission's fault (exit status 1)."""
    text = (
        online_attack(name)
        if attack == "online"
        else variant(
            f"solutions/{name}.py",
            (
                "    rng = np.random.default_rng(args.seed)  # The random numbers of the sampled actions.\n",
                "    return  # no training episode at all\n",
            ),
        )
    )
    path = submission(text, name=f"{name}.py")
    result, checks, _ = checks_of(tmp_path, path, "--check", "training", "--check", "train:")
    check = checks["training: greedy mean return"]
    assert result.returncode == 1 and not check["passed"] and check["value"] == 0, check["message"]
    trainings = check["details"]["trainings"]
    for training in trainings:
        assert training["training_episodes"] == 0, check["message"]
        if attack == "fixed":  # the untrained network, measured: it fails (a random network's greedy
            # policy may balance a while: 13.7 and 162.2 seen, never near 475)
            assert not training["passed"] and training["greedy_mean"] < 475, check["message"]
    if attack == "online":  # its predict() is not its policy: the rebuilt policy answers the probes otherwise
        assert check["message"].count("does not reproduce the trained model") == len(trainings), check["message"]
    loop = checks["train: the steps played are the steps trained on"]
    assert not loop["passed"] and "without calling agent.train" in loop["message"], loop["message"]


def test_a_policy_with_a_lambda_layer_fails_naming_the_layer(tmp_path, submission):
    text = variant(
        "solutions/reinforce.py",
        (
            '        hidden = keras.layers.Dense(args.hidden_layer_size, activation="relu")(inputs)\n',
            '        scaled = keras.layers.Lambda(lambda x: 2.0 * x, name="doubling")(inputs)\n'
            '        hidden = keras.layers.Dense(args.hidden_layer_size, activation="relu")(scaled)\n',
        ),
        (
            "    rng = np.random.default_rng(args.seed)  # The random numbers of the sampled actions.\n",
            "    return  # the measuring is what this test is about\n",
        ),
    )
    result, checks, _ = checks_of(tmp_path, submission(text, name="reinforce.py"), "--check", "training")
    check = checks["training: greedy mean return"]
    assert result.returncode == 1 and not check["passed"], check["message"]
    assert "'doubling' (Lambda) is a Lambda layer" in check["message"], check["message"]
    assert "built-in layers" in check["message"], check["message"]
