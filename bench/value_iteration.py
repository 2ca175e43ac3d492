#!/usr/bin/env python3
"""Value iteration: the margins of the grader's thresholds, and the cost of its episodes.

1. The unit checks' random maps (--maps of them, as the grader draws them): sweeps to the
   stopping rule K, how much earlier the mean-change rule stops, the residual of the reference's
   answer (must be below theta) and of the mean rule's (must not be).
2. The graded maps: the reference (in-process) against the thresholds: residual / theta,
   |v - v*| / (theta / (1 - gamma)), the greedy policy's value loss, the optimal success
   probability within the time limit.
3. The success-rate threshold: --gradings gradings' worth of episodes of the reference's policy
   played as the grader plays them (spec.play, fresh seeds): how many fall below the threshold,
   the lowest rate in standard errors, and the exact binomial probability of falling below it.
4. Time of the grader's episodes (spec.play: one environment, one episode after the other)
   against gymnasium's synchronous vector environment (100 environments side by side, each
   playing the same number of episodes), and the ratio; and a whole grading of the reference
   (--no-timing skips it).

    python bench/value_iteration.py                                  # about a minute
    python bench/value_iteration.py --maps 2 --gradings 1 --no-timing   # smoke test
"""

import argparse
import importlib.util
import math
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
from gymnasium.envs.toy_text.frozen_lake import generate_random_map

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from grader.assignments import value_iteration as spec  # noqa: E402
from grader.assignments._stats import binomial_below  # noqa: E402
from grader.runner import grade  # noqa: E402


def load_solution():
    module_spec = importlib.util.spec_from_file_location("vi_solution", ROOT / "solutions/value_iteration.py")
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def play_vector(model, policy, episodes, seed, envs=100):
    """Successes in `episodes` episodes on gymnasium's synchronous vector environment: each of
    `envs` environments plays the same number of episodes (so short ones are not over-represented)."""
    per_env = math.ceil(episodes / envs)
    env = gym.make_vec(
        "FrozenLake-v1", num_envs=envs, vectorization_mode="sync", desc=model.map, is_slippery=model.slippery
    )
    states, _ = env.reset(seed=seed)
    finished, successes = np.zeros(envs, np.int64), np.zeros(envs, np.int64)
    while finished.min() < per_env:
        states, rewards, terminated, truncated, _ = env.step(policy[states])
        counted = (terminated | truncated) & (finished < per_env)
        successes += counted & (rewards == 1)
        finished += counted
    env.close()
    return int(successes.sum())


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--maps", type=int, default=200, help="random maps for the unit checks' figures")
    parser.add_argument("--gradings", type=int, default=40, help="gradings' worth of episodes per slippery map")
    parser.add_argument("--no-timing", action="store_true", help="skip part 4 (the timings)")
    args = parser.parse_args()
    solution = load_solution()

    gaps, reference, mean_rule = [], [], []
    for seed in range(args.maps):
        model = spec.Model(generate_random_map(size=spec.UNIT_SIZE, p=1 - spec.UNIT_HOLES, seed=seed), True)
        values = model.sweeps(spec.UNIT_GAMMA, spec.UNIT_THETA)
        changes = [np.abs(b - a) for a, b in zip(values, values[1:])]
        k_mean = next(i + 1 for i, c in enumerate(changes) if c.mean() < spec.UNIT_THETA)
        gaps.append((len(values) - 1, len(values) - 1 - k_mean))
        v = solution.value_iteration(model.P, spec.UNIT_GAMMA, spec.UNIT_THETA)
        reference.append(np.max(np.abs(model.backup(v, spec.UNIT_GAMMA) - v)) / spec.UNIT_THETA)
        early = values[k_mean]
        mean_rule.append(np.max(np.abs(model.backup(early, spec.UNIT_GAMMA) - early)) / spec.UNIT_THETA)
    gaps = np.array(gaps)
    print(
        f"unit checks, {args.maps} random {spec.UNIT_SIZE}x{spec.UNIT_SIZE} maps, gamma {spec.UNIT_GAMMA:g}, "
        f"theta {spec.UNIT_THETA:g}: sweeps K {gaps[:, 0].min()}..{gaps[:, 0].max()} (median "
        f"{np.median(gaps[:, 0]):.0f}); the mean-change rule stops {gaps[:, 1].min()}..{gaps[:, 1].max()} sweeps "
        f"earlier; residual / theta of the reference at most {max(reference):.2f} (passes below 1), of the "
        f"mean rule at least {min(mean_rule):.2f} (fails from 1)"
    )

    for name, slippery, gamma, theta in spec.MAPS:
        model = spec.Model(spec.MAP_NAMES[name], slippery)
        v = solution.value_iteration(model.P, gamma, theta)
        policy = solution.greedy_policy(model.P, v, gamma)
        optimal = model.optimal(gamma)
        residual = np.max(np.abs(model.backup(v, gamma) - v))
        error = np.max(np.abs(v - optimal))
        loss = np.max(optimal - model.policy_value(policy, gamma))
        print(
            f"{spec.map_name(name, slippery)} (gamma {gamma:g}, theta {theta:g}): residual / theta "
            f"{residual / theta:.2f}, |v - v*| / (theta / (1 - gamma)) {error / (theta / (1 - gamma)):.3f}, "
            f"value loss of the policy {loss:.1e}, success probability within {model.horizon} steps "
            f"{model.success_probability(policy):.4f}"
        )
        if not slippery:
            continue
        p = model.success_probability(policy)
        n = spec.EPISODES
        threshold = p - spec.rate_tolerance(p, n, z=spec.Z)
        seeds = np.random.default_rng(2026).integers(2**31, size=args.gradings)
        rates = np.array([spec.play(model, policy, n, seed=int(seed))[0] / n for seed in seeds])
        lowest = (rates.min() - p) / math.sqrt(p * (1 - p) / n)
        print(
            f"  {args.gradings} gradings of {n} episodes: rate {rates.mean():.4f} ± {rates.std():.4f}, "
            f"{np.count_nonzero(rates < threshold)} below the threshold {threshold:.4f}, lowest {lowest:+.2f} "
            f"standard errors; exact P(below) for a policy as good as the optimal one "
            f"{binomial_below(n, p, threshold * n):.1e}"
        )

    if args.no_timing:
        return
    model = spec.Model(spec.MAP_NAMES["8x8"], True)
    policy = solution.greedy_policy(model.P, model.optimal(0.99), 0.99)
    start = time.perf_counter()
    successes, _ = spec.play(model, policy, spec.EPISODES, seed=1)
    one_at_a_time = time.perf_counter() - start
    start = time.perf_counter()
    vector_successes = play_vector(model, policy, spec.EPISODES, seed=1)
    vectorized = time.perf_counter() - start
    print(
        f"{spec.EPISODES} episodes on 8x8 slippery: the grader's loop {one_at_a_time:.2f} s ({successes} "
        f"successes), gymnasium's synchronous vector environment (100 side by side) {vectorized:.2f} s "
        f"({vector_successes}); speed of the vector environment relative to the loop "
        f"{one_at_a_time / vectorized:.2f}"
    )

    start = time.perf_counter()
    report = grade(spec.ASSIGNMENT, ROOT / "solutions/value_iteration.py")
    print(f"whole grading of the reference: {time.perf_counter() - start:.2f} s (passed: {report.passed})")


if __name__ == "__main__":
    main()
