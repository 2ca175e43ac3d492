#!/usr/bin/env python3
"""Bandits: calibration of the grader's expected rewards, and the cost of isolation.

1. Runs the reference solution in-process over --episodes episodes per configuration and
   prints the mean and per-episode SD of the average reward: the EXPECTED table of
   grader/assignments/bandits.py.
2. Plays --gradings gradings' worth of testbed configurations (spec.EPISODES episodes each,
   fresh seeds) with the reference in-process and prints how many fall outside the spec's
   tolerance, and the largest deviation in standard errors: the measured side of the
   false-failure probability that the spec's summary computes.
3. Times the grader's testbed checks on the reference solution (child process, one round
   trip per question) against the same number of steps played in-process (baseline), and
   prints the ratio.
"""
import argparse
import importlib.util
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from grader.assignments import bandits as spec  # noqa: E402
from grader.runner import grade  # noqa: E402


def load_solution():
    module_spec = importlib.util.spec_from_file_location("bandits_solution", ROOT / "solutions/bandits.py")
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def play(solution, epsilon, alpha, initial, episodes, seed):
    args = solution.parse_args([f"--epsilon={epsilon}", f"--alpha={alpha}", f"--initial={initial}",
                                f"--episodes={episodes}", f"--episode_length={spec.EPISODE_LENGTH}",
                                f"--seed={seed}"])
    return solution.run(args)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--episodes", type=int, default=spec.REFERENCE_EPISODES)
    parser.add_argument("--gradings", type=int, default=40, help="gradings' worth of seeds for the pass rate")
    args = parser.parse_args()
    solution = load_solution()
    print(f"expected rewards of the reference over {args.episodes} episodes:")
    print("EXPECTED = {")
    for epsilon, alpha, initial in spec.EXPECTED:
        averages = play(solution, epsilon, alpha, initial, args.episodes, seed=2024)
        print(f"    ({epsilon}, {alpha}, {initial}): ({averages.mean():.4f}, {averages.std():.4f}),")
    print("}")

    outside, largest = 0, 0.0
    for grading in range(args.gradings):
        for config in spec.EXPECTED:
            mean = play(solution, *config, spec.EPISODES, seed=10_000 + grading).mean()
            error = abs(mean - spec.EXPECTED[config][0])
            outside += error > spec.testbed_tolerance(config)
            largest = max(largest, error / spec.testbed_tolerance(config) * spec.Z)
    print(f"reference over {args.gradings} gradings ({len(spec.EXPECTED)} configurations each): "
          f"{outside} configuration(s) outside the tolerance, largest deviation {largest:.2f} standard errors "
          f"(tolerance {spec.Z:g}); computed false-failure probability per grading "
          f"{spec.false_failure_probability():.1e}")

    start = time.perf_counter()
    for config in spec.EXPECTED:
        play(solution, *config, spec.EPISODES, seed=1)
    baseline = time.perf_counter() - start
    start = time.perf_counter()
    report = grade(spec.ASSIGNMENT, ROOT / "solutions/bandits.py")
    graded = time.perf_counter() - start
    testbed = sum(c.duration_s for c in report.checks if c.name.startswith("testbed"))
    print(f"in-process play of the 3 configurations ({spec.EPISODES} episodes x {spec.EPISODE_LENGTH} steps): "
          f"{baseline:.2f} s")
    print(f"grader testbed checks (isolated child): {testbed:.2f} s  ratio {testbed / baseline:.2f}x")
    print(f"whole grading: {graded:.2f} s (passed: {report.passed})")


if __name__ == "__main__":
    main()
