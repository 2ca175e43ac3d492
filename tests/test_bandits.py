"""Bandits: an unfinished function is named by its checks only, named bugs fail the matching check,
the grading facts come from the spec's constants, and the grader's expected values are current.
What every assignment must satisfy is in tests/test_assignments.py (`-k bandits`)."""

import importlib.util
import sys

import numpy as np
import pytest

from conftest import REPO, checks_of, variant, with_one_todo
from grader.assignments import bandits as spec

SELECT = "        actions[explore] = self.rng.integers(self.bandits, size=np.count_nonzero(explore))\n"
UPDATE = "        step = 1 / self.counts[episodes, actions] if self.alpha == 0 else self.alpha\n"
INCREMENT = "        self.counts[episodes, actions] += 1\n"
MOVE = "        self.estimates[episodes, actions] += step * (rewards - self.estimates[episodes, actions])\n"


@pytest.mark.parametrize("index", [0, 1])
def test_each_todo_left_unfinished_fails_checks_that_name_it_and_only_it(submission, tmp_path, index):
    """The reference with one function unfinished: the checks of that function fail naming it, the
    checks of the other function pass (no check blames a function it is not about), and the
    testbed, which needs both, names it."""
    text, name = with_one_todo("bandits", index)
    result, checks, report = checks_of(tmp_path, submission(text))
    assert result.returncode == 1 and report["todos"] == [name]
    own = {"Agent.select_actions": "select:", "Agent.update": "update:"}
    for check, entry in checks.items():
        if check.startswith(own[name]):
            assert not entry["passed"] and f"unfinished TODO: {name}" in entry["message"], entry
        elif check.startswith("testbed"):
            assert not entry["passed"]
            assert entry["message"] == f"unfinished TODO: {name}"
        else:
            assert entry["passed"], entry


# (edit(s), --check, the check that must fail, the function it names, the hint): also run under many
# grader keys by tests/test_keys.py
BUGS = [
    (
        (UPDATE, UPDATE.replace("1 / self.counts[episodes, actions]", "1 / (self.counts[episodes, actions] + 1)")),
        "update",
        "update: sample averaging",
        "Agent.update",
        "the step size is 1/(N(a)+1)",
    ),
    (
        (UPDATE, "        step = 1\n"),
        "update",
        "update: constant step size",
        "Agent.update",
        "replaced by the last reward",
    ),
    (
        (UPDATE, "        step = 1 / self.counts[episodes, actions]\n"),
        "update",
        "update: constant step size",
        "Agent.update",
        "sample averaging (1/N) is used although alpha > 0",
    ),
    (
        (UPDATE, UPDATE.replace("else self.alpha", "else 1 - self.alpha")),
        "update",
        "update: constant step size",
        "Agent.update",
        "the step size is 1 - alpha = 0.75 instead of alpha",
    ),
    (
        (
            MOVE,
            MOVE.replace("rewards - self.estimates[episodes, actions]", "self.estimates[episodes, actions] - rewards"),
        ),
        "update",
        "update: sample averaging",
        "Agent.update",
        "the sign of R - Q is flipped",
    ),
    ((INCREMENT, "        pass\n"), "update", "update: sample averaging", "Agent.update", "NaN or infinity"),
    # the count incremented after the update: 1/0 at the first pull, or with the 0 avoided
    (
        ((INCREMENT, ""), (MOVE, MOVE + INCREMENT)),
        "update",
        "update: sample averaging",
        "Agent.update",
        "the count N(a) is incremented after the update",
    ),
    (
        (
            (INCREMENT, ""),
            (MOVE, MOVE + INCREMENT),
            ("1 / self.counts[episodes, actions]", "1 / np.maximum(self.counts[episodes, actions], 1)"),
        ),
        "update",
        "update: sample averaging",
        "Agent.update",
        "the count N(a) is incremented after the update",
    ),
    (
        (
            SELECT,
            SELECT.replace(
                "self.rng.integers(self.bandits,", "(actions[explore] + self.rng.integers(1, self.bandits,"
            ).replace("explore))", "explore))) % self.bandits"),
        ),
        "select",
        "select: epsilon exploration",
        "Agent.select_actions",
        "the random arm excludes the greedy one",
    ),
    (
        ("< self.epsilon", "> self.epsilon"),
        "select",
        "select: greedy",
        "Agent.select_actions",
        "must always pick the arm with the largest estimate",
    ),
    (
        ("< self.epsilon", "> self.epsilon"),
        "select",
        "select: epsilon exploration",
        "Agent.select_actions",
        "exploring with probability 1 - epsilon instead of epsilon",
    ),
    (
        ("np.argmax(self.estimates, axis=1)", "np.argmin(self.estimates, axis=1)"),
        "select",
        "select: greedy",
        "Agent.select_actions",
        "it never picks the largest estimate",
    ),
]


@pytest.mark.parametrize("edit, only, check, function, hint", BUGS)
def test_bugs_fail_the_matching_check_naming_the_function(submission, tmp_path, edit, only, check, function, hint):
    edits = edit if isinstance(edit[0], tuple) else (edit,)
    result, checks, _ = checks_of(tmp_path, submission(variant("solutions/bandits.py", *edits)), "--check", only)
    assert result.returncode == 1, result.stdout
    assert not checks[check]["passed"]
    assert function in checks[check]["message"] and hint in checks[check]["message"], checks[check]["message"]


def test_testbed_failures_point_at_the_failed_unit_checks_or_at_what_they_cannot_see(submission, tmp_path):
    # a failed unit check: the testbed points at it
    argmin = variant("solutions/bandits.py", ("np.argmax(self.estimates, axis=1)", "np.argmin(self.estimates, axis=1)"))
    _, checks, _ = checks_of(tmp_path, submission(argmin), "--check", "select: greedy", "--check", "averaging")
    testbed = checks["testbed: epsilon 0.1, averaging"]
    assert (
        not testbed["passed"]
        and "lower than the reference; see the failed unit check(s): select: greedy" in testbed["message"]
    ), testbed["message"]
    # the counts added to the estimates when choosing: invisible to the unit checks (the counts are 0)
    bonus = variant(
        "solutions/bandits.py", ("np.argmax(self.estimates, axis=1)", "np.argmax(self.estimates + self.counts, axis=1)")
    )
    _, checks, _ = checks_of(
        tmp_path, submission(bonus), "--check", "select", "--check", "update", "--check", "averaging"
    )
    assert all(checks[name]["passed"] for name in checks if not name.startswith("testbed"))
    testbed = checks["testbed: epsilon 0.1, averaging"]
    assert not testbed["passed"]
    assert "Agent.select_actions and Agent.update pass their unit checks" in testbed["message"], testbed["message"]


def test_the_grading_facts_come_from_the_spec():
    """The thresholds in the grading text are the spec's constants (tests/test_assignments.py
    checks that the template's paragraph is this text)."""
    text = spec.ASSIGNMENT.grading_text()
    for config, (expected, _) in spec.EXPECTED.items():
        assert f"{expected:.3f} ± {spec.testbed_tolerance(config):.3f}" in text
    assert f"{spec.EXPLORE_P:.1%} ± {spec.EXPLORE_TOLERANCE:.1%}" in text
    assert "A grading takes about" in text and "Limits: 30 CPU seconds per question" in text
    # hand-written copies of the numbers are gone from the spec's docstring
    assert "1.306" not in spec.__doc__ and "0.013" not in spec.__doc__


def test_the_plot_title_and_legend_fit_in_the_figure():
    curves = {config: np.linspace(0, mean, spec.EPISODE_LENGTH) for config, (mean, _) in spec.EXPECTED.items()}
    fig = spec.draw_average_reward(curves)
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    width, height = canvas.get_width_height()
    axes = fig.axes[0]
    for artist in (axes.title, axes.get_legend(), axes.xaxis.label, axes.yaxis.label):
        box = artist.get_window_extent(canvas.get_renderer())
        assert 0 <= box.x0 and box.x1 <= width and 0 <= box.y0 and box.y1 <= height, artist


def test_expected_rewards_match_a_fresh_measurement():
    """EXPECTED in the spec is the reference's mean: a new measurement over 4000 episodes agrees."""
    module_spec = importlib.util.spec_from_file_location("ref_bandits", REPO / "solutions/bandits.py")
    solution = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(solution)
    for (epsilon, alpha, initial), (expected, sd) in spec.EXPECTED.items():
        args = solution.parse_args(
            [f"--epsilon={epsilon}", f"--alpha={alpha}", f"--initial={initial}", "--episodes=4000", "--seed=7"]
        )
        averages = solution.run(args)
        assert abs(averages.std() - sd) < 0.05
        assert abs(averages.mean() - expected) < 5 * sd / np.sqrt(4000), (epsilon, alpha, initial)


def test_script_prints_mean_and_sd():
    import subprocess

    out = subprocess.run(
        [
            sys.executable,
            "solutions/bandits.py",
            "--epsilon",
            "0",
            "--initial",
            "1",
            "--alpha",
            "0.15",
            "--episodes",
            "50",
            "--episode_length",
            "200",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.startswith("Average reward per episode: ") and "±" in out and "over 50 episodes" in out
