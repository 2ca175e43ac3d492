#!/usr/bin/env python3
"""Benchmark the NAS reference solution (or a variant) over many gradings' worth of seeds.

    python bench/nas.py [--gradings 40] [--first_seed 0] [--variant reference|no_baseline|untrained]
        [--solution FILE] [--args "--learning_rate 0.02"] [--budget 60/20] [--all_trainings] [--jobs 2]
        [--out FILE.jsonl]
    python bench/nas.py --from FILE.jsonl

Every training is run the way the grader's search check runs it (grader/assignments/nas.py),
in this process but without the sandbox: the grader's `ServedEvaluations` (noisy development
accuracies of one seed, the budget), a random relabelling of the decisions and choices per
training (like the grader's secret one), the student's `train` called BUDGET / CHUNK times on
the same controller with the grader's arguments, and the greedy architecture decoded by the
grader's own `ControllerWeights` from the controller's weights, ranked by mean development
accuracy. Grading g (grader seed `first_seed + g`) trains with the seeds the grader would use
for its trainings 1, 2, (3); like the grader it stops once the rule (REQUIRED of at most
TRAININGS) is decided, unless `--all_trainings`.

`--variant no_baseline` trains the reference with the baseline held at 0 (REINFORCE without
baseline: `update_baseline` replaced by one that returns 0); `--variant untrained` never trains
(the greedy architecture of a fresh controller: what the rule must not pass).

Printed: one line per training (rank of the greedy architecture, evaluations, CPU seconds), the
per-training and per-grading pass rates under the spec's rule with the binomial false-failure
probability of a grading, where random search with the same budget lands, and the time the
table took to build (its header). Timings are reported, never asserted.
"""

import argparse
import hashlib
import importlib.util
import json
import os
import shlex
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def grader_rng(seed, *labels):
    """The grader's ctx.rng(*labels) for the grader seed `seed` (grader/runner.py)."""
    import numpy as np

    digest = hashlib.sha256(repr((seed,) + labels).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


EXTRA_ARGS = []  # --args: more options for the solution's parse_args (e.g. "--learning_rate 0.02")


def load_solution(path, variant):
    spec = importlib.util.spec_from_file_location("nas_solution", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if variant == "no_baseline":
        module.update_baseline = lambda baseline, returns, decay: 0.0
    elif variant == "untrained":
        module.train = lambda controller, evaluations, args: None
    return module


def train_once(solution, grader_seed, index):
    """One training as the grader's search_once runs it; a dict of what it measured."""
    import keras

    from grader.assignments import nas

    t = nas.table()
    seed = nas.training_seed(grader_seed, index)
    relabelling = nas.Relabelling(grader_rng(grader_seed, "bench-relabelling", index), t.num_decisions, t.num_choices)
    served = nas.ServedEvaluations(grader_rng(grader_seed, "search", index), relabelling, nas.BUDGET)
    keras.backend.clear_session()
    started = time.process_time()
    controller = solution.Controller(
        t.num_decisions, t.num_choices, solution.parse_args(nas.controller_argv(seed, nas.CHUNK) + EXTRA_ARGS)
    )

    class Evaluations:  # the child's stand-in calls the grader's service
        evaluate = staticmethod(served.evaluate)

    for chunk in range(nas.BUDGET // nas.CHUNK):
        args = solution.parse_args(nas.controller_argv(seed + 100_000 * chunk, nas.CHUNK) + EXTRA_ARGS)
        solution.train(controller, Evaluations, args)
    cpu = time.process_time() - started
    model = nas.ControllerWeights(controller.model.get_weights(), t.num_decisions, t.num_choices)
    greedy, _ = model.greedy()
    rank = int(nas.ranks()[t.index(relabelling.to_table(greedy[None])[0])])
    return {
        "grader_seed": grader_seed,
        "index": index,
        "rank": rank,
        "passed": rank <= nas.TOP_RANK,
        "evaluations": len(served.served),
        "cpu_s": round(cpu, 2),
    }


def grade(solution, grader_seed, all_trainings):
    from grader.assignments import nas

    results = []
    for index in range(1, nas.TRAININGS + 1):
        passed = sum(r["passed"] for r in results)
        if not all_trainings and (passed >= nas.REQUIRED or passed + nas.TRAININGS - index + 1 < nas.REQUIRED):
            break
        results.append(train_once(solution, grader_seed, index))
        r = results[-1]
        print(
            f"grading {grader_seed} training {index}: rank {r['rank']} ({'pass' if r['passed'] else 'FAIL'}), "
            f"{r['evaluations']} evaluations, {r['cpu_s']:.1f} s CPU",
            flush=True,
        )
    return results


def worker(job):
    path, variant, seeds, all_trainings, extra, budget = job
    EXTRA_ARGS[:] = extra
    set_budget(budget)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    solution = load_solution(path, variant)
    return [r for seed in seeds for r in grade(solution, seed, all_trainings)]


def set_budget(budget):
    """--budget B/C: try another budget B of evaluations, C per call of train (not the spec's)."""
    if budget:
        from grader.assignments import nas

        nas.BUDGET, nas.CHUNK = (int(x) for x in budget.split("/"))


def summarize(results):
    import numpy as np

    from grader.assignments import nas

    by_grading = {}
    for r in results:
        by_grading.setdefault(r["grader_seed"], []).append(r)
    trainings = len(results)
    p = sum(r["passed"] for r in results) / max(1, trainings)
    gradings = [sum(r["passed"] for r in rs[: nas.TRAININGS]) >= nas.REQUIRED for rs in by_grading.values()]
    false_fail = sum(__import__("math").comb(3, k) * p**k * (1 - p) ** (3 - k) for k in range(nas.REQUIRED))
    print(
        f"trainings: {sum(r['passed'] for r in results)} of {trainings} rank <= {nas.TOP_RANK} (top "
        f"{nas.TOP_PERCENT}% of {nas.SPACE_SIZE}): {100 * p:.1f}%; ranks median "
        f"{int(np.median([r['rank'] for r in results]))}, max {max(r['rank'] for r in results)}"
    )
    print(
        f"gradings: {sum(gradings)} of {len(gradings)} pass ({nas.REQUIRED} of at most {nas.TRAININGS}); "
        f"binomial with the per-training rate: a grading fails with probability {false_fail:.4f}"
        + (f" (1 in {1 / false_fail:.0f})" if false_fail > 0 else "")
    )
    cpu = sorted(r["cpu_s"] for r in results)
    print(f"CPU seconds per training: median {cpu[len(cpu) // 2]:.1f}, max {cpu[-1]:.1f}")
    ranks = nas.random_search(grader_rng(0, "random-search"))
    print(
        f"random search with the same budget ({nas.BUDGET} evaluations): median rank {int(np.median(ranks))}, in "
        f"the top {nas.TOP_RANK} in {100 * np.mean(ranks <= nas.TOP_RANK):.0f}% of 2000 simulated searches"
    )
    header = nas.table().header
    print(
        f"the table: {nas.SPACE_SIZE} architectures x {len(header['seeds'])} seeds built in "
        f"{header['build_seconds'] / 60:.1f} min with {header['build_jobs']} process(es) ({header['command']})"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gradings", type=int, default=40)
    parser.add_argument("--first_seed", type=int, default=0)
    parser.add_argument("--variant", choices=["reference", "no_baseline", "untrained"], default="reference")
    parser.add_argument("--solution", default=str(ROOT / "solutions" / "nas.py"))
    parser.add_argument("--args", default="", help="more options for the solution's parse_args")
    parser.add_argument("--budget", help="B/C: a budget of B evaluations, C per call of train (default: the spec's)")
    parser.add_argument("--all_trainings", action="store_true", help="run all trainings of every grading")
    parser.add_argument("--jobs", type=int, default=1, help="processes (one thread each)")
    parser.add_argument("--out", help="append one JSON line per training")
    parser.add_argument("--from", dest="source", help="summarize a --out file without training")
    args = parser.parse_args()
    set_budget(args.budget)
    if args.source:
        summarize([json.loads(line) for line in Path(args.source).read_text().splitlines() if line.strip()])
        return
    seeds = list(range(args.first_seed, args.first_seed + args.gradings))
    extra = shlex.split(args.args)
    jobs = [
        (args.solution, args.variant, seeds[k :: args.jobs], args.all_trainings, extra, args.budget)
        for k in range(args.jobs)
    ]
    if args.jobs > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            results = [r for part in pool.map(worker, jobs) for r in part]
    else:
        results = worker(jobs[0])
    if args.out:
        with open(args.out, "a") as out:
            out.writelines(json.dumps(r) + "\n" for r in results)
    print(
        f"{args.variant} ({args.solution}{' ' + args.args if args.args else ''}), grader seeds {seeds[0]}..{seeds[-1]}:"
    )
    summarize(results)


if __name__ == "__main__":
    main()
