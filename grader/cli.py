"""Command line (see README.md):

    python -m grader SUBMISSION.py|DIR... [options]   grade files, or a class: DIR/STUDENT/NAME.py
    python -m grader merge REPORTS_DIR... [options]   combine the reports of several runs (shards)

Exit status: 0 every check passed, 1 a submission failed, 2 usage error (or requested device
missing), 3 an error of the grader itself (with a traceback; the other results are kept),
130 interrupted (the finished results are kept)."""

import argparse
import contextlib
import json
import signal
import sys
import threading
import time
from pathlib import Path

from . import formats
from .assignments import all_assignments
from .batch import (  # noqa: F401 (the command's exit statuses, with EXIT_USAGE)
    EXIT_BUG,
    EXIT_FAILED,
    EXIT_PASSED,
    EXIT_USAGE,
    Settings,
    UsageError,
    discover,
    exit_status,
    grade_all,
    merge_reports,
    parse_shard,
    shard,
)
from .policy import bubblewrap
from .report import SCHEMA_VERSION, VERDICTS, one_line, render, render_class
from .sandbox import DeviceUnavailable

EXIT_INTERRUPTED = 130
DEFAULT_OUT = "reports"


def positive(text):
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return int(text)


def add_format_options(g):
    g.add_argument("--gradescope", metavar="PATH", help="write Gradescope's results.json here")
    g.add_argument("--junit", metavar="PATH", help="write JUnit XML here, for CI test reports")
    g.add_argument("--html", metavar="PATH", help="write an HTML page: the table of students and the plots")


def parser(assignments):
    listing = "\n".join(f"  {name:20s} {a.title}" for name, a in assignments.items())
    p = argparse.ArgumentParser(
        prog="python -m grader",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        usage="python -m grader SUBMISSION.py|.ipynb [options]   (or a folder: a class, see below)",
        description="Runs your file in a sandboxed child process and measures it with the grader's own\n"
        "environments, data and seeds; every check says what it found and, on failure, the likely bug.\n"
        "  python -m grader assignments/bandits.py\n"
        "  python -m grader assignments/vae.py --check loss --plots plots/",
        epilog=f"assignments (recognised from the file name NAME.py, or NAME.ipynb for a notebook):\n{listing}\n\n"
        "A folder is a class: DIR/STUDENT/.../NAME.py (the NAME.py files directly in DIR are the work of\n"
        "one student, named after DIR); results go to OUT/STUDENT/NAME.json as each one finishes and a\n"
        "table of students by assignment to OUT/summary.csv and the terminal. python -m grader merge\n"
        "REPORTS_DIR... combines the outputs of several runs (see python -m grader merge --help).\n\n"
        "python -m grader --self-test [--device gpu] checks what grading needs on this machine.\n\n"
        "exit status: 0 all checks passed, 1 a submission failed, 2 usage error, 3 grader error,\n"
        "130 interrupted",
    )
    p.add_argument(
        "paths",
        nargs="+",
        metavar="SUBMISSION",
        help="your file (NAME.py or NAME.ipynb), or a folder of students' files",
    )
    p.add_argument(
        "--check",
        action="append",
        metavar="TEXT",
        help="run only the checks whose name contains TEXT (repeatable), e.g. --check loss",
    )
    p.add_argument(
        "--plots",
        metavar="DIR",
        help="save plots (reward curves, learning curves, samples) here; for a class in DIR/STUDENT/",
    )
    p.add_argument(
        "--assignment", choices=sorted(assignments), help="grade as this assignment (default: from the file name)"
    )
    p.add_argument(
        "--device",
        choices=("cpu", "gpu", "auto"),
        default="cpu",
        help="cpu hides all GPUs; gpu requires one; auto uses one when present (default: cpu)",
    )
    p.add_argument("--json", metavar="PATH", help="write the machine-readable report(s) here")
    p.add_argument("--quiet", action="store_true", help="print one line per submission")
    g = p.add_argument_group("for instructors: grading a class, limits, other formats")
    g.add_argument("--jobs", type=positive, default=1, metavar="N", help="grade N submissions at a time (default: 1)")
    g.add_argument(
        "--out",
        metavar="DIR",
        help=f"one JSON report per submission and summary.csv here (default for a folder: {DEFAULT_OUT}/)",
    )
    g.add_argument(
        "--force",
        action="store_true",
        help="grade again the submissions whose report in --out is current (same content, same options)",
    )
    g.add_argument(
        "--shard",
        type=parse_shard,
        metavar="K/N",
        help="grade only the K-th of N parts (round-robin over the submissions sorted by assignment "
        "and student), for spreading a class over machines; then combine with merge",
    )
    add_format_options(g)
    g.add_argument("--seed", type=int, default=42, help="the grader's random seed (default: 42)")
    g.add_argument("--time-limit", type=float, metavar="S", help="CPU seconds for each training run")
    g.add_argument("--call-time-limit", type=float, metavar="S", help="CPU seconds for each other question")
    g.add_argument("--memory-limit", type=int, metavar="MB", help="memory of the submission's processes, in MiB")
    g.add_argument("--threads", type=int, metavar="N", help="compute threads for the submission")
    g.add_argument(
        "--no-sandbox",
        action="store_true",
        help="run submissions without the bubblewrap sandbox (a plain child process): only for "
        "machines without bubblewrap; needed to grade several submissions there",
    )
    return p


def merge_parser():
    p = argparse.ArgumentParser(
        prog="python -m grader merge",
        description="Combine the reports of several runs (e.g. the --shard K/N runs of a CI matrix) into one "
        "folder and one summary: the same files as a single run over the whole class.",
    )
    p.add_argument("folders", nargs="+", metavar="REPORTS_DIR", help="output folders (--out) of earlier runs")
    p.add_argument(
        "--out",
        default=DEFAULT_OUT,
        metavar="DIR",
        help=f"where the combined reports and summary.csv go (default: {DEFAULT_OUT}/)",
    )
    p.add_argument("--json", metavar="PATH", help="write the machine-readable reports here")
    p.add_argument("--quiet", action="store_true", help="print one line per report")
    add_format_options(p)
    return p


class Display:
    """What a run shows while grading. Files: each report in full (one line with --quiet). A
    class: a progress bar on stderr (a line per result when stderr is not a terminal, as in CI),
    then the table of students; with --quiet one line per result. Grader errors go to stderr."""

    def __init__(self, total, batch, quiet, jobs, stream=None):
        self.total, self.batch, self.quiet, self.jobs = total, batch, quiet, jobs
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.done, self.reused, self.counts = 0, 0, {status: 0 for status in VERDICTS}
        self.started = time.monotonic()
        if self.batch and not self.quiet and self.tty and total:
            self._bar()

    def check(self, item, name):
        """Called from the grading threads: the check starting (None: the submission starting)."""
        if not (self.batch or self.quiet or self.jobs > 1):
            print(
                f"grading {item.path} as {item.assignment} ..." if name is None else f"  {name}",
                file=self.stream,
                flush=True,
            )

    def result(self, report, reused):
        self.done += 1
        self.reused += reused
        self.counts[report.status] += 1
        if report.status == "error":
            self.clear()
            print(report.error, file=self.stream, flush=True)
        if self.quiet:
            print(one_line(report) + (" (reused)" if reused else ""), flush=True)
        elif not self.batch:
            if report.status != "error":
                print(render(report) + "\n", flush=True)
        elif self.tty:
            self._bar()
        else:
            print(
                f"[{self.done}/{self.total}] {one_line(report)}" + (" (reused)" if reused else ""),
                file=self.stream,
                flush=True,
            )

    def _bar(self, width=30):
        elapsed = time.monotonic() - self.started
        filled = round(width * self.done / self.total)
        left = f", ~{elapsed / self.done * (self.total - self.done):.0f} s left" if 0 < self.done < self.total else ""
        self.stream.write(
            f"\r\033[K[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total}: "
            f"{self.counts['passed']} passed, {self.counts['failed']} failed, {self.counts['error']} "
            f"grader errors, {self.reused} reused; {elapsed:.0f} s{left}" + ("\n" if self.done == self.total else "")
        )
        self.stream.flush()

    def clear(self):
        if self.batch and self.tty and not self.quiet and self.done < self.total:
            self.stream.write("\r\033[K")


def isolation(args, several):
    """ "bubblewrap", or "none" with --no-sandbox or (one file, with a warning) where bubblewrap
    cannot run; UsageError for several submissions without a sandbox unless --no-sandbox."""
    if args.no_sandbox:
        return "none"
    _, reason = bubblewrap()
    if reason is None:
        return "bubblewrap"
    if several:
        raise UsageError(
            f"{reason}: refusing to grade several submissions without a sandbox "
            "(install bubblewrap, or pass --no-sandbox to grade them in plain child processes)"
        )
    print(f'warning: {reason}; grading without a sandbox (the report says "sandbox": "none")', file=sys.stderr)
    return "none"


@contextlib.contextmanager
def terminate_as_interrupt():
    """SIGTERM (a CI job cancelled) stops the gradings like Ctrl-C: children killed, results kept."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def finish(reports, args, out, *, single=False, table=True):
    """The outputs of a run: summary.csv in `out`, the table, and the files asked for."""
    if out is not None:
        formats.write_text(Path(out) / "summary.csv", formats.summary_csv(reports))
    if table and not args.quiet:
        print(render_class(reports) + (f"; reports in {out}/" if out is not None else ""))
    if args.json:
        data = (
            reports[0].to_dict()
            if single and reports
            else {"schema_version": SCHEMA_VERSION, "reports": [r.to_dict() for r in reports]}
        )
        formats.write_text(args.json, json.dumps(data, indent=2) + "\n")
    if args.gradescope:
        formats.write_text(args.gradescope, json.dumps(formats.gradescope(reports), indent=2) + "\n")
    if args.junit:
        formats.write_text(args.junit, formats.junit(reports))
    if args.html:
        formats.write_text(args.html, formats.summary_html(reports, args.html))


PROBE = b"""
import ctypes, os
def probe(keyctl):
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    denied = libc.syscall(ctypes.c_long(keyctl), 0, 0, 0, 0, 0) == -1 and ctypes.get_errno()
    return {"uid_map": open("/proc/self/uid_map").read(), "keyctl": denied}
"""


def self_test(device):
    """Checks what grading needs on this machine, one line per item (a failing one with its fix);
    0 when all hold, else 1."""
    import errno
    import os
    import platform

    from . import secret
    from .limits import Cgroup
    from .policy import sandbox_user
    from .sandbox import Sandbox
    from .spec import Limits

    results = []

    def item(name, ok, detail, fix=""):
        results.append(ok)
        print(f"{'ok  ' if ok else 'FAIL'} {name}: {detail}" + ("" if ok else f"\n     fix: {fix}"), flush=True)

    path, reason = bubblewrap()
    item(
        "bubblewrap and user namespaces",
        path is not None,
        reason or f"{path} makes a sandbox",
        "apt-get install bubblewrap (as root, without sudo); allow unprivileged user namespaces "
        "(sysctl kernel.unprivileged_userns_clone=1, user.max_user_namespaces > 0; Ubuntu 24.04: "
        "kernel.apparmor_restrict_unprivileged_userns=0)",
    )
    group = Cgroup.create(Limits())
    item(
        "cgroups",
        group is not None,
        f"cgroup v{group.version} with memory and pids limits"
        if group
        else "none can be made: limits are held by polling only (a fork bomb may briefly exceed them)",
        "run as root, or in a delegated cgroup v2 subtree (systemd-run --user -p Delegate=yes --scope ...)",
    )
    if group is not None:
        group.remove()
    if path is not None:
        user = sandbox_user()
        try:
            with Sandbox(PROBE, "probe", Limits()) as box:
                uids = set()
                for pid in box.cgroup.pids() if box.cgroup else [box.process.pid]:
                    try:
                        status = Path(f"/proc/{pid}/status").read_text().splitlines()
                        uids |= {int(line.split()[1]) for line in status if line.startswith("Uid:")}
                    except OSError:
                        pass
                import pyseccomp

                got = box.call("probe", pyseccomp.resolve_syscall(pyseccomp.system_arch(), "keyctl"))
        except Exception as error:
            item("a sandbox starts", False, str(error).splitlines()[0][:300], "see the message above")
        else:
            outside = sorted(uids)
            item(
                "the sandbox's uid outside",
                bool(outside) and 0 not in outside and " 0 " not in f" {got['uid_map']} ",
                f"{', '.join(map(str, outside))} on the host"
                + (" (GRADER_SANDBOX_UID, the grader being root)" if user else " (the grader's own user)"),
                "set GRADER_SANDBOX_UID to an unprivileged uid that user namespaces are allowed for",
            )
            item(
                "seccomp",
                got["keyctl"] == errno.EPERM,
                "keyctl() fails with EPERM in the sandbox"
                if got["keyctl"] == errno.EPERM
                else f"keyctl() gave errno {got['keyctl']}",
                "a kernel with seccomp (CONFIG_SECCOMP_FILTER) and libseccomp (apt-get install libseccomp2)",
            )
    try:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        import datasets

        for name in datasets.NAMES:
            datasets.load_original(name)
        item("data sets", True, ", ".join(datasets.NAMES) + ": SHA-256 verified")
    except Exception as error:
        item(
            "data sets", False, str(error).splitlines()[0][:300], "./run setup (scripts/setup_data.sh .venv/bin/python)"
        )
    if device == "gpu":
        try:
            with Sandbox(b"", "gpu_probe", Limits(), device="gpu", tensorflow=True) as box:
                item("GPU", True, box.device)
        except Exception as error:
            item(
                "GPU", False, str(error).splitlines()[0][:300], "the NVIDIA driver and CUDA libraries TensorFlow needs"
            )
    try:
        key = secret.key_file()
        secret.key()
        info = os.stat(key)
        private = info.st_uid == os.geteuid() and info.st_mode & 0o077 == 0
        item(
            "the grader's key",
            private,
            f"{key}" + ("" if private else f" has mode {info.st_mode & 0o777:o}"),
            f"chmod 600 {key}",
        )
    except Exception as error:
        item("the grader's key", False, str(error)[:300], "set GRADER_KEY_FILE to a file of at least 32 characters")
    print(f"{sum(results)} of {len(results)} hold on {platform.node()}")
    return 0 if all(results) else 1


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["merge"]:
        return merge(argv[1:])
    if "--self-test" in argv:
        gpu = "--device=gpu" in argv or "--device" in argv and argv[argv.index("--device") + 1 :][:1] == ["gpu"]
        return self_test("gpu" if gpu else "cpu")
    assignments = all_assignments()
    args = parser(assignments).parse_args(argv)
    batch = any(Path(p).is_dir() for p in args.paths)
    out = Path(args.out) if args.out else (Path(DEFAULT_OUT) if batch else None)
    settings = Settings(
        device=args.device,
        seed=args.seed,
        checks=tuple(args.check or ()),
        out=out,
        limits=dict(
            train_time=args.time_limit, time=args.call_time_limit, memory_mb=args.memory_limit, threads=args.threads
        ),
        plots=Path(args.plots) if args.plots else None,
        plots_per_student=batch,
        force=args.force,
        jobs=args.jobs,
    )
    display = None
    try:
        items = discover(args.paths, assignments, args.assignment)
        settings.isolation = isolation(args, several=batch or len(items) > 1)
        if args.shard:
            items = shard(items, *args.shard)
        display = Display(len(items), batch, args.quiet, args.jobs)
        with terminate_as_interrupt():
            reports = grade_all(items, assignments, settings, on_result=display.result, on_check=display.check)
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except DeviceUnavailable as error:
        display.clear()
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(
            "\ninterrupted: the gradings in progress were stopped"
            + (
                f"; the finished results are in {out}/: run the same command again to grade the rest"
                if out is not None
                else ""
            ),
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    finish(reports, args, out, single=not batch and len(items) == 1, table=batch or len(reports) > 1)
    return exit_status(reports)


def merge(argv):
    args = merge_parser().parse_args(argv)
    out = Path(args.out)
    try:
        reports = merge_reports(args.folders, out)
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    if args.quiet:
        print("\n".join(one_line(report) for report in reports))
    finish(reports, args, out)
    return exit_status(reports)
