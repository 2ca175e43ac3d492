"""Command line: python -m grader SUBMISSION.py|DIR [options]. Exit status: 0 every check
passed, 1 a submission failed a check, 2 usage error (or requested device missing),
3 an error of the grader itself (with a traceback)."""
import argparse
import dataclasses
import json
import sys
from pathlib import Path

from .assignments import all_assignments
from .runner import GraderBug, grade
from .report import one_line, render, render_summary
from .sandbox import DeviceUnavailable

EXIT_PASSED, EXIT_FAILED, EXIT_USAGE, EXIT_BUG = 0, 1, 2, 3


class UsageError(Exception):
    pass


def parser(assignments):
    listing = "\n".join(f"  {name:20s} {a.title}" for name, a in assignments.items())
    p = argparse.ArgumentParser(
        prog="python -m grader", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Grade submissions in an isolated child process against the assignment's checks.",
        epilog=f"assignments (recognised from the file name NAME.py):\n{listing}\n\n"
               "exit status: 0 all checks passed, 1 a submission failed, 2 usage error, 3 grader error")
    p.add_argument("paths", nargs="+", metavar="SUBMISSION", help="a submission file, or a directory to search for them")
    p.add_argument("--assignment", choices=sorted(assignments), help="grade as this assignment (default: from the file name)")
    p.add_argument("--device", choices=("cpu", "gpu", "auto"), default="cpu",
                   help="cpu hides all GPUs; gpu requires one; auto uses one when present (default: cpu)")
    p.add_argument("--seed", type=int, default=42, help="the grader's random seed (default: 42)")
    p.add_argument("--json", metavar="PATH", help="write the machine-readable report here")
    p.add_argument("--quiet", action="store_true", help="print one line per submission")
    p.add_argument("--time-limit", type=float, metavar="S", help="seconds for each training run")
    p.add_argument("--call-time-limit", type=float, metavar="S", help="seconds for each other question")
    p.add_argument("--memory-limit", type=int, metavar="MB", help="resident memory of the submission, in MiB")
    p.add_argument("--threads", type=int, metavar="N", help="compute threads for the submission")
    p.add_argument("--plots", metavar="DIR", help="save plots (learning curves, samples) here")
    p.add_argument("--check", action="append", metavar="TEXT",
                   help="run only the checks whose name contains TEXT (repeatable), e.g. --check loss")
    return p


def find_submissions(paths, assignments, forced):
    """[(path, assignment)] for the given files and directories; UsageError if none."""
    found = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise UsageError(f"no such file or directory: {raw}")
        if path.is_dir():
            files = sorted(p for p in path.rglob("*.py") if not any(part.startswith((".", "__"))
                                                                    for part in p.relative_to(path).parts))
            matches = [(p, forced or p.stem) for p in files if (forced or p.stem) in assignments
                       and (forced is None or p.stem == forced)]
            if not matches:
                raise UsageError(f"no submission in {raw}: expected files named "
                                 + ", ".join(f"{n}.py" for n in assignments))
            found += matches
        else:
            if path.suffix != ".py":
                raise UsageError(f"{raw} is not a Python file")
            name = forced or path.stem
            if name not in assignments:
                raise UsageError(f"cannot tell the assignment of {raw}: name the file after one of "
                                 + ", ".join(f"{n}.py" for n in assignments) + " or pass --assignment")
            found.append((path, name))
    return found


def main(argv=None):
    assignments = all_assignments()
    args = parser(assignments).parse_args(argv)
    try:
        submissions = find_submissions(args.paths, assignments, args.assignment)
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    reports, status = [], EXIT_PASSED
    for path, name in submissions:
        assignment = assignments[name]
        if args.check:
            checks = tuple(c for c in assignment.checks if any(t in c.name for t in args.check))
            if not checks:
                print(f"error: no check of {name} matches {args.check}; its checks: "
                      + "; ".join(c.name for c in assignment.checks), file=sys.stderr)
                return EXIT_USAGE
            assignment = dataclasses.replace(assignment, checks=checks)
        limits = assignment.limits.override(train_time=args.time_limit, time=args.call_time_limit,
                                            memory_mb=args.memory_limit, threads=args.threads)
        if not args.quiet:
            print(f"grading {path} as {name} ...", file=sys.stderr, flush=True)
        progress = None if args.quiet else (lambda check: print(f"  {check}", file=sys.stderr, flush=True))
        try:
            report = grade(assignment, path, limits=limits, device=args.device, seed=args.seed,
                           plots_dir=args.plots, progress=progress)
        except DeviceUnavailable as error:
            print(f"error: {error}", file=sys.stderr)
            return EXIT_USAGE
        except GraderBug as bug:
            print(f"grader error (not the submission's fault) while grading {path}:\n{bug}", file=sys.stderr)
            status = EXIT_BUG
            continue
        reports.append(report)
        print(one_line(report) if args.quiet else render(report) + "\n", flush=True)
        if not report["passed"] and status == EXIT_PASSED:
            status = EXIT_FAILED
    if len(submissions) > 1 and not args.quiet:
        print(render_summary(reports))
    if args.json:
        data = reports[0] if len(submissions) == 1 and reports else {"schema_version": 1, "reports": reports}
        Path(args.json).write_text(json.dumps(data, indent=2) + "\n")
    return status
