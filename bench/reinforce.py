#!/usr/bin/env python3
"""Benchmark the REINFORCE reference solutions (or a variant) over many gradings' worth of seeds.

    python bench/reinforce.py [--which reinforce|reinforce_baseline|both] [--gradings 20]
        [--first_seed 0] [--args "--hidden_layer_size 32"] [--solution FILE] [--out FILE.jsonl]
        [--rules 1/1,2/3] [--no_relabelling] [--naive]
    python bench/reinforce.py --which reinforce_baseline --from FILE.jsonl [--rules ...]

Every training runs in a fresh subprocess, one after the other, the way the grader trains:
the grader's own `TrainingEpisodes` (grader/assignments/_reinforce.py: budget, time limit,
episodes seeded from the grader's seed, every episode counted, greedy checks included), seen
through a random relabelling of CartPole drawn per training (like the grader's secret one:
features permuted and sign-flipped, actions swapped or not), then the grader's greedy
evaluation on 100 episodes under the same relabelling, measured as the grader measures: the
policy rebuilt from its Keras config and weights by grader/measured.py, each state on its own row. Grading g (grader seed `first_seed + g`)
trains with the seeds the grader would use for its trainings 1..n. The solution's `parse_args`
gets the grader's options after `--args`. The rule (threshold, budget, k of n trainings) and
the limits are read from the assignment's spec. Like the grader, a grading stops training once
the spec's rule is decided, unless `--rules` needs more trainings or `--all_trainings` is given.

Printed: one line per training (episodes handed out, training time, greedy mean return), then
the per-training pass rate and the per-grading pass rate under the spec's rule (and under
`--rules`), and the median/max training time. `--out` appends one JSON line per training, and
`--from` summarizes such a file without training. Timings are reported, never asserted.

With `--naive` (reinforce only), the first training's seed of every grading is also trained twice
more, on CartPole as it is, until the greedy mean return first reaches the threshold (checked every `--eval_every` episodes; evaluation time is
excluded from the clock): once with the vectorized solution and once with the straightforward
one-episode-at-a-time implementation of bench/reinforce_naive.py, with the same
hyperparameters; the script prints both times to threshold and their ratio naive/vectorized.
"""

import argparse
import importlib
import importlib.util
import json
import os
import pathlib
import shlex
import statistics
import subprocess
import sys
import time
import types

REPO = pathlib.Path(__file__).resolve().parents[1]
BENCH = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(REPO))


def load_solution(path):
    """Import a solution file by path."""
    path = pathlib.Path(path)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def rule_of(which):
    """(threshold, budget, k, n, limits) of the assignment's spec: k of n trainings must pass."""
    spec = importlib.import_module(f"grader.assignments.{which}")
    n = getattr(spec, "TRAININGS", None) or spec.SEEDS
    return spec.THRESHOLD, getattr(spec, "BUDGET", None), getattr(spec, "REQUIRED", n), n, spec.ASSIGNMENT.limits


class Stopped(Exception):
    """What the child raises in the submission when the grader's episodes service stops."""


class EpisodesProxy:
    """Stands in for the child's proxy of the grader's episodes service."""

    def __init__(self, episodes):
        self.episodes = episodes

    def reset(self, n):
        from grader.sandbox import Service

        try:
            return self.episodes.reset(n)
        except Service.Stop as stop:
            raise Stopped(str(stop)) from None

    def step(self, actions):
        return self.episodes.step(actions)


def worker_grade(options) -> dict:
    """One training the way the grader trains, in this (fresh) process."""
    threshold, budget, _, _, limits = rule_of(options.which)
    budget = options.budget if options.budget is not None else budget
    import numpy as np
    import tensorflow as tf

    tf.config.threading.set_inter_op_parallelism_threads(limits.threads)  # as the grader's child does
    tf.config.threading.set_intra_op_parallelism_threads(limits.threads)
    from grader.assignments import _reinforce as common
    from grader.runner import Context

    module = load_solution(options.solution)
    ctx = types.SimpleNamespace(seed=options.grader_seed)  # Context.rng needs only the seed
    index, seed = options.index, common.training_seed(options.grader_seed, options.index)
    args = module.parse_args(shlex.split(options.args) + common.agent_argv(seed))
    transform = (
        common.Identity()
        if options.no_relabelling
        else common.Transform(np.random.default_rng([options.grader_seed, options.index, 20261127]))
    )
    episodes = common.TrainingEpisodes(
        Context.rng(ctx, "training", index), transform, budget=budget, time_limit=limits.train_time
    )
    agent = module.Agent(common.OBSERVATION_SIZE, common.NUM_ACTIONS, args)
    start = time.perf_counter()
    try:
        module.train(agent, EpisodesProxy(episodes), args)
    except Stopped:
        pass
    train_s = time.perf_counter() - start
    episodes.flush()
    from grader import measured  # the grader's measuring: the policy rebuilt from its config and weights

    policy = measured.rebuild(agent.policy.to_json(), agent.policy.get_weights())
    returns = common.evaluate(
        lambda states: measured.predict(policy, states),
        transform,
        seed=int(Context.rng(ctx, "evaluation", index).integers(2**31)),
    )
    return {
        "grader_seed": options.grader_seed,
        "index": index,
        "seed": seed,
        "episodes": episodes.started,
        "time": train_s,
        "mean_return": float(returns.mean()),
        "stop_reason": episodes.stop_reason,
        "curve_last_20": float(np.mean(episodes.curve[-20:])) if episodes.curve else None,
    }


class ThresholdReached(Exception):
    pass


class CountingEpisodes:
    """A proxy of the solution's `Episodes` counting the episodes handed out.

    `on_reset(used)` is called at every `reset` before the new episodes are started.
    """

    def __init__(self, episodes, on_reset=None):
        self.episodes, self.on_reset, self.used = episodes, on_reset, 0

    def reset(self, n):
        if self.on_reset is not None:
            self.on_reset(self.used)
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


def worker_naive(options) -> dict:
    """Time to threshold of one seed, vectorized or naive, in this (fresh) process."""
    threshold, _, _, _, limits = rule_of(options.which)
    import tensorflow as tf

    tf.config.threading.set_inter_op_parallelism_threads(limits.threads)
    tf.config.threading.set_intra_op_parallelism_threads(limits.threads)
    module = load_solution(options.solution)
    args = module.parse_args(shlex.split(options.args) + ["--seed", str(options.grader_seed)])
    evaluation_seed = 1_000_000 + options.grader_seed

    def greedy_mean(agent):
        return float(module.evaluate(agent, module.Episodes(evaluation_seed), 100).mean())

    result = {"mode": options.mode, "seed": options.grader_seed}
    clock, checked = None, {"next": options.eval_every, "evaluation_time": 0.0}

    def check(used, agent):  # evaluate every `eval_every` episodes, with the clock paused
        if used < checked["next"]:
            return
        clock.pause()
        start = time.perf_counter()
        mean_return = greedy_mean(agent)
        checked["evaluation_time"] += time.perf_counter() - start
        checked["next"] = used + options.eval_every
        if mean_return >= threshold:
            raise ThresholdReached(used)
        clock.resume()

    args.episodes = options.max_episodes  # Train until the threshold (without early stopping).
    args.target_return = args.check_return = float("inf")  # no early stop: the clock decides
    try:
        if options.mode == "vectorized":
            agent = module.Agent(4, 2, args)
            episodes = CountingEpisodes(module.Episodes(options.grader_seed), on_reset=lambda used: check(used, agent))
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


def run_worker(options, which, mode, grader_seed, index=0):
    """Run one worker in a fresh subprocess; a run exceeding the time limit is killed."""
    *_, limits = rule_of(which)
    command = [
        sys.executable,
        __file__,
        "--_worker",
        "--which",
        which,
        "--mode",
        mode,
        "--grader_seed",
        str(grader_seed),
        "--index",
        str(index),
        "--args",
        options.args,
        "--solution",
        str(options.solution or REPO / "solutions" / f"{which}.py"),
        "--eval_every",
        str(options.eval_every),
        "--max_episodes",
        str(options.max_episodes),
    ]
    if options.budget is not None:
        command += ["--budget", str(options.budget)]
    if options.no_relabelling:
        command += ["--no_relabelling"]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1", CUDA_VISIBLE_DEVICES="-1")
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):  # as the grader's child
        env[name] = str(limits.threads)
    timeout = limits.train_time + 180 if mode == "grade" else options.naive_time_limit
    try:
        completed = subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"grader_seed": grader_seed, "index": index, "timeout": True}
    lines = [line for line in completed.stdout.splitlines() if line.startswith("RESULT ")]
    if completed.returncode != 0 or not lines:
        print(completed.stdout[-2000:], completed.stderr[-4000:], file=sys.stderr)
        return {"grader_seed": grader_seed, "index": index, "error": completed.returncode}
    if options.verbose:
        print("\n".join(line for line in completed.stdout.splitlines() if not line.startswith("RESULT ")))
    return json.loads(lines[-1][len("RESULT ") :])


def fmt(value, spec=".1f"):
    return "-" if value is None else format(value, spec)


def parse_rule(text):
    k, n = text.split("/")
    return int(k), int(n)


def decided(grading, k, n):
    """Whether a grading ({training index: passed}) passes the rule k of n, reading its trainings
    in order and stopping, like the grader, once the outcome is known; None if it is not known."""
    passed = 0
    for index in range(1, n + 1):
        if passed >= k or passed + n - index + 1 < k:
            break
        if index not in grading:
            return None
        passed += grading[index]
    return passed >= k


def summarize(options, which, results):
    """Prints the pass rates of `results` (one dict per training) under the spec's rule and --rules."""
    threshold, budget, k, n, limits = rule_of(which)
    threshold = options.threshold if options.threshold is not None else threshold
    budget = options.budget if options.budget is not None else budget

    def passed(r):
        return r.get("mean_return", -1) >= threshold and r.get("time", 1e9) <= limits.train_time + 60

    trainings = [r for r in results if r.get("index", 0) >= 1]
    ok = sum(passed(r) for r in trainings)
    print(
        f"{which}: per training {ok}/{len(trainings)} pass ({100 * ok / max(1, len(trainings)):.1f}%) "
        f"[greedy mean >= {threshold}{f', budget {budget} episodes' if budget else ''}, "
        f"{limits.train_time:g} s]"
    )
    by_grading = {}
    for r in trainings:
        by_grading.setdefault(r["grader_seed"], {})[r["index"]] = passed(r)
    rules = [(k, n, "the spec's rule")] + [(*parse_rule(t), "") for t in options.rules.split(",") if t]
    for rk, rn, label in rules:
        outcomes = [o for o in (decided(g, rk, rn) for g in by_grading.values()) if o is not None]
        good = sum(outcomes)
        print(
            f"{which}: per grading, {rk} of {rn} trainings{f' ({label})' if label else ''}: "
            f"{good}/{len(outcomes)} gradings pass ({100 * good / max(1, len(outcomes)):.1f}%)"
        )
    times = [r["time"] for r in trainings if "time" in r]
    episodes = [r["episodes"] for r in trainings if "episodes" in r]
    if times:
        print(
            f"{which}: training time median {statistics.median(times):.1f} s, max {max(times):.1f} s; "
            f"episodes median {statistics.median(episodes):.0f}, max {max(episodes)}"
        )
    print(flush=True)


def bench(options, which: str) -> None:
    threshold, budget, k, n, limits = rule_of(which)
    budget = options.budget if options.budget is not None else budget
    threshold = options.threshold if options.threshold is not None else threshold
    trainings = max([n] + [parse_rule(t)[1] for t in options.rules.split(",") if t])
    print(
        f"== {which}: {options.gradings} gradings (grader seeds {options.first_seed}..."
        f"{options.first_seed + options.gradings - 1}) x {trainings} trainings, solution "
        f"{options.solution or f'solutions/{which}.py'}, args '{options.args}', budget {budget}, "
        f"time limit {limits.train_time:g} s, threshold {threshold}, rule {k} of {n}"
        f"{', CartPole not relabelled' if options.no_relabelling else ''}",
        flush=True,
    )
    results, naive = [], options.naive and which == "reinforce"
    ratios, naive_times, vectorized_times = [], [], []
    others = max([0] + [parse_rule(t)[1] for t in options.rules.split(",") if t])
    for grader_seed in range(options.first_seed, options.first_seed + options.gradings):
        passed = 0
        for index in range(1, trainings + 1):
            decided = passed >= k or passed + n - index + 1 < k
            if decided and index > others and not options.all_trainings:
                break  # like the grader: the spec's rule is decided, and no other rule needs it
            result = run_worker(options, which, "grade", grader_seed, index)
            passed += result.get("mean_return", -1) >= threshold
            result.update(which=which, args=options.args, solution=str(options.solution or ""))
            results.append(result)
            if options.out:
                with open(options.out, "a") as out:
                    out.write(json.dumps(result) + "\n")
            if "mean_return" not in result:
                print(f"grading {grader_seed:3d} training {index}: FAILED {result}", flush=True)
                continue
            line = (
                f"grading {grader_seed:3d} training {index} (seed {result['seed']}): episodes "
                f"{result['episodes']:5d}, train time {result['time']:6.1f} s, greedy mean return "
                f"{result['mean_return']:6.1f} {'pass' if result['mean_return'] >= threshold else 'FAIL'}"
                + (f" ({result['stop_reason']})" if result["stop_reason"] else "")
            )
            if naive and index == 1:
                vectorized = run_worker(options, which, "vectorized", grader_seed)
                plain = run_worker(options, which, "naive", grader_seed)
                vt, nt = vectorized.get("threshold_time"), plain.get("threshold_time")
                line += (
                    f" | to {threshold:g}: vectorized {fmt(vt)} s ({vectorized.get('threshold_episodes')} ep),"
                    f" naive {fmt(nt)} s ({plain.get('threshold_episodes')} ep)"
                )
                if vt and nt:
                    vectorized_times.append(vt)
                    naive_times.append(nt)
                    ratios.append(nt / vt)
                    line += f", ratio {nt / vt:.1f}"
            print(line, flush=True)
    summarize(options, which, results)
    if ratios:
        print(
            f"{which}: time to {threshold:g}: vectorized median {statistics.median(vectorized_times):.1f} s, "
            f"naive median {statistics.median(naive_times):.1f} s; ratio naive/vectorized median "
            f"{statistics.median(ratios):.1f} (min {min(ratios):.1f}, max {max(ratios):.1f}), "
            f"ratio of total times {sum(naive_times) / sum(vectorized_times):.1f}",
            flush=True,
        )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--gradings", default=10, type=int, help="Number of gradings (grader seeds).")
    parser.add_argument("--first_seed", default=0, type=int, help="First grader seed.")
    parser.add_argument("--which", default="both", choices=["reinforce", "reinforce_baseline", "both"])
    parser.add_argument("--solution", default=None, type=pathlib.Path, help="A solution file (default: the reference).")
    parser.add_argument("--args", default="", type=str, help="Extra options for the solution's parse_args.")
    parser.add_argument("--rules", default="", type=str, help="Other rules K/N to report, e.g. 1/1,2/3.")
    parser.add_argument("--out", default=None, type=str, help="Append one JSON line per training to this file.")
    parser.add_argument("--from", dest="from_file", default=None, type=str, help="Summarize this --out file.")
    parser.add_argument("--budget", default=None, type=int, help="Episode budget (default: the spec's).")
    parser.add_argument("--threshold", default=None, type=float, help="Threshold (default: the spec's).")
    parser.add_argument(
        "--all_trainings",
        action="store_true",
        help="Run every training of a grading, even once the spec's rule is decided.",
    )
    parser.add_argument("--no_relabelling", action="store_true", help="CartPole as it is (a control run).")
    parser.add_argument("--naive", action="store_true", help="Also measure the time to threshold vs. naive.")
    parser.add_argument("--eval_every", default=32, type=int, help="Episodes between time-to-threshold checks.")
    parser.add_argument("--max_episodes", default=10000, type=int, help="Episode limit of time-to-threshold runs.")
    parser.add_argument("--naive_time_limit", default=1800.0, type=float, help="Timeout of a time-to-threshold run.")
    parser.add_argument("--verbose", action="store_true", help="Show the training output.")
    # Internal: run a single training in this process.
    parser.add_argument("--_worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--grader_seed", default=0, type=int, help=argparse.SUPPRESS)
    parser.add_argument("--index", default=1, type=int, help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="grade", choices=["grade", "vectorized", "naive"], help=argparse.SUPPRESS)
    options = parser.parse_args(argv)

    if options._worker:
        result = worker_grade(options) if options.mode == "grade" else worker_naive(options)
        print("RESULT " + json.dumps(result), flush=True)
        return
    for which in ["reinforce", "reinforce_baseline"] if options.which == "both" else [options.which]:
        if options.from_file:
            results = [json.loads(line) for line in open(options.from_file) if line.strip()]
            summarize(options, which, [r for r in results if r.get("which") == which])
        else:
            bench(options, which)


if __name__ == "__main__":
    main()
