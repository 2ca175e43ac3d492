#!/usr/bin/env python3
"""Benchmark the REINFORCE reference solutions over many training seeds.

    python bench/reinforce.py [--seeds 20] [--which reinforce|reinforce_baseline|both] [--naive]

Every seed is trained in a fresh subprocess, one after the other, the way the grader does it:
the solution's `train` gets an `Episodes` proxy that stops handing out episodes after the
budget (and raises), then the policy is evaluated greedily on `--evaluate_episodes` fresh
episodes; a seed passes when the mean return is >= `--threshold` and training took at most
`--time_limit` seconds. For every seed the script prints the training episodes used, the
training wall time and the evaluation mean return, then the pass rate and the median/max
training time.

With `--naive` (reinforce only), every seed is also trained twice more until the greedy mean
return first reaches the threshold (checked every `--eval_every` episodes; evaluation time is
excluded from the clock): once with the vectorized solution and once with the straightforward
one-episode-at-a-time implementation of bench/reinforce_naive.py, with the same
hyperparameters; the script prints both times to threshold and their ratio naive/vectorized.
Timings are reported, never asserted.
"""
import argparse
import importlib.util
import json
import os
import pathlib
import shlex
import statistics
import subprocess
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
BENCH = pathlib.Path(__file__).resolve().parent

# Default episode budgets, as handed out by the grader (None: only the time limit).
BUDGETS = {"reinforce": None, "reinforce_baseline": 200}


def load_solution(name: str):
    """Import solutions/<name>.py by path."""
    spec = importlib.util.spec_from_file_location(name, REPO / "solutions" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class BudgetExhausted(Exception):
    pass


class ThresholdReached(Exception):
    pass


class CountingEpisodes:
    """A proxy of `Episodes` counting the episodes handed out and enforcing a budget.

    `on_reset(used)` is called at every `reset` before the new episodes are started.
    """

    def __init__(self, episodes, budget=None, on_reset=None):
        self.episodes, self.budget, self.on_reset, self.used = episodes, budget, on_reset, 0

    def reset(self, n):
        if self.on_reset is not None:
            self.on_reset(self.used)
        if self.budget is not None and self.used + n > self.budget:
            raise BudgetExhausted(f"the budget of {self.budget} episodes is used up")
        self.used += n
        return self.episodes.reset(n)

    def step(self, actions):
        return self.episodes.step(actions)


class Clock:
    """A stopwatch that can be paused (to exclude evaluations)."""

    def __init__(self):
        self.total, self.started = 0.0, time.perf_counter()

    def pause(self):
        self.total += time.perf_counter() - self.started

    def resume(self):
        self.started = time.perf_counter()

    def elapsed(self):
        return self.total + time.perf_counter() - self.started


def worker(options) -> dict:
    """Run one seed of one mode in this (fresh) process and return the measurements."""
    module = load_solution(options.which)
    args = module.parse_args(shlex.split(options.args) + ["--seed", str(options.seed)])
    import tensorflow as tf
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    evaluation_seed = 1_000_000 + options.seed

    def greedy_mean(agent):
        return float(module.evaluate(agent, module.Episodes(evaluation_seed), options.evaluate_episodes).mean())

    result = {"mode": options.mode, "seed": options.seed}
    if options.mode == "grade":
        budget = options.budget if options.budget is not None else BUDGETS[options.which]
        episodes = CountingEpisodes(module.Episodes(options.seed), budget)
        agent = module.Agent(4, 2, args)
        clock = Clock()
        try:
            module.train(agent, episodes, args)
        except BudgetExhausted:
            result["budget_exhausted"] = True
        result["time"] = clock.elapsed()
        result["episodes"] = episodes.used
        result["mean_return"] = greedy_mean(agent)
        return result

    # Time to threshold: evaluate every `eval_every` episodes, with the clock paused.
    clock, checked = None, {"next": options.eval_every, "evaluation_time": 0.0}

    def check(used, agent):
        if used < checked["next"]:
            return
        clock.pause()
        start = time.perf_counter()
        mean_return = greedy_mean(agent)
        checked["evaluation_time"] += time.perf_counter() - start
        checked["next"] = used + options.eval_every
        if mean_return >= options.threshold:
            raise ThresholdReached(used)
        clock.resume()

    args.episodes = options.max_episodes  # Train until the threshold (without early stopping).
    args.target_return = float("inf")
    try:
        if options.mode == "vectorized":
            agent = module.Agent(4, 2, args)
            episodes = CountingEpisodes(module.Episodes(options.seed), on_reset=lambda used: check(used, agent))
            clock = Clock()
            module.train(agent, episodes, args)
            check(float("inf"), agent)
        else:
            sys.path.insert(0, str(BENCH))
            from reinforce_naive import train_naive
            clock = Clock()
            train_naive(module, args, on_batch=check)
    except ThresholdReached as reached:
        result["threshold_time"] = clock.total
        result["threshold_episodes"] = reached.args[0]
    else:
        clock.pause()
        result["threshold_time"], result["threshold_episodes"] = None, None
    result["evaluation_time"] = checked["evaluation_time"]
    return result


def run_seed(options, which: str, seed: int, mode: str) -> dict:
    """Run `worker` in a fresh subprocess; a run exceeding the time limit is killed."""
    command = [sys.executable, __file__, "--_worker", "--which", which, "--seed", str(seed), "--mode", mode,
               "--args", options.args, "--evaluate_episodes", str(options.evaluate_episodes),
               "--threshold", str(options.threshold), "--eval_every", str(options.eval_every),
               "--max_episodes", str(options.max_episodes)]
    if options.budget is not None:
        command += ["--budget", str(options.budget)]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1")
    timeout = options.time_limit + 120 if mode == "grade" else options.naive_time_limit
    try:
        completed = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                   env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"mode": mode, "seed": seed, "timeout": True}
    lines = [line for line in completed.stdout.splitlines() if line.startswith("RESULT ")]
    if completed.returncode != 0 or not lines:
        print(completed.stdout[-2000:], completed.stderr[-4000:], file=sys.stderr)
        return {"mode": mode, "seed": seed, "error": completed.returncode}
    if options.verbose:
        print("\n".join(line for line in completed.stdout.splitlines() if not line.startswith("RESULT ")))
    return json.loads(lines[-1][len("RESULT "):])


def fmt(value, spec=".1f"):
    return "-" if value is None else format(value, spec)


def bench(options, which: str) -> None:
    budget = options.budget if options.budget is not None else BUDGETS[which]
    print(f"== {which}: {options.seeds} seeds from {options.first_seed}, args '{options.args}', "
          f"budget {budget}, time limit {options.time_limit} s, threshold {options.threshold}", flush=True)
    passed, times, ratios, naive_times, vectorized_times = 0, [], [], [], []
    naive = options.naive and which == "reinforce"
    for seed in range(options.first_seed, options.first_seed + options.seeds):
        result = run_seed(options, which, seed, "grade")
        if "mean_return" not in result:
            print(f"seed {seed:3d}: FAILED {result}", flush=True)
            continue
        ok = result["mean_return"] >= options.threshold and result["time"] <= options.time_limit
        passed += ok
        times.append(result["time"])
        line = (f"seed {seed:3d}: episodes {result['episodes']:5d}, train time {result['time']:6.1f} s, "
                f"evaluation mean return {result['mean_return']:6.1f} {'pass' if ok else 'FAIL'}"
                f"{' (budget exhausted)' if result.get('budget_exhausted') else ''}")
        if naive:
            vectorized = run_seed(options, which, seed, "vectorized")
            plain = run_seed(options, which, seed, "naive")
            vt, nt = vectorized.get("threshold_time"), plain.get("threshold_time")
            line += (f" | to {options.threshold:g}: vectorized {fmt(vt)} s ({vectorized.get('threshold_episodes')} ep),"
                     f" naive {fmt(nt)} s ({plain.get('threshold_episodes')} ep)")
            if vt and nt:
                vectorized_times.append(vt)
                naive_times.append(nt)
                ratios.append(nt / vt)
                line += f", ratio {nt / vt:.1f}"
        print(line, flush=True)
    print(f"{which}: passed {passed}/{options.seeds} (mean return >= {options.threshold}"
          f"{f', budget {budget} episodes' if budget else ''}, train time <= {options.time_limit} s)")
    if times:
        print(f"{which}: train time median {statistics.median(times):.1f} s, max {max(times):.1f} s")
    if ratios:
        print(f"{which}: time to {options.threshold:g}: vectorized median {statistics.median(vectorized_times):.1f} s, "
              f"naive median {statistics.median(naive_times):.1f} s; ratio naive/vectorized median "
              f"{statistics.median(ratios):.1f} (min {min(ratios):.1f}, max {max(ratios):.1f}), "
              f"ratio of total times {sum(naive_times) / sum(vectorized_times):.1f}")
    print(flush=True)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default=20, type=int, help="Number of training seeds.")
    parser.add_argument("--first_seed", default=0, type=int, help="First training seed.")
    parser.add_argument("--which", default="both", choices=["reinforce", "reinforce_baseline", "both"])
    parser.add_argument("--naive", action="store_true", help="Also measure the time to threshold vs. naive.")
    parser.add_argument("--args", default="", type=str, help="Extra options for the solution's parse_args.")
    parser.add_argument("--budget", default=None, type=int, help="Episode budget (default: 200 for the baseline).")
    parser.add_argument("--threshold", default=490.0, type=float, help="Pass threshold of the greedy mean return.")
    parser.add_argument("--time_limit", default=300.0, type=float, help="Training time limit in seconds.")
    parser.add_argument("--evaluate_episodes", default=100, type=int, help="Greedy evaluation episodes.")
    parser.add_argument("--eval_every", default=32, type=int, help="Episodes between time-to-threshold checks.")
    parser.add_argument("--max_episodes", default=10000, type=int, help="Episode limit of time-to-threshold runs.")
    parser.add_argument("--naive_time_limit", default=1800.0, type=float, help="Timeout of a time-to-threshold run.")
    parser.add_argument("--verbose", action="store_true", help="Show the training output.")
    # Internal: run a single seed in this process.
    parser.add_argument("--_worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--seed", default=0, type=int, help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="grade", choices=["grade", "vectorized", "naive"], help=argparse.SUPPRESS)
    options = parser.parse_args(argv)

    if options._worker:
        result = worker(options)
        print("RESULT " + json.dumps(result), flush=True)
        return
    for which in ["reinforce", "reinforce_baseline"] if options.which == "both" else [options.which]:
        bench(options, which)


if __name__ == "__main__":
    main()
