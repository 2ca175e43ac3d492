"""Parent side of the isolation machinery: runs a submission in a child process.

`Sandbox` starts grader/child.py in a fresh isolated Python with a scrubbed environment and
its own temporary working directory holding only a copy of the submission, enforces the
limits (wall-clock time per question, resident memory and thread count of the child's whole
process group) and turns everything that can go wrong on the submission's side into a
`SubmissionError` with a one-line reason. Answers come back as numbers, strings and numpy
arrays only; the assignment's checks validate them with `expect_array`.
"""
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import child as wire

CHILD_SCRIPT = Path(wire.__file__).resolve()
POLL_SECONDS = 0.05


class SubmissionError(Exception):
    """The submission failed: crashed, hung, used too much memory, broke the protocol,
    left a TODO or returned something invalid. `kind` is one of: todo, syntax, import,
    exception, exit, crash, timeout, memory, threads, protocol, invalid, stopped."""

    def __init__(self, kind, message, details=""):
        super().__init__(message)
        self.kind, self.message, self.details = kind, message, details


class DeviceUnavailable(Exception):
    """The requested device is not there (e.g. --device gpu on a machine without one)."""


@dataclass(frozen=True)
class Handle:
    """An object that lives in the child (e.g. the student's Agent); only its number crosses."""
    number: int

    def method(self, name):
        return Method(self, name)


@dataclass(frozen=True)
class Method:
    handle: Handle
    name: str


def _wire_value(value):
    if isinstance(value, Handle):
        return {"$handle": value.number}
    if isinstance(value, Service):
        return {"$service": value.name}
    if isinstance(value, (list, tuple)):
        return [_wire_value(v) for v in value]
    return value


class Service:
    """A parent-side object the submission may call back during a question, e.g. the
    training environment. `methods` maps method names to callables taking decoded arguments;
    a method may raise `Service.Stop` to end the submission's use of it (e.g. budget used up)."""

    class Stop(Exception):
        pass

    def __init__(self, name, **methods):
        self.name, self.methods = name, methods


def process_group_usage(pgid):
    """(resident bytes, threads) summed over the processes of a process group."""
    rss = threads = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as file:
                fields = file.read().rsplit(")", 1)[1].split()
            if int(fields[2]) != pgid:  # field 5 of stat: process group
                continue
            threads += int(fields[17])  # field 20: number of threads
            rss += int(fields[21]) * os.sysconf("SC_PAGE_SIZE")  # field 24: resident pages
        except (OSError, IndexError, ValueError):
            continue
    return rss, threads


def child_environment(workdir, threads, device, tensorflow):
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": workdir, "TMPDIR": workdir,
        "LANG": "C.UTF-8", "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1",
        "MPLBACKEND": "Agg", "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                 "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
        env[name] = str(threads)
    if device == "cpu" or not tensorflow:
        env["CUDA_VISIBLE_DEVICES"] = "-1"
    elif "CUDA_VISIBLE_DEVICES" in os.environ:
        env["CUDA_VISIBLE_DEVICES"] = os.environ["CUDA_VISIBLE_DEVICES"]
    for name in ("LD_LIBRARY_PATH", "CUDA_HOME", "XLA_FLAGS"):  # needed to find a GPU's libraries
        if device != "cpu" and tensorflow and name in os.environ:
            env[name] = os.environ[name]
    return env


class Sandbox:
    """One child process running one submission. Use as a context manager."""

    def __init__(self, submission, module, limits, device="cpu", tensorflow=False):
        self.submission, self.module, self.limits = Path(submission), module, limits
        self.device_requested, self.tensorflow = device, tensorflow
        self.process = None
        self.device = None
        self.names = []
        self._next_check = 0.0
        self._request = 0

    # ------------------------------------------------------------ life cycle
    def start(self):
        self.workdir = tempfile.mkdtemp(prefix="grader-")
        copy = Path(self.workdir, "submission", f"{self.module}.py")
        copy.parent.mkdir()
        shutil.copyfile(self.submission, copy)
        self.log_path = Path(self.workdir, "output.log")
        to_child_r, self.to_child = os.pipe()
        self.from_child, from_child_w = os.pipe()
        config = {"rfd": to_child_r, "wfd": from_child_w, "submission": str(copy),
                  "module": self.module, "tensorflow": self.tensorflow,
                  "device": self.device_requested, "threads": self.limits.threads,
                  "max_file_bytes": 1 << 30}
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-I", str(CHILD_SCRIPT), json.dumps(config)],
                cwd=self.workdir, env=child_environment(self.workdir, self.limits.threads,
                                                        self.device_requested, self.tensorflow),
                stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                pass_fds=(to_child_r, from_child_w), start_new_session=True)
        os.close(to_child_r)
        os.close(from_child_w)
        start_deadline = time.monotonic() + self.limits.start_time
        header, fields = self._receive(start_deadline, "start-up", self.limits.start_time)
        if header["op"] != "hello":
            raise SubmissionError("protocol", "the submission's process did not start properly")
        self.device = fields["device"]
        if fields.get("device_error"):
            self.close()
            raise DeviceUnavailable(fields["device_error"])
        header, fields = self._receive(start_deadline, "import", self.limits.start_time)
        if header["op"] == "error":
            self._raise(fields, "import")
        if header["op"] != "ready":
            raise SubmissionError("protocol", "unexpected message while importing the submission")
        self.names = fields["names"]
        return self

    def close(self):
        if self.process is not None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.process.wait()
            for fd in (self.to_child, self.from_child):
                try:
                    os.close(fd)
                except OSError:
                    pass
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.process = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()

    @property
    def alive(self):
        return self.process is not None and self.process.poll() is None

    def output_tail(self, lines=15):
        """The end of what the submission printed (for feedback only, never for scoring)."""
        try:
            text = self.log_path.read_bytes()[-20000:].decode(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    # ------------------------------------------------------------ questions
    def call(self, target, *args, timeout=None, phase=None, services=(), **kwargs):
        """Calls `target` in the child (a name such as "Agent" or "train", or a `Method` of a
        `Handle`) and returns its decoded result. Raises SubmissionError on any failure."""
        return self._ask("call", target, args=list(args), kwargs=kwargs, timeout=timeout,
                         phase=phase, services=services)

    def getattr(self, handle, name, timeout=None):
        return self._ask("getattr", Method(handle, name), timeout=timeout)

    def grad(self, target, args, wrt, timeout=None):
        """Value of target(*args) and its gradients with respect to args[i] for i in wrt."""
        return self._ask("grad", target, args=list(args), wrt=list(wrt), timeout=timeout)

    def _ask(self, op, target, timeout=None, phase=None, services=(), **fields):
        if not self.alive:
            raise SubmissionError("crash", "the submission's process is no longer running")
        label = phase or (target if isinstance(target, str) else f"{target.name}")
        wire_target = target if isinstance(target, str) else [_wire_value(target.handle), target.name]
        arrays = []
        payload = {k: wire.encode(_wire_value(v), arrays) for k, v in fields.items()}
        self._request += 1
        try:
            wire.send(self.to_child, dict(payload, op=op, target=wire_target, id=self._request), arrays)
        except (BrokenPipeError, OSError):
            raise self._death(label) from None
        services = {s.name: s for s in services}
        limit = timeout or self.limits.time
        deadline = time.monotonic() + limit
        while True:
            header, fields = self._receive(deadline, label, limit)
            if header.get("id") != self._request:
                self._kill()
                raise SubmissionError("protocol", f"an answer out of turn during {label} "
                                                  "(the submission wrote to the grader's channel?)")
            if header["op"] == "result":
                return fields.get("value")
            if header["op"] == "error":
                self._raise(fields, label)
            if header["op"] == "service":
                self._serve(services, fields, label)
                continue
            raise SubmissionError("protocol", f"unexpected message {header['op']!r} during {label}")

    def _serve(self, services, fields, label):
        service = services.get(fields.get("name"))
        method = service.methods.get(fields.get("method")) if service else None
        if method is None:
            raise SubmissionError("protocol", f"the submission called an unknown service during {label}")
        try:
            value = method(*fields.get("args", []))
            op, reply = "service_result", {"value": value}
        except Service.Stop as stop:
            op, reply = "service_stop", {"message": str(stop)}
        arrays = []
        reply = {k: wire.encode(v, arrays) for k, v in reply.items()}
        try:
            wire.send(self.to_child, dict(reply, op=op), arrays)
        except OSError:
            raise self._death(label) from None

    def _raise(self, fields, label):
        kind = fields.get("kind", "exception")
        message = str(fields.get("message", ""))[:500]
        if kind == "exception":
            message = f"raised {message} during {label}"
        elif kind == "syntax":
            message = f"{message} in the submission"
        raise SubmissionError(kind, message, str(fields.get("traceback", ""))[-4000:])

    # ------------------------------------------------------------ waiting and limits
    def _receive(self, deadline, label, limit):
        while True:
            now = time.monotonic()
            if now >= self._next_check:  # scanning /proc costs ~1 ms: at most 10 times a second
                self._check_limits(label)
                self._next_check = now + 0.1
            if now >= deadline:
                self._kill()
                raise SubmissionError("timeout", f"timed out after {limit:.0f} s during {label}")
            ready, _, _ = select.select([self.from_child], [], [], min(POLL_SECONDS, deadline - now))
            if ready:
                break
        try:
            return self._read_message()
        except EOFError:
            raise self._death(label) from None
        except wire.ProtocolError as error:
            self._kill()
            raise SubmissionError("protocol", f"malformed answer during {label}: {error}") from None

    def _read_message(self):
        header, arrays = wire.receive(self.from_child, max_bytes=self.limits.max_message_bytes)
        if not isinstance(header.get("op"), str):
            raise wire.ProtocolError("message without an operation")
        return header, wire.decode({k: v for k, v in header.items() if k not in ("op", "id")}, arrays,
                                   resolve=lambda kind, n: Handle(int(n)) if kind == "$handle"
                                   else _refuse(kind))

    def _check_limits(self, label):
        if self.process is None:
            return
        rss, threads = process_group_usage(self.process.pid)
        if rss > self.limits.memory_mb * 2**20:
            self._kill()
            raise SubmissionError("memory", f"exceeded {format_mb(self.limits.memory_mb)} of memory "
                                            f"during {label} ({format_mb(rss / 2**20)} resident)")
        if threads > self.limits.max_threads:
            self._kill()
            raise SubmissionError("threads", f"started {threads} threads during {label} "
                                             f"(limit {self.limits.max_threads})")

    def _death(self, label):
        """The child's process ended without answering: say how."""
        try:
            status = self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._kill()
            status = self.process.wait()
        self._kill()
        if status < 0:
            name = signal.Signals(-status).name
            reason = "killed by the kernel's out-of-memory killer?" if name == "SIGKILL" else "crashed"
            return SubmissionError("crash", f"the submission's process died with {name} during {label} ({reason})")
        return SubmissionError("exit", f"the submission's process exited with status {status} "
                                       f"during {label} instead of answering")

    def _kill(self):
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, AttributeError):
            pass


def _refuse(kind):
    raise wire.ProtocolError(f"the submission may not send {kind}")


def format_mb(mb):
    return f"{mb / 1024:.3g} GiB" if mb >= 1024 else f"{mb:.0f} MiB"


def expect_handle(value, name):
    """Validates an answer that must be an object living in the child (e.g. a new Agent)."""
    if not isinstance(value, Handle):
        raise SubmissionError("invalid", f"{name} returned {type(value).__name__}, expected an object")
    return value


def expect_array(value, name, *, kind="f", shape=None, finite=True, low=None, high=None):
    """Validates an answer from the submission and returns it as a numpy array.
    kind: "f" float, "i" integer (bool not accepted), "b" boolean. shape: a tuple where
    None matches any size. Raises SubmissionError("invalid", ...) naming what is wrong."""
    if not isinstance(value, np.ndarray):
        if isinstance(value, (int, float)) and not isinstance(value, bool) and shape == ():
            value = np.asarray(value)
        else:
            raise SubmissionError("invalid", f"{name} returned {type(value).__name__}, expected a numpy array")
    kinds = {"f": "f", "i": "iu", "b": "b"}[kind]
    if kind == "f" and value.dtype.kind in "iu":
        value = value.astype(np.float64)
    if value.dtype.kind not in kinds:
        wanted = {"f": "floating-point", "i": "integer", "b": "boolean"}[kind]
        raise SubmissionError("invalid", f"{name} returned an array of dtype {value.dtype}, expected {wanted}")
    if shape is not None and (value.ndim != len(shape) or
                              any(w is not None and w != s for w, s in zip(shape, value.shape))):
        wanted = "(" + ", ".join("any" if w is None else str(w) for w in shape) + ")"
        raise SubmissionError("invalid", f"{name} returned shape {value.shape}, expected {wanted}")
    if finite and kind == "f" and not np.all(np.isfinite(value)):
        bad = int(np.size(value) - np.count_nonzero(np.isfinite(value)))
        raise SubmissionError("invalid", f"{name} returned {bad} non-finite value(s) (NaN or infinity)")
    if low is not None and value.size and value.min() < low:
        raise SubmissionError("invalid", f"{name} returned {value.min()}, below the allowed minimum {low}")
    if high is not None and value.size and value.max() > high:
        raise SubmissionError("invalid", f"{name} returned {value.max()}, above the allowed maximum {high}")
    return value
