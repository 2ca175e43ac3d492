#!/usr/bin/env python3
"""Bandits: calibration of the grader's expected rewards, and the cost of isolation.

1. Runs the reference solution in-process over --episodes episodes per configuration and
   prints the mean and per-episode SD of the average reward: the EXPECTED table the spec
   grader/assignments/bandits.py reads from grader/assignments/bandits_constants.py, which
   `--write` rewrites (with REFERENCE_EPISODES).
2. Plays --gradings gradings' worth of testbed configurations (spec.EPISODES episodes each,
   fresh seeds) with the reference in-process and prints how many fall outside the spec's
   tolerance, and the largest deviation in standard errors: the measured side of the
   false-failure probability that the spec's summary computes.
3. Times the grader's testbed checks on the reference solution (child process, one round
   trip per question) against the same number of steps played in-process (baseline), and
   prints the ratio (--no-timing skips it).

    python bench/bandits.py                  # measure and print (about a minute)
    python bench/bandits.py --write          # ... and rewrite bandits_constants.py
    python bench/bandits.py --episodes 20 --gradings 1 --grading-episodes 20 --no-timing   # smoke test
"""

import argparse
import importlib.util
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from grader.assignments import bandits as spec  # noqa: E402
from grader.assignments._stats import write_constants  # noqa: E402
from grader.runner import grade  # noqa: E402


def load_solution():
    module_spec = importlib.util.spec_from_file_location("bandits_solution", ROOT / "solutions/bandits.py")
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def play(solution, epsilon, alpha, initial, episodes, seed):
    args = solution.parse_args(
        [
            f"--epsilon={epsilon}",
            f"--alpha={alpha}",
            f"--initial={initial}",
            f"--episodes={episodes}",
            f"--episode_length={spec.EPISODE_LENGTH}",
            f"--seed={seed}",
        ]
    )
    return solution.run(args)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--episodes", type=int, default=spec.REFERENCE_EPISODES)
    parser.add_argument("--gradings", type=int, default=40, help="gradings' worth of seeds for the pass rate")
    parser.add_argument(
        "--grading-episodes",
        type=int,
        default=spec.EPISODES,
        help="episodes per configuration in those gradings (the grader's: %(default)s)",
    )
    parser.add_argument("--no-timing", action="store_true", help="skip the timing of a whole grading")
    parser.add_argument(
        "--write",
        nargs="?",
        const=str(ROOT / "grader/assignments/bandits_constants.py"),
        metavar="PATH",
        help="write EXPECTED and REFERENCE_EPISODES for the spec (default: grader/assignments/bandits_constants.py)",
    )
    args = parser.parse_args()
    solution = load_solution()
    expected = {}
    for epsilon, alpha, initial in spec.EXPECTED:
        averages = play(solution, epsilon, alpha, initial, args.episodes, seed=2024)
        expected[(epsilon, alpha, initial)] = (round(float(averages.mean()), 4), round(float(averages.std()), 4))
    print(f"expected rewards of the reference over {args.episodes} episodes:")
    print("EXPECTED = {", *[f"    {config}: {value}," for config, value in expected.items()], "}", sep="\n")
    if args.write:
        path = write_constants(
            args.write, {"EXPECTED": expected, "REFERENCE_EPISODES": args.episodes}, by="bench/bandits.py"
        )
        print(f"wrote {path}")

    outside, largest = 0, 0.0
    for grading in range(args.gradings):
        for config in spec.EXPECTED:
            mean = play(solution, *config, args.grading_episodes, seed=10_000 + grading).mean()
            error = abs(mean - spec.EXPECTED[config][0])
            tolerance = spec.mean_tolerance(
                spec.EXPECTED[config][1], args.grading_episodes, z=spec.Z, reference_n=spec.REFERENCE_EPISODES
            )
            outside += error > tolerance
            largest = max(largest, error / tolerance * spec.Z)
    print(
        f"reference over {args.gradings} gradings ({len(spec.EXPECTED)} configurations each): "
        f"{outside} configuration(s) outside the tolerance, largest deviation {largest:.2f} standard errors "
        f"(tolerance {spec.Z:g}); computed false-failure probability per grading "
        f"{spec.false_failure_probability():.1e}"
    )
    if args.no_timing:
        return

    start = time.perf_counter()
    for config in spec.EXPECTED:
        play(solution, *config, spec.EPISODES, seed=1)
    baseline = time.perf_counter() - start
    start = time.perf_counter()
    report = grade(spec.ASSIGNMENT, ROOT / "solutions/bandits.py")
    graded = time.perf_counter() - start
    testbed = sum(c.duration_s for c in report.checks if c.name.startswith("testbed"))
    print(
        f"in-process play of the 3 configurations ({spec.EPISODES} episodes x {spec.EPISODE_LENGTH} steps): "
        f"{baseline:.2f} s"
    )
    print(f"grader testbed checks (isolated child): {testbed:.2f} s  ratio {testbed / baseline:.2f}x")
    print(f"whole grading: {graded:.2f} s (passed: {report.passed})")


if __name__ == "__main__":
    main()
