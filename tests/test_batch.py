"""Grading a class: finding students, sharding, parallel jobs, reports kept on disk as they
finish and reused, crashes and kills that lose no other result, merge (bandits as the vehicle)."""

import csv
import dataclasses
import json
import os
import random
import re
import shlex
import signal
import subprocess
import sys
import time

import pytest

from conftest import REPO, run_grader, variant
from grader import batch, cli
from grader.assignments import all_assignments
from grader.batch import Item, discover, parse_shard, shard
from grader.report import Report
from grader.spec import Check, Outcome

SOLUTION = (REPO / "solutions/bandits.py").read_text()
TEMPLATE = (REPO / "assignments/bandits.py").read_text()
SELECT = "        actions = np.argmax(self.estimates, axis=1)\n"
UPDATE = "        episodes = np.arange(self.episodes)\n"
FAST = ["--check", "update"]  # the two update checks: a grading in a fraction of a second


def make_class(root, students, name="bandits.py"):
    """root/STUDENT/NAME for {student: text}; returns root."""
    for student, text in students.items():
        path = root / student / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def read_csv(path):
    with open(path, newline="") as file:
        return {row["student"]: row for row in csv.DictReader(file)}


def report(out, student, assignment="bandits"):
    return json.loads((out / student / f"{assignment}.json").read_text())


# ------------------------------------------------------------------ finding students
def test_students_are_the_first_folder_and_problems_are_results(tmp_path):
    make_class(tmp_path, {"alice": "", "bob/hw1/deep": "", "erin": "", "erin/old": ""})
    (tmp_path / "bob" / "vae.py").write_text("")
    (tmp_path / "carol").mkdir()
    (tmp_path / "carol" / "bandit.py").write_text("")  # misnamed: nothing recognised
    (tmp_path / "bandits.py").write_text("")  # files directly in DIR: the student DIR
    (tmp_path / "notes.md").write_text("")  # not a submission, not a student
    make_class(tmp_path, {".git/x": "", "__pycache__": "", "dave/.hidden": ""})
    items = {(i.student, i.assignment): i for i in discover([tmp_path], all_assignments())}
    assert set(items) == {
        ("alice", "bandits"),
        ("bob", "bandits"),
        ("bob", "vae"),
        ("carol", None),
        ("erin", "bandits"),
        (tmp_path.name, "bandits"),
        ("dave", None),
    }
    assert items["bob", "bandits"].path == tmp_path / "bob/hw1/deep/bandits.py"
    assert items["carol", None].kind == "missing" and "carol/bandit.py" in items["carol", None].problem
    assert items["dave", None].problem.endswith("the folder has no files")
    assert items["erin", "bandits"].kind == "ambiguous" and items["erin", "bandits"].path is None
    assert "erin/old/bandits.py" in items["erin", "bandits"].problem
    # --assignment bandits: only bandits.py counts; a folder without one is missing *bandits*
    forced = {(i.student, i.assignment): i for i in discover([tmp_path], all_assignments(), "bandits")}
    assert ("bob", "vae") not in forced and forced["carol", "bandits"].kind == "missing"


def test_shards_split_deterministically_and_evenly():
    items = [Item(f"student{s:02d}", a, None) for s in range(11) for a in ("bandits", "vae")]
    for n in (1, 2, 3, 5):
        shards = [shard(items, k, n) for k in range(1, n + 1)]
        assert sorted(i.key for s in shards for i in s) == sorted(i.key for i in items)  # a partition
        assert max(map(len, shards)) - min(map(len, shards)) <= 1
        shuffled = random.Random(n).sample(items, len(items))
        assert [shard(shuffled, k, n) for k in range(1, n + 1)] == shards  # independent of the order found
    # each of 2 shards gets half of each assignment, not all the slow ones
    assert sorted(i.assignment for i in shard(items, 1, 2)).count("vae") in (5, 6)
    assert parse_shard("2/4") == (2, 4)
    for bad in ("0/2", "3/2", "1", "a/b", "1/0"):
        with pytest.raises(Exception, match="expected K/N"):
            parse_shard(bad)


# ------------------------------------------------------------------ a class, end to end
def test_class_with_jobs_2_gives_summary_gradescope_and_junit(tmp_path):
    """Copies of the reference and the template, a crashing, a killed and a hanging submission:
    every student gets their result and its reason, in the summary and the standard formats."""
    students = {
        "alice": SOLUTION,
        "bob": SOLUTION,
        "carol": TEMPLATE,
        "dan": TEMPLATE,
        "erin": variant("solutions/bandits.py", (SELECT, SELECT + "        import ctypes; ctypes.string_at(0)\n")),
        "frank": variant(
            "solutions/bandits.py",
            (
                UPDATE,
                UPDATE + "        if self.episodes == 2000: import os, signal; os.kill(os.getpid(), signal.SIGKILL)\n",
            ),
        ),
        "grace": variant("solutions/bandits.py", (SELECT, "        while self.episodes == 4000: pass\n" + SELECT)),
        "heidi": "this is not python (",
    }
    make_class(tmp_path / "class", students)
    out = tmp_path / "reports"
    result = run_grader(
        tmp_path / "class",
        "--jobs",
        "2",
        "--out",
        out,
        "--call-time-limit",
        "2",
        "--gradescope",
        tmp_path / "results.json",
        "--junit",
        tmp_path / "junit.xml",
    )
    assert result.returncode == 1, result.stderr  # some submissions failed; no grader error
    rows = read_csv(out / "summary.csv")
    assert set(rows) == set(students)
    for name in ("alice", "bob"):
        assert rows[name]["bandits"] == "10" and rows[name]["bandits_status"] == "passed"
        assert report(out, name)["passed"] and report(out, name)["student"] == name
    for name, reason in [
        ("carol", "unfinished TODO"),
        ("erin", "died with SIGSEGV during select_actions"),
        ("frank", "died with SIGKILL during update"),
        ("grace", "CPU seconds of its 2 during select_actions"),
        ("heidi", "SyntaxError"),
    ]:
        assert rows[name]["bandits_status"] == "failed" and reason in rows[name]["problems"], (name, rows[name])
    # the killed and hanging students lose only the checks concerned
    assert float(rows["frank"]["bandits"]) == 4 and float(rows["grace"]["bandits"]) == 9
    table = result.stdout
    assert re.search(r"^alice\s+10/10\s", table, re.M) and re.search(r"^carol\s+0/10 FAIL", table, re.M)
    assert "8 result(s) of 8 student(s): 2 passed, 6 failed, 0 grader error(s)" in table
    assert "[8/8]" in result.stderr  # progress: a line per result when stderr is not a terminal
    gradescope = json.loads((tmp_path / "results.json").read_text())
    assert gradescope["score"] == sum(float(r["bandits"]) for r in rows.values())
    assert {t["name"].split(" / ")[0] for t in gradescope["tests"]} == set(students)
    junit = (tmp_path / "junit.xml").read_text()
    assert junit.count("<testsuite ") == 8 and 'name="erin/bandits"' in junit


def test_reports_are_reused_unless_changed_or_forced(tmp_path):
    make_class(tmp_path / "class", {"alice": SOLUTION, "bob": TEMPLATE})
    out = tmp_path / "out"

    def run(*args):
        result = run_grader(tmp_path / "class", "--out", out, "--quiet", *FAST, *args)
        return {line.split()[1].split("/")[-2]: line.endswith("(reused)") for line in result.stdout.splitlines()}

    assert run() == {"alice": False, "bob": False}
    assert report(out, "alice")["sha256"] and report(out, "alice")["options"]["checks"] == [
        "update: sample averaging",
        "update: constant step size",
    ]
    assert run() == {"alice": True, "bob": True}
    (tmp_path / "class/bob/bandits.py").write_text(SOLUTION)  # new content
    assert run() == {"alice": True, "bob": False}
    assert report(out, "bob")["passed"]
    assert run("--seed", "7") == {"alice": False, "bob": False}  # other options
    assert run("--seed", "7", "--force") == {"alice": False, "bob": False}
    assert run("--seed", "7") == {"alice": True, "bob": True}


def hanging_class(tmp_path):
    """alice and bob are quick; carol (graded last with --jobs 1) hangs in her first update."""
    hang = variant("solutions/bandits.py", (UPDATE, "        while True: pass\n"))
    return make_class(tmp_path / "class", {"alice": SOLUTION, "bob": SOLUTION, "carol": hang})


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as file:
        return file.read().rsplit(")", 1)[1].split()[0] != "Z"


def grading_process(path):
    """The pid of the child process grading `path` (its command line names the file), or None."""
    for entry in os.listdir("/proc"):
        try:
            command = open(f"/proc/{entry}/cmdline", "rb").read()
        except OSError:
            continue
        if b"child.py" in command and str(path).encode() in command and b"bwrap" not in command:
            return int(entry)
    return None


def start_and_wait_for_carol(tmp_path, out):
    folder = hanging_class(tmp_path)
    batch = subprocess.Popen(
        [sys.executable, "-m", "grader", folder, "--out", out, "--quiet", *FAST, "--call-time-limit", "120"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not (out / "bob" / "bandits.json").exists() or grading_process(folder / "carol") is None:
        assert time.monotonic() < deadline and batch.poll() is None, batch.communicate()
        time.sleep(0.1)
    time.sleep(1)  # carol is in her endless update
    return batch, grading_process(folder / "carol")


@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
def test_a_stopped_batch_keeps_the_finished_results(tmp_path, how):
    """A batch stopped while a submission hangs: the finished reports are whole, the one in
    progress has none, its sandbox dies with the grader, and running the same command again
    grades only what is left."""
    out = tmp_path / "out"
    batch, child = start_and_wait_for_carol(tmp_path, out)
    batch.send_signal(getattr(signal, how))
    stdout, stderr = batch.communicate(timeout=30)
    assert report(out, "alice")["passed"] and report(out, "bob")["passed"]
    assert not (out / "carol").exists()
    if how == "SIGTERM":  # like a cancelled CI job: the children are killed, the status says so
        assert batch.returncode == cli.EXIT_INTERRUPTED, stderr
        assert "interrupted" in stderr and "run the same command again" in stderr
    else:  # the grader is gone at once; its sandbox dies with it (bubblewrap --die-with-parent)
        assert batch.returncode == -signal.SIGKILL
    deadline = time.monotonic() + 10
    while alive(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(child)
    (tmp_path / "class/carol/bandits.py").write_text(SOLUTION)
    again = run_grader(tmp_path / "class", "--out", out, "--quiet", *FAST, "--call-time-limit", "120")
    assert again.returncode == 0
    assert sorted(line.endswith("(reused)") for line in again.stdout.splitlines()) == [False, True, True]


def test_a_grader_bug_in_one_submission_keeps_the_others(tmp_path, monkeypatch, capsys):
    def buggy_for_bob(ctx):
        if ctx.submission.parent.name == "bob":
            return {}["missing"]
        return Outcome(True, "fine")

    bandits = all_assignments()["bandits"]
    buggy = dataclasses.replace(bandits, checks=bandits.checks[:1] + (Check("sometimes broken", buggy_for_bob),))
    monkeypatch.setattr(cli, "all_assignments", lambda: {"bandits": buggy})
    make_class(tmp_path / "class", {"alice": SOLUTION, "bob": SOLUTION, "carol": SOLUTION})
    out = tmp_path / "out"
    args = [str(tmp_path / "class"), "--out", str(out), "--jobs", "2", "--junit", str(tmp_path / "j.xml")]
    assert cli.main(args) == cli.EXIT_BUG
    captured = capsys.readouterr()
    assert "grader error (not the submission's fault)" in captured.err and "KeyError" in captured.err
    assert report(out, "alice")["passed"] and report(out, "carol")["passed"]
    bob = report(out, "bob")
    assert bob["status"] == "error" and bob["error_kind"] == "grader" and "Traceback" in bob["error"]
    assert re.search(r"^bob\s+ERROR", captured.out, re.M)
    assert '<error message="grader error' in (tmp_path / "j.xml").read_text()
    assert cli.main(args + ["--quiet"]) == cli.EXIT_BUG  # bob is graded again, the others reused
    lines = {line.split()[1].split("/")[-2]: line for line in capsys.readouterr().out.splitlines()}
    assert lines["alice"].endswith("(reused)") and lines["carol"].endswith("(reused)")
    assert lines["bob"].startswith("ERROR") and not lines["bob"].endswith("(reused)")


# ------------------------------------------------------------------ shards and merge
def test_merged_shards_equal_the_unsharded_run(tmp_path):
    students = {"alice": SOLUTION, "bob": TEMPLATE, "carol": SOLUTION, "dan": TEMPLATE, "erin": SOLUTION}
    make_class(tmp_path / "class", students)
    (tmp_path / "class/frank").mkdir()
    whole = tmp_path / "whole"
    common = [tmp_path / "class", "--quiet", *FAST]
    assert run_grader(*common, "--out", whole).returncode == 1
    for k in (1, 2):
        assert run_grader(*common, "--out", tmp_path / f"shard{k}", "--shard", f"{k}/2").returncode in (0, 1)
    shard1 = {p.parent.name for p in (tmp_path / "shard1").glob("*/*.json")}
    shard2 = {p.parent.name for p in (tmp_path / "shard2").glob("*/*.json")}
    assert shard1 and shard2 and not shard1 & shard2 and shard1 | shard2 == set(students) | {"frank"}
    merged = run_grader(
        "merge",
        tmp_path / "shard1",
        tmp_path / "shard2",
        "--out",
        tmp_path / "merged",
        "--junit",
        tmp_path / "merged.xml",
    )
    assert merged.returncode == 1, merged.stderr  # like the whole run: some submissions failed
    assert (tmp_path / "merged/summary.csv").read_text() == (whole / "summary.csv").read_text()
    for path in whole.glob("*/*.json"):
        a, b = json.loads(path.read_text()), json.loads((tmp_path / "merged" / path.relative_to(whole)).read_text())
        assert [a.get(k) for k in ("score", "status", "sha256", "options")] == [
            b.get(k) for k in ("score", "status", "sha256", "options")
        ]
    assert "6 result(s) of 6 student(s)" in merged.stdout
    # two different results for one student and assignment are refused
    bob = tmp_path / "shard1/bob/bandits.json" if "bob" in shard1 else tmp_path / "shard2/bob/bandits.json"
    (tmp_path / "other/bob").mkdir(parents=True)
    (tmp_path / "other/bob/bandits.json").write_text(json.dumps(dict(json.loads(bob.read_text()), score=3)))
    forged = run_grader("merge", tmp_path / "shard1", tmp_path / "shard2", tmp_path / "other", "--out", tmp_path / "m2")
    assert forged.returncode == 2 and str(tmp_path / "other/bob/bandits.json") in forged.stderr  # edited: refused
    assert "signature does not verify" in forged.stderr and not (tmp_path / "m2").exists()
    batch.write_json(
        tmp_path / "other/bob/bandits.json", batch.sign(Report.from_dict(dict(json.loads(bob.read_text()), score=3)))
    )
    conflict = run_grader(
        "merge", tmp_path / "shard1", tmp_path / "shard2", tmp_path / "other", "--out", tmp_path / "m2"
    )
    assert conflict.returncode == 2 and "different reports for the same student" in conflict.stderr
    assert run_grader("merge", tmp_path / "nothing").returncode == 2


def test_an_empty_shard_is_fine(tmp_path):
    make_class(tmp_path / "class", {"alice": SOLUTION})
    result = run_grader(tmp_path / "class", "--out", tmp_path / "out", "--shard", "2/2", *FAST)
    assert result.returncode == 0 and (tmp_path / "out/summary.csv").read_text().startswith("student,")


def test_usage_errors_of_a_class(tmp_path):
    (tmp_path / "empty").mkdir()
    for args, message in [
        ([tmp_path / "empty"], "no submission in"),
        (["solutions/", "--shard", "3/2"], "expected K/N"),
        (["solutions/", "--jobs", "0"], "expected a positive integer"),
        (["solutions/", "--check", "nothing-like-this"], "no check of"),
    ]:
        result = run_grader(*args, "--out", tmp_path / "out")
        assert result.returncode == 2 and message in result.stderr, (args, result.stderr)


def test_progress_bar_on_a_terminal():
    class Terminal:
        text = ""

        def isatty(self):
            return True

        def write(self, text):
            self.text += text

        def flush(self):
            pass

    stream = Terminal()
    display = cli.Display(total=2, batch=True, quiet=False, jobs=2, stream=stream)
    report = Report(
        status="passed", passed=True, submission="a/bandits.py", assignment="bandits", score=10, max_score=10
    )
    display.result(report, reused=False)
    display.result(dataclasses.replace(report, status="failed", passed=False), reused=True)
    frames = stream.text.split("\r\033[K")
    assert frames[1].startswith("[" + "." * 30 + "] 0/2")
    assert frames[2].startswith("[" + "#" * 15 + "." * 15 + "] 1/2: 1 passed, 0 failed") and "s left" in frames[2]
    assert frames[3].startswith("[" + "#" * 30 + "] 2/2: 1 passed, 1 failed, 0 grader errors, 1 reused")
    assert frames[3].endswith("\n")


# ------------------------------------------------------------------ the example CI workflow
def test_example_workflow_runs_valid_grader_commands():
    """Each `python -m grader` command of examples/github-actions-matrix.yml parses with the
    grader's own command line, the matrix and the --shard option agree, and merge reads what
    the shards upload."""
    text = (REPO / "examples/github-actions-matrix.yml").read_text()
    text = text.replace("\\\n", " ")
    commands = [
        line.split("-m grader", 1)[1]
        for line in text.splitlines()
        if "-m grader" in line and not line.lstrip().startswith("#")
    ]
    assert len(commands) == 2
    shards = json.loads(re.search(r"shard: (\[[\d, ]+\])", text)[1])
    assert f"SHARDS: {len(shards)}" in text and shards == list(range(1, len(shards) + 1))
    for command in commands:
        command = command.replace("${{ matrix.shard }}", "1").replace("${{ env.SHARDS }}", str(len(shards)))
        words = shlex.split(command.split("||")[0].split(">")[0])
        if words[0] == "merge":
            args = cli.merge_parser().parse_args(words[1:])
            assert args.folders == ["shards/*/"] and args.junit and args.html
        else:
            args = cli.parser(all_assignments()).parse_args(words)
            assert args.shard == (1, len(shards)) and args.jobs == 2 and args.plots == args.out
    assert "pattern: reports-*" in text and "name: reports-${{ matrix.shard }}" in text


def test_a_folder_swapped_for_a_link_after_discovery_is_refused(tmp_path):
    """alice/work/ is replaced by a link to the solutions between finding her file and reading it:
    the file is read folder by folder without following links, so she gets not_a_file."""
    assignments = all_assignments()
    (tmp_path / "class/alice/work").mkdir(parents=True)
    (tmp_path / "class/alice/work/bandits.py").write_text(TEMPLATE)
    (item,) = discover([tmp_path / "class"], assignments)
    assert item.path == tmp_path / "class/alice/work/bandits.py" and item.base == tmp_path / "class"
    (tmp_path / "class/alice/work/bandits.py").unlink()
    (tmp_path / "class/alice/work").rmdir()
    (tmp_path / "class/alice/work").symlink_to(REPO / "solutions")
    settings = batch.Settings(checks=("update",))
    (report,) = batch.grade_all([item], assignments, settings)
    assert report.status == "failed" and report.error_kind == "not_a_file", report.error
    assert "symbolic link" in report.error


def test_links_devices_and_fifos_in_a_class_are_not_files(tmp_path):
    assignments = all_assignments()
    make_class(tmp_path, {"alice": SOLUTION})
    (tmp_path / "bob").mkdir()
    (tmp_path / "bob/bandits.py").symlink_to(tmp_path / "alice/bandits.py")
    (tmp_path / "carol").mkdir()
    os.mkfifo(tmp_path / "carol/bandits.py")
    (tmp_path / "dave").symlink_to(tmp_path / "alice")
    (tmp_path / "erin/sub").mkdir(parents=True)
    (tmp_path / "erin/sub/bandits.py").symlink_to("/dev/null")
    items = {item.student: item for item in discover([tmp_path], assignments)}
    assert items["alice"].problem is None
    for student, what in (
        ("bob", "a symbolic link"),
        ("carol", "a FIFO"),
        ("dave", "a symbolic link"),
        ("erin", "a symbolic link"),
    ):
        assert items[student].kind == "not_a_file" and what in items[student].problem, items[student]


def test_a_cancel_kills_the_graders_measurement_sandboxes_too(tmp_path):
    """Ctrl-C during a measurement (a rebuilt policy playing its evaluation, grader/measured.py):
    the cancel kills that sandbox too, so its question ends at once instead of running to its
    limit, and no new measurement starts."""
    import threading

    from grader.runner import Cancel, Cancelled, Context
    from grader.sandbox import Sandbox, SubmissionError
    from grader.spec import Limits

    spec = all_assignments()["bandits"]
    cancel = Cancel()
    ctx = Context(spec, REPO / "solutions/bandits.py", spec.limits, "cpu", 42, cancel=cancel)
    cancel.watch(ctx)
    limits = Limits(time=120, start_time=60)
    slow = Sandbox(b"import time\ndef wait():\n    time.sleep(100)\n    return 1\n", "slow", limits)
    with ctx.measuring(slow):
        threading.Timer(1.0, cancel.cancel).start()
        with pytest.raises(SubmissionError):  # (without the cancel: 1 after 100 s)
            slow.call("wait")
    assert not slow.alive
    with pytest.raises(Cancelled):
        with ctx.measuring(Sandbox(b"", "other", limits)):
            pass
