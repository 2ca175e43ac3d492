"""Bandits: named bugs fail the matching check; the grader's expected values are current."""
import importlib.util

import numpy as np
import pytest

from conftest import REPO, run_grader, variant
from grader.assignments import bandits as spec

SELECT = "        actions[explore] = self.rng.integers(self.bandits, size=np.count_nonzero(explore))\n"
UPDATE = "        step = 1 / self.counts[episodes, actions] if self.alpha == 0 else self.alpha\n"


@pytest.mark.parametrize("edit, check, hint", [
    ((UPDATE, UPDATE.replace("1 / self.counts[episodes, actions]", "1 / (self.counts[episodes, actions] + 1)")),
     "update: sample averaging", "the step size is 1/(N(a)+1)"),
    ((UPDATE, "        step = 1\n"), "update: constant step size", "replaced by the last reward"),
    ((UPDATE, "        step = 1 / self.counts[episodes, actions]\n"), "update: constant step size",
     "sample averaging (1/N) is used although alpha > 0"),
    (("self.counts[episodes, actions] += 1\n", "pass\n"), "update: sample averaging", "NaN or infinity"),
    ((SELECT, SELECT.replace("self.rng.integers(self.bandits,", "(actions[explore] + self.rng.integers(1, self.bandits,")
      .replace("explore))", "explore))) % self.bandits")),
     "select: epsilon exploration", "the random arm excludes the greedy one"),
    (("< self.epsilon", "> self.epsilon"), "select: greedy", "must always pick the arm with the largest estimate"),
    (("np.argmax(self.estimates, axis=1)", "np.argmin(self.estimates, axis=1)"), "testbed: epsilon 0.1, averaging",
     "lower than the reference"),
])
def test_bugs_fail_the_matching_check(submission, tmp_path, edit, check, hint):
    import json
    path = submission(variant("solutions/bandits.py", edit))
    result = run_grader(path, "--quiet", "--json", tmp_path / "r.json")
    assert result.returncode == 1, result.stdout
    checks = {c["name"]: c for c in json.loads((tmp_path / "r.json").read_text())["checks"]}
    assert not checks[check]["passed"]
    assert hint in checks[check]["message"], checks[check]["message"]


def test_expected_rewards_match_a_fresh_measurement():
    """EXPECTED in the spec is the reference's mean: a new measurement over 4000 episodes agrees."""
    module_spec = importlib.util.spec_from_file_location("ref_bandits", REPO / "solutions/bandits.py")
    solution = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(solution)
    for (epsilon, alpha, initial), (expected, sd) in spec.EXPECTED.items():
        args = solution.parse_args([f"--epsilon={epsilon}", f"--alpha={alpha}", f"--initial={initial}",
                                    "--episodes=4000", "--seed=7"])
        averages = solution.run(args)
        assert abs(averages.std() - sd) < 0.05
        assert abs(averages.mean() - expected) < 5 * sd / np.sqrt(4000), (epsilon, alpha, initial)


def test_script_prints_mean_and_sd():
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "solutions/bandits.py", "--epsilon", "0", "--initial", "1",
                          "--alpha", "0.15", "--episodes", "50", "--episode_length", "200"],
                         cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert out.startswith("Average reward per episode: ") and "±" in out and "over 50 episodes" in out
