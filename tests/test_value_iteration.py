"""Value iteration: the reference passes, the template fails naming its TODOs, every TODO and
every typical bug fails a check that names it, the grader's model agrees with real episodes,
and the plot shows the values and the policy."""

import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO, checks_of, variant, with_one_todo
from grader.assignments import value_iteration as spec

SOLUTION = "solutions/value_iteration.py"
TODOS = ["q_values", "sweep", "value_iteration", "greedy_policy"]
UNIT = {
    "q_values": "q_values: one-state Bellman backup",
    "sweep": "sweep: synchronous Bellman optimality backup",
    "value_iteration": "value_iteration: stopping rule",
    "greedy_policy": "greedy_policy: argmax of q",
}
MAP_CHECKS = [f"{spec.map_name(name, slippery)}: v* and greedy policy" for name, slippery, *_ in spec.MAPS]

MASK = "(0.0 if terminated else gamma * v[next_state])"
OUTCOMES = "        for probability, next_state, reward, terminated in outcomes:\n"
SWEEP = "    return np.array([np.max(q_values(P, v, state, gamma)) for state in range(len(P))])\n"
IN_PLACE = "    for state in range(len(P)):\n        v[state] = np.max(q_values(P, v, state, gamma))\n    return v\n"
STOP = "        if np.max(np.abs(new_v - v)) < theta:\n"
GREEDY = "    return np.array([np.argmax(q_values(P, v, state, gamma)) for state in range(len(P))])\n"
INTENDED = (
    "    def aim(probability, next_state, reward, terminated):\n"
    "        return reward + (0.0 if terminated else gamma * v[next_state])\n"
    "    return np.array([np.argmax([aim(*P[s][a][len(P[s][a]) // 2]) for a in P[s]]) for s in P])\n"
)


def red_pixels(path):
    from PIL import Image

    pixels = np.asarray(Image.open(path).convert("RGB")).astype(int)
    return int(np.count_nonzero((pixels[..., 0] > 200) & (pixels[..., 1] < 80) & (pixels[..., 2] < 80)))


def test_reference_passes_and_plots_values_and_policy(tmp_path):
    result, checks, report = checks_of(tmp_path, SOLUTION, "--plots", tmp_path / "plots")
    assert result.returncode == 0 and report["passed"], result.stdout
    assert list(checks) == list(UNIT.values())[:2] + [UNIT["greedy_policy"], UNIT["value_iteration"]] + MAP_CHECKS
    for name in MAP_CHECKS:
        details = checks[name]["details"]
        assert details["residual"] < 1e-8 and details["value_loss"] <= 1e-9, details
        assert abs(details["success_probability"] - details["optimal_success_probability"]) < 1e-9
    plot = tmp_path / "plots" / "value_iteration-maps.png"
    assert checks[MAP_CHECKS[-1]]["details"]["plot"] == str(plot)
    from PIL import Image

    image = Image.open(plot)
    assert image.size[0] > 3 * image.size[1]  # one panel per map, side by side
    pixels = np.asarray(image.convert("RGB")).astype(int)
    black = np.all(pixels < 20, axis=-1).mean()  # the holes
    gold = np.all(np.abs(pixels - [255, 215, 0]) < 20, axis=-1).mean()  # the goals
    assert black > 0.01 and gold > 0.005
    assert red_pixels(plot) == 0  # every action of the reference is optimal


def test_a_policy_that_is_not_optimal_is_drawn_in_red(tmp_path):
    model = spec.Model(spec.MAP_NAMES["4x4"], slippery=True)
    v = model.optimal(0.99)
    policy = model.q(v, 0.99).argmin(axis=1)
    not_optimal = ~model.greedy_ok(policy, v, 0.99) & ~model.terminal
    path = spec.save(
        spec.draw_maps({"4x4 slippery": (model.desc, v, policy, not_optimal, 0.0, 0.99)}), tmp_path / "maps.png"
    )
    assert not_optimal.sum() >= 5 and red_pixels(path) > 100


def test_template_fails_naming_its_todos(tmp_path):
    result, checks, report = checks_of(tmp_path, "assignments/value_iteration.py")
    assert result.returncode == 1 and sorted(report["todos"]) == sorted(TODOS)
    for function, name in UNIT.items():
        assert checks[name]["message"] == f"unfinished TODO: {function}"
    for name in MAP_CHECKS:
        assert checks[name]["message"].startswith("the map needs value_iteration and greedy_policy: unfinished TODO")


@pytest.mark.parametrize("index", range(len(TODOS)))
def test_each_todo_left_unfinished_fails_checks_that_name_it(submission, tmp_path, index):
    """The reference with one function unfinished: that function's check fails naming it, a
    check of a function that calls it says so, the other unit checks pass."""
    text, name = with_one_todo("value_iteration", index)
    result, checks, report = checks_of(tmp_path, submission(text, name="value_iteration.py"))
    assert result.returncode == 1 and report["todos"] == [name]
    callers = {"q_values": {"sweep", "greedy_policy", "value_iteration"}, "sweep": {"value_iteration"}}
    for function, check in UNIT.items():
        message = checks[check]["message"]
        if function == name:
            assert not checks[check]["passed"] and message == f"unfinished TODO: {name}"
        elif function in callers.get(name, ()):
            assert not checks[check]["passed"] and message == (
                f"not run: needs {name}, which is unfinished (TODO); this check is about {function}"
            )
        else:
            assert checks[check]["passed"], checks[check]
    for check in MAP_CHECKS:
        assert not checks[check]["passed"] and checks[check]["message"].endswith(f"unfinished TODO: {name}")


# (edits, the function whose unit check must fail, the hint): also run under many grader keys by
# tests/test_keys.py
BUGS = [
    ([(MASK, "gamma * v[next_state]")], "q_values", "terminal states are not masked"),
    ([(MASK, "(0.0 if terminated else v[next_state])")], "q_values", "gamma is missing"),
    (
        [(OUTCOMES, "        outcomes = {s2: (p, s2, r, t) for p, s2, r, t in outcomes}.values()\n" + OUTCOMES)],
        "q_values",
        "a next state listed in several outcomes is counted once",
    ),
    ([("q[action] += probability * (", "q[action] += (")], "q_values", "not weighted by their probabilities"),
    ([(SWEEP, SWEEP.replace("np.max", "np.mean"))], "sweep", "a mean over the actions instead of the max"),
    ([(SWEEP, IN_PLACE)], "sweep", "updated in place during the sweep"),  # v arrives read-only
    ([(SWEEP, "    v = v.copy()\n" + IN_PLACE)], "sweep", "updated in place during the sweep (Gauss-Seidel)"),
    ([(STOP, STOP.replace("np.max", "np.mean"))], "value_iteration", "when the mean change fell below theta"),
    ([(STOP, "        v = new_v\n" + STOP)], "value_iteration", "the values are those after the first sweep"),
    (
        [
            ("    while True:\n", "    for _ in range(20):\n"),
            ("        v = new_v\n", "        v = new_v\n    return v\n"),
        ],
        "value_iteration",
        "stopping too early: the values are those after 20 sweeps",
    ),
    ([(GREEDY, GREEDY.replace("argmax", "argmin"))], "greedy_policy", "argmin instead of argmax"),
    ([(GREEDY, INTENDED)], "greedy_policy", "ignoring the transition probabilities"),
]


@pytest.mark.parametrize("edits, check, hint", BUGS)
def test_bugs_fail_their_named_check(submission, tmp_path, edits, check, hint):
    path = submission(variant(SOLUTION, *edits), name="value_iteration.py")
    result, checks, _ = checks_of(tmp_path, path, "--check", UNIT[check])
    assert result.returncode == 1 and list(checks) == [UNIT[check]]
    assert not checks[UNIT[check]]["passed"]
    assert "likely bug: " in checks[UNIT[check]]["message"] and hint in checks[UNIT[check]]["message"], checks[
        UNIT[check]
    ]["message"]


def test_bugs_that_change_the_results_fail_the_maps_naming_the_function(submission, tmp_path):
    """Stopping on the mean change passes the deterministic maps (no value changes after the last
    sweep) but fails the slippery ones, naming the stopping rule; an argmin policy fails every map
    naming greedy_policy, and earns the values' half of the points."""
    path = submission(variant(SOLUTION, (STOP, STOP.replace("np.max", "np.mean"))), name="value_iteration.py")
    _, checks, _ = checks_of(tmp_path, path, "--check", "FrozenLake")
    for name in MAP_CHECKS:
        assert checks[name]["passed"] == ("slippery" not in name), checks[name]
        if "slippery" in name:
            assert "likely bug: stopping too early" in checks[name]["message"]
    path = submission(variant(SOLUTION, (GREEDY, GREEDY.replace("argmax", "argmin"))), name="value_iteration.py")
    _, checks, _ = checks_of(tmp_path, path, "--check", "8x8")
    for name in MAP_CHECKS[2:]:
        assert not checks[name]["passed"] and checks[name]["score"] == 1.0
        assert "greedy_policy is not greedy" in checks[name]["message"]
        assert "argmin instead of argmax" in checks[name]["message"]


def test_P_arrives_as_gymnasium_makes_it(submission, tmp_path):
    """The transition model crosses to the child unchanged: dicts with int keys, lists of tuples."""
    check_types = (
        "    q = np.zeros(len(P[state]))\n",
        "    assert type(P) is dict and all(type(s) is int and type(P[s]) is dict for s in P)\n"
        "    assert all(type(o) is tuple and type(o[1]) is int and type(o[3]) is bool\n"
        "               for actions in P.values() for outcomes in actions.values() for o in outcomes)\n"
        "    q = np.zeros(len(P[state]))\n",
    )
    path = submission(variant(SOLUTION, check_types), name="value_iteration.py")
    result, checks, _ = checks_of(tmp_path, path, "--check", UNIT["q_values"])
    assert result.returncode == 0 and checks[UNIT["q_values"]]["passed"], checks


def test_stopping_rule_theory_on_random_maps():
    """What the value_iteration check relies on: the answer of a correct loop (v_K, or the v_(K-1)
    it was compared with) has a residual below theta, a loop stopping at k < K-1 has not."""
    from gymnasium.envs.toy_text.frozen_lake import generate_random_map

    for seed in range(5):
        model = spec.Model(generate_random_map(size=spec.UNIT_SIZE, seed=seed), slippery=True)
        values = model.sweeps(spec.UNIT_GAMMA, spec.UNIT_THETA)
        residual = [np.max(np.abs(model.backup(v, spec.UNIT_GAMMA) - v)) for v in values]
        assert residual[-1] < spec.UNIT_THETA and residual[-2] < spec.UNIT_THETA
        assert all(r >= spec.UNIT_THETA for r in residual[:-2])
        assert np.max(np.abs(values[-1] - model.optimal(spec.UNIT_GAMMA))) < spec.UNIT_THETA / (1 - spec.UNIT_GAMMA)


def test_the_grader_model_agrees_with_real_episodes():
    """The exact success probability within the time limit (the grader's model) matches the
    solution's own one-episode-at-a-time play on gymnasium's environment, within 5 standard errors."""
    import importlib.util

    import gymnasium as gym

    module_spec = importlib.util.spec_from_file_location("vi_solution", REPO / SOLUTION)
    solution = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(solution)
    model = spec.Model(spec.MAP_NAMES["8x8"], slippery=True)
    env = gym.make("FrozenLake-v1", map_name="8x8", is_slippery=True)
    v = solution.value_iteration(env.unwrapped.P, 0.99, 1e-8)
    policy = solution.greedy_policy(env.unwrapped.P, v, 0.99)
    assert np.max(np.abs(v - model.optimal(0.99))) < 1e-8 / 0.01
    p, episodes = model.success_probability(policy), 2000
    rate = solution.success_rate(env, policy, episodes, seed=7)
    assert abs(rate - p) < 5 * np.sqrt(p * (1 - p) / episodes), (rate, p)
    successes, played = spec.play(model, policy, episodes, seed=8)  # the grader's vectorized episodes
    assert played == episodes and abs(successes / played - p) < 5 * np.sqrt(p * (1 - p) / episodes)


def test_script_prints_the_values_and_the_policy_on_the_map():
    out = subprocess.run(
        [sys.executable, SOLUTION, "--map", "4x4", "--episodes", "20"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert len(out) == 5 and out[0].startswith("S 0.951 ↓") and "G 0.000 G" in out[3]
    assert out[4] == "The greedy policy reaches the goal in 100.0% of 20 episodes (at most 100 steps each)."
