#!/usr/bin/env python3
"""What the sandbox costs: start-up of a child, and whole gradings, without and with bubblewrap.

    python bench/sandbox.py [--starts 10] [--tensorflow] [--full [--only NAME...]]

Start-up: a child is started (Python, numpy, the grader's child runtime, a tiny submission;
with --tensorflow also TensorFlow) and closed, `--starts` times in each mode, the modes
interleaved so that both see the same machine. --full also grades every reference solution in
solutions/ once in each mode (interleaved, one assignment at a time) and compares the totals.
Prints each figure's median (min..max) and the ratio bubblewrap / none; asserts nothing.
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from grader.assignments import all_assignments  # noqa: E402
from grader.policy import bubblewrap, sandbox_user  # noqa: E402
from grader.runner import grade  # noqa: E402
from grader.sandbox import Sandbox  # noqa: E402
from grader.spec import Limits  # noqa: E402

MODES = ("none", "bubblewrap")


def start_once(mode, tensorflow):
    t = time.perf_counter()
    with Sandbox(
        b"import numpy\ndef f():\n    return 1\n", "tiny", Limits(), tensorflow=tensorflow, isolation=mode
    ) as box:
        box.call("f")
    return time.perf_counter() - t


def summary(values):
    return f"{statistics.median(values):7.3f} s ({min(values):.3f}..{max(values):.3f})"


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--starts", type=int, default=10)
    p.add_argument("--tensorflow", action="store_true", help="start TensorFlow in the child too")
    p.add_argument("--full", action="store_true", help="also grade every reference solution in both modes")
    p.add_argument("--only", nargs="+", metavar="NAME", help="with --full: only these assignments")
    args = p.parse_args()
    path, reason = bubblewrap()
    if path is None:
        sys.exit(f"bench/sandbox.py: {reason}")
    user = sandbox_user()
    print(
        "bubblewrap runs as "
        + (f"uid {user[0]}, gid {user[1]} (the grader is root)" if user else "the grader's user")
        + ", with the seccomp policy"
    )
    times = {mode: [] for mode in MODES}
    start_once("bubblewrap", args.tensorflow)  # warm the page cache for both
    for _ in range(args.starts):
        for mode in MODES:
            times[mode].append(start_once(mode, args.tensorflow))
    what = "with TensorFlow" if args.tensorflow else "numpy only"
    print(f"start-up and close of a child ({what}), {args.starts} times each:")
    for mode in MODES:
        print(f"  {mode:10s} {summary(times[mode])}")
    ratio = statistics.median(times["bubblewrap"]) / statistics.median(times["none"])
    extra = statistics.median(times["bubblewrap"]) - statistics.median(times["none"])
    print(f"  ratio bubblewrap/none {ratio:.2f} (+{extra * 1000:.0f} ms per child)")
    if args.full:
        totals = {mode: 0.0 for mode in MODES}
        print("full gradings of the reference solutions:")
        for name, assignment in all_assignments().items():
            solution = REPO / "solutions" / f"{name}.py"
            if not solution.exists() or (args.only and name not in args.only):
                continue
            for mode in MODES:
                t = time.perf_counter()
                report = grade(assignment, solution, isolation=mode)
                seconds = time.perf_counter() - t
                totals[mode] += seconds
                print(f"  {name:20s} {mode:10s} {seconds:7.1f} s  {report.score:g}/{report.max_score:g}", flush=True)
        print(
            f"  total: none {totals['none']:.1f} s, bubblewrap {totals['bubblewrap']:.1f} s, "
            f"ratio {totals['bubblewrap'] / totals['none']:.3f}"
        )


if __name__ == "__main__":
    main()
