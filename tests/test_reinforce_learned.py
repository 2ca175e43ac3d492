"""Learned, not hand-coded: a hostile REINFORCE submission that returns a hand-written CartPole
controller as its "policy" fails both training checks, because the grader shows CartPole's
observations and actions through a secret relabelling (grader/assignments/_reinforce.py)."""
import importlib
import types

import numpy as np
import pytest

from conftest import REPO, checks_of

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
            ctx = types.SimpleNamespace(submission=path, source=path.read_bytes(),
                                        secret_rng=lambda *labels: secret.rng(42, *labels))
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
    for training in trainings:
        assert training["greedy_mean"] < 490, check["message"]
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
    assert relabelling("b" * 64, 1, b"x") != relabelling(key, 1, b"x") or relabelling("c" * 64, 1, b"x") != relabelling(key, 1, b"x")
    assert relabelling(key, 2, b"x") != relabelling(key, 1, b"x") or relabelling(key, 3, b"x") != relabelling(key, 1, b"x")


def test_prepare_loads_cartpole_in_the_parent():
    import subprocess
    import sys
    code = ("import sys; from grader.assignments import reinforce, reinforce_baseline as b;"
            "assert 'gymnasium.envs.classic_control.cartpole' not in sys.modules;"
            "reinforce.ASSIGNMENT.prepare(); assert b.ASSIGNMENT.prepare is reinforce.ASSIGNMENT.prepare;"
            "assert 'gymnasium.envs.classic_control.cartpole' in sys.modules")
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
