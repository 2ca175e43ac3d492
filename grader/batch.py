"""Grading many submissions: finding them, sharding them across machines, grading them in
parallel and keeping every result on disk as soon as it is known.

Students. Under a folder DIR the student is the first path component: DIR/alice/... is alice's
work at any depth, each file recognised as an assignment by its name (bandits.py, vae.py...).
The recognised files directly in DIR are the work of one student named after DIR (so
`python -m grader DIR/` of loose files grades them as one "student", named after DIR); a file given
on the command line is a student named by its path. Nothing recognised in a
student's folder, or two files for one assignment, is that student's failed result (error_kind
`missing` or `ambiguous`), with the reason. A class folder is data: a link (file or folder), a
device or a FIFO is refused as `not_a_file`, and a file is read from DIR folder by folder with
O_NOFOLLOW (`read_submission`); only a file named on the command line may be a link.

Reports. With an output folder OUT, each result is written to OUT/STUDENT/ASSIGNMENT.json
(atomically: a temporary file renamed into place) the moment it is known, so a batch that is
killed loses no finished result. A report is reused instead of grading again when its student,
assignment, `sha256` (the submission's content) and `options` (seed, device, limits, selected checks,
plots, sandbox, and a digest of the grader's own code) equal the current ones and its
`signature` (a keyed digest with the grader's secret key, grader/secret.py) shows that this
grader wrote it: a report forged or edited in OUT/ is graded again. `force` grades anyway.
A grader error is recorded too (status `error`) but never reused.

Sharding (K of N). The items are sorted by (assignment, student) and dealt round-robin: the
i-th (from 0) goes to shard i mod N + 1. That depends only on the names under DIR, so every
machine of a CI matrix computes the same split, and each shard gets its share of every
assignment (the slow ones included).

Parallelism. `jobs` threads, each driving one runner.grade() at a time; every grading runs its
submission in its own child process, so threads in the parent are enough.
"""

import argparse
import dataclasses
import errno
import functools
import hashlib
import json
import os
import re
import shutil
import stat
import threading
import traceback
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from . import secret
from .report import Report
from .runner import Cancel, Cancelled, GraderBug, grade, problem_report
from .sandbox import DeviceUnavailable

EXIT_PASSED, EXIT_FAILED, EXIT_USAGE, EXIT_BUG = 0, 1, 2, 3
SUFFIXES = (".py", ".ipynb")  # a submission: NAME.py, or a notebook NAME.ipynb (grader/notebook.py)
GRADER_DIR = Path(__file__).resolve().parent


class UsageError(Exception):
    pass


@dataclasses.dataclass(frozen=True)
class Item:
    """One thing to grade: a student's file for an assignment, or the reason there is none."""

    student: str
    assignment: str | None  # None: nothing recognised in the student's folder (and no --assignment)
    path: Path | None  # the file to grade; None when `problem` says why there is none
    problem: str | None = None
    kind: str | None = None  # error_kind of the problem: missing, ambiguous, not_a_file
    given: bool = False  # named on the command line: may be a link (the runner's own choice)
    base: Path | None = None  # the class folder DIR it was found in (read from there without following links)

    @property
    def key(self):
        return (self.assignment or "", self.student)


@dataclasses.dataclass
class Settings:
    """How to grade: the command line's options."""

    device: str = "cpu"
    seed: int = 42
    limits: dict = dataclasses.field(default_factory=dict)  # overrides of Limits fields
    checks: tuple = ()  # only the checks whose name contains one of these
    plots: Path | None = None
    plots_per_student: bool = False  # plots in PLOTS/STUDENT/ (a class) instead of PLOTS/
    out: Path | None = None
    force: bool = False
    jobs: int = 1
    isolation: str = "bubblewrap"  # or "none": no sandbox (see grader/sandbox.py)


# ------------------------------------------------------------------ finding submissions
def _hidden(parts):
    return any(part.startswith((".", "__")) for part in parts)


def discover(paths, assignments, forced=None):
    """The items for the given files and folders, sorted by key; UsageError if there are none."""
    expected = ", ".join(f"{n}.py" for n in ([forced] if forced else assignments)) + " (or NAME.ipynb, a notebook)"

    def recognised(path):
        """The assignment of a file by its name alone (a link or a folder so named too: refused later)."""
        if path.suffix not in SUFFIXES:
            return None
        if forced:
            return forced if path.stem == forced else None
        return path.stem if path.stem in assignments else None

    def files_of(folder):
        """Every entry under a student's folder that is not a folder, links never followed."""
        found = []
        for root, folders, files in os.walk(folder):  # (does not enter linked folders: they are listed)
            folders[:] = [f for f in folders if not _hidden([f]) and not os.path.islink(os.path.join(root, f))]
            found += [Path(root, f) for f in files if not _hidden([f])]
            found += [
                Path(root, f)
                for f in os.listdir(root)
                if not _hidden([f]) and os.path.islink(os.path.join(root, f)) and os.path.isdir(os.path.join(root, f))
            ]
        return sorted(found)

    candidates, empty = {}, []  # (assignment, student) -> [paths]; students' folders with nothing
    given = set()  # (student, assignment) of the files named on the command line (may be links)
    bases = {}  # path of a file found in a class folder: that folder
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise UsageError(f"no such file or directory: {raw}")
        if not path.is_dir():
            if path.suffix not in SUFFIXES:
                raise UsageError(f"{raw} is not a Python file (.py) or a notebook (.ipynb)")
            name = forced or path.stem
            if name not in assignments:
                raise UsageError(
                    f"cannot tell the assignment of {raw}: name the file after one of "
                    + ", ".join(f"{n}.py" for n in assignments)
                    + " or pass --assignment"
                )
            candidates.setdefault((name, str(raw)), []).append(path)
            given.add((str(raw), name))
            continue
        before = len(candidates) + len(empty)
        for entry in sorted(path.iterdir()):
            if _hidden([entry.name]):
                continue
            if entry.is_symlink() and entry.is_dir():  # a class folder is data: its links are not followed
                empty.append(
                    Item(
                        entry.name,
                        forced,
                        None,
                        f"{entry} is a symbolic link, not a folder: refused (links in a class folder are not followed)",
                        "not_a_file",
                    )
                )
            elif entry.is_dir():
                files = files_of(entry)
                found = [(recognised(p), p) for p in files]
                for name, p in found:
                    if name:
                        candidates.setdefault((name, entry.name), []).append(p)
                        bases[p] = path
                if not any(name for name, _ in found):
                    listing = ", ".join(str(p.relative_to(path)) for p in files[:8]) + (
                        " ..." if len(files) > 8 else ""
                    )
                    empty.append(
                        Item(
                            entry.name,
                            forced,
                            None,
                            f"no submission found: expected {expected}; the folder has {listing or 'no files'}",
                            "missing",
                        )
                    )
            elif recognised(entry):  # loose files in DIR: the work of one student, named after DIR
                candidates.setdefault((recognised(entry), path.resolve().name), []).append(entry)
                bases[entry] = path
        if len(candidates) + len(empty) == before:
            raise UsageError(f"no submission in {raw}: expected files named {expected}")
    items = empty
    for (name, student), found in candidates.items():
        found = sorted(set(found))
        if len(found) == 1 and (student, name) in given:
            items.append(Item(student, name, found[0], given=True))
        elif len(found) == 1 and regular(found[0]):
            items.append(Item(student, name, found[0], base=bases[found[0]]))
        elif len(found) == 1 and not regular(found[0]):
            items.append(
                Item(
                    student,
                    name,
                    None,
                    f"{found[0]} is {describe(found[0])}, not a file: refused "
                    "(a submission must be a regular file; links in a class folder are not followed)",
                    "not_a_file",
                )
            )
        else:
            items.append(
                Item(
                    student,
                    name,
                    None,
                    f"several files for {name}: " + ", ".join(map(str, found)) + "; keep only one",
                    "ambiguous",
                )
            )
    return sorted(items, key=lambda item: item.key)


def regular(path):
    """A regular file, not a link (lstat: the entry itself)."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def describe(path):
    try:
        mode = os.lstat(path).st_mode
    except OSError as error:
        return f"unreadable ({error.strerror})"
    return {
        stat.S_IFLNK: "a symbolic link",
        stat.S_IFDIR: "a folder",
        stat.S_IFIFO: "a FIFO",
        stat.S_IFCHR: "a device",
        stat.S_IFBLK: "a device",
        stat.S_IFSOCK: "a socket",
    }.get(stat.S_IFMT(mode), "not a file")


def read_submission(path, base=None, follow=False):
    """The bytes of a submission: opened without following a link (O_NOFOLLOW), for a file found
    in the class folder `base` folder by folder from there (a folder swapped for a link during the
    grading is refused too), and checked on the open descriptor to be a regular file (no gap
    between the check and the read). `follow`: a file the person running the grader named, which
    may be a link. OSError otherwise."""
    parts = Path(path).relative_to(base).parts if base is not None else [str(path)]
    folder = os.open(base, os.O_RDONLY | os.O_DIRECTORY) if base is not None else None
    try:
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            flags = os.O_RDONLY | os.O_NONBLOCK if last else os.O_RDONLY | os.O_DIRECTORY
            flags |= 0 if follow else os.O_NOFOLLOW
            try:
                fd = os.open(part, flags, dir_fd=folder)
            except OSError as error:
                if error.errno in (errno.ELOOP, errno.ENOTDIR) and not follow:
                    raise OSError(errno.ELOOP, "a symbolic link, not a file") from None
                raise
            if folder is not None:
                os.close(folder)
            folder = fd if not last else None
    finally:
        if folder is not None:
            os.close(folder)
    with os.fdopen(fd, "rb") as file:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, f"{describe(path)}, not a regular file")
        return file.read()


def parse_shard(text):
    """'K/N' -> (K, N), for argparse."""
    match = re.fullmatch(r"(\d+)/(\d+)", text)
    if not match or not 1 <= int(match[1]) <= int(match[2]):
        raise argparse.ArgumentTypeError(f"expected K/N with 1 <= K <= N (e.g. 2/4), got {text!r}")
    return int(match[1]), int(match[2])


def shard(items, k, n):
    """The K-th of N shards (K from 1): round-robin over the items sorted by (assignment, student)."""
    return [item for i, item in enumerate(sorted(items, key=lambda item: item.key)) if i % n == k - 1]


# ------------------------------------------------------------------ options and stored reports
def configure(assignment, settings):
    """The assignment restricted to the selected checks, and its limits with the overrides."""
    if settings.checks:
        checks = tuple(c for c in assignment.checks if any(text in c.name for text in settings.checks))
        if not checks:
            raise UsageError(
                f"no check of {assignment.name} matches {list(settings.checks)}; its checks: "
                + "; ".join(c.name for c in assignment.checks)
            )
        assignment = dataclasses.replace(assignment, checks=checks)
    return assignment, assignment.limits.override(**settings.limits)


@functools.cache
def grader_digest():
    """SHA-256 of the grader's own code: a changed grader grades again instead of reusing."""
    digest = hashlib.sha256()
    for path in sorted(GRADER_DIR.rglob("*.py")):
        if "__pycache__" not in path.parts:
            digest.update(str(path.relative_to(GRADER_DIR)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def grading_options(assignment, limits, settings, plots_dir):
    options = {
        "seed": settings.seed,
        "device": settings.device,
        "limits": dataclasses.asdict(limits),
        "checks": [c.name for c in assignment.checks],
        "plots": str(plots_dir) if plots_dir else None,
        "sandbox": settings.isolation,
        "grader": grader_digest(),
    }
    return json.loads(json.dumps(options))  # as it reads back from a report


def safe_name(student):
    """A student's name as one path component: the name itself when it is one already, else the
    name made safe plus "+" and a digest of the name ("+" is never in the former): two students
    never share a file, whatever their names (`bob` and `bob.`, `a b` and `a_b`)."""
    if re.fullmatch(r"[\w-][\w.-]*", student) and not student.endswith("."):
        return student
    digest = hashlib.sha256(student.encode(errors="surrogateescape")).hexdigest()[:10]
    return (re.sub(r"[^\w.-]+", "_", student).strip(".")[:100] or "_") + "+" + digest


def report_path(out, student, assignment):
    return Path(out) / safe_name(student) / f"{assignment or '_missing'}.json"


def write_json(path, data):
    """Writes atomically: readers (and a killed batch) see the old file or the new one, whole."""
    data = data.to_dict() if isinstance(data, Report) else data
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with open(tmp, "w") as file:
        file.write(json.dumps(data, indent=2) + "\n")
        file.flush()
        os.fsync(file.fileno())
    os.replace(tmp, path)


def unsigned(report):
    return {k: v for k, v in report.to_dict().items() if k != "signature"}


def sign(report):
    """Gives the report its `signature`: a keyed digest of everything else in it."""
    report.signature = secret.sign(unsigned(report))
    return report


def read_report(path):
    """The report stored at `path`; ValueError (or OSError) if there is none."""
    try:
        return Report.from_dict(json.loads(Path(path).read_text()))
    except RecursionError:
        raise ValueError("nested too deeply") from None


def reusable(path, sha256, options, student, assignment):
    """The stored report at `path` if this grader wrote it (its signature verifies) from the same
    content with the same options, for the same student and assignment."""
    try:
        old = read_report(path)
    except (OSError, ValueError):
        return None
    if (
        old.status in ("passed", "failed")
        and sha256 is not None
        and old.sha256 == sha256
        and old.options == options
        and old.student == student
        and old.assignment == assignment
        and secret.verify(unsigned(old), old.signature)
    ):
        return old
    return None


def _same_result(a, b):
    return all(getattr(a, k) == getattr(b, k) for k in ("sha256", "options", "status", "score", "error"))


def merge_reports(folders, out):
    """Combines the reports stored under the given output folders (FOLDER/STUDENT/NAME.json)
    into `out`, with their plots (files inside FOLDER only, at their recorded path, else next to
    the report: use --plots = --out on machines whose folders are moved); returns the reports.
    UsageError if a report's signature does not verify with this grader's key (forged, edited,
    or signed with another key), if two differ for the same student and assignment, or if there
    are none."""
    found, conflicts, forged = {}, [], []
    for folder in map(Path, folders):
        if not folder.is_dir():
            raise UsageError(f"no such folder: {folder}")
        for path in sorted(folder.glob("*/*.json")):
            try:
                report = read_report(path)
            except OSError as error:
                raise UsageError(f"unreadable report {path}: {error}") from None
            except ValueError:
                continue  # not a report (e.g. another tool's JSON)
            if report.student is None:
                continue
            if not secret.verify(unsigned(report), report.signature):
                forged.append(str(path))
                continue
            key = (report.assignment or "", report.student)
            if key in found and not _same_result(found[key][1], report):
                conflicts.append(f"{found[key][0]} and {path}")
            found.setdefault(key, (path, report, folder))
    if forged:
        raise UsageError(
            "refused, their signature does not verify with this grader's key (forged, edited, or "
            "written with another key: give every machine the same GRADER_KEY_FILE): " + ", ".join(forged)
        )
    if conflicts:
        raise UsageError("different reports for the same student and assignment: " + "; ".join(conflicts))
    if not found:
        raise UsageError("no reports found in " + ", ".join(map(str, folders)))
    for path, report, folder in found.values():
        target = report_path(out, report.student, report.assignment)
        for check in report.checks:
            plot = check.details.get("plot")
            source = (
                next((p for p in (Path(plot), path.parent / Path(plot).name) if inside(p, folder)), None)
                if isinstance(plot, str) and plot
                else None
            )
            if source is not None:
                target.parent.mkdir(parents=True, exist_ok=True)
                if source.resolve() != (target.parent / source.name).resolve():
                    shutil.copyfile(source, target.parent / source.name)
                check.details["plot"] = str(target.parent / source.name)
        write_json(target, report)
    return in_order(report for _, report, _ in found.values())


def inside(path, folder):
    """A regular file (not a link) inside `folder`."""
    try:
        return regular(path) and path.resolve().is_relative_to(Path(folder).resolve())
    except (OSError, ValueError):
        return False


def in_order(reports):
    """Reports sorted by student, then assignment: the order of every output."""
    return sorted(reports, key=lambda r: (r.student, r.assignment or ""))


def exit_status(reports):
    if any(r.status == "error" for r in reports):
        return EXIT_BUG
    return EXIT_PASSED if all(r.passed for r in reports) else EXIT_FAILED


# ------------------------------------------------------------------ grading
def grade_one(item, configured, settings, cancel, on_check=None):
    """(report, reused) for one item; writes the report to settings.out. Raises only
    DeviceUnavailable and Cancelled: everything else becomes the item's result."""
    assignment, limits = configured.get(item.assignment, (None, None))
    path = report_path(settings.out, item.student, item.assignment) if settings.out else None
    source = None
    if not item.problem:
        try:  # read once: the bytes graded are the bytes of the report's sha256
            source = read_submission(item.path, item.base, follow=item.given)
        except OSError as error:
            kind = "missing" if error.errno in (errno.ENOENT, errno.EACCES) else "not_a_file"
            item = dataclasses.replace(item, problem=f"cannot read {item.path}: {error.strerror}; refused", kind=kind)
    if item.problem:
        report = problem_report(assignment, item.path, item.kind, item.problem)
    else:
        plots_dir = None
        if settings.plots:
            plots_dir = (
                Path(settings.plots) / safe_name(item.student) if settings.plots_per_student else Path(settings.plots)
            )
        options = grading_options(assignment, limits, settings, plots_dir)
        old = (
            path
            and not settings.force
            and reusable(path, hashlib.sha256(source).hexdigest(), options, item.student, item.assignment)
        )
        if old:
            return old, True
        if on_check:
            on_check(item, None)
        try:
            report = grade(
                assignment,
                item.path,
                limits=limits,
                device=settings.device,
                seed=settings.seed,
                plots_dir=plots_dir,
                cancel=cancel,
                source=source,
                isolation=settings.isolation,
                progress=(lambda name: on_check(item, name)) if on_check else None,
            )
        except (DeviceUnavailable, Cancelled):
            raise
        except Exception as bug:  # GraderBug, or anything the grader did not expect: never the student's fault
            detail = (
                str(bug) if isinstance(bug, GraderBug) else f"{type(bug).__name__}: {bug}\n{traceback.format_exc()}"
            )
            report = problem_report(
                assignment,
                item.path,
                "grader",
                f"grader error (not the submission's fault) while grading {item.path}:\n{detail}",
                status="error",
            )
        report.options = options
        if item.given and item.path.is_symlink():
            report.submission = f"{item.path} (a symbolic link to {item.path.resolve()})"
    report.student = item.student
    sign(report)
    if path:
        write_json(path, report)
    return report, False


def grade_all(items, assignments, settings, on_result=None, on_check=None):
    """Grades the items, settings.jobs at a time, and returns their reports sorted by key.
    on_result(report, reused) is called in this thread as each one ends; on_check(item, check
    name or None at the start) from the grading threads. On an exception here (Ctrl-C) or a
    missing device, the gradings in progress are cancelled (their children killed, no report
    written) and the exception is raised; the reports already written stay."""
    configured = {name: configure(assignments[name], settings) for name in {i.assignment for i in items} if name}
    cancel, reports = Cancel(), {}
    pool = ThreadPoolExecutor(max_workers=max(1, settings.jobs), thread_name_prefix="grade")
    try:
        futures = {pool.submit(grade_one, item, configured, settings, cancel, on_check): item for item in items}
        for future in as_completed(futures):
            report, reused = future.result()
            reports[futures[future].key] = report
            if on_result:
                on_result(report, reused)
    except BaseException:
        cancel.cancel()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return in_order(reports.values())
