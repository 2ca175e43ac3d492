"""The isolation machinery's client: runs a submission in a sandboxed child process and asks it
questions.

`Sandbox` starts grader/child.py next to one submission, inside bubblewrap with the system
policy of grader/policy.py, and holds it to its limits (grader/limits.py): a child that needs
more time, memory or threads than allowed is killed and the question fails with a one-line
reason (`SubmissionError`). When the sandbox closes, its processes are killed (the PID namespace
dies with its first process) and its cgroup is removed: nothing is left.

Without bubblewrap (`isolation="none"`) the child runs in a plain subprocess with a scrubbed
environment and its own temporary folder: enough for a student checking their own work, not
against a hostile submission (the command line refuses to grade a class that way unless told).

Answers come back as numbers, strings, containers and numpy arrays only (grader/child.py);
the assignment's checks validate them with grader/answers.py.
"""

import inspect
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from . import limits, policy, wire

# Lines that TensorFlow, CUDA and XLA log by themselves (absl's "E0000 00:00:1732900000.123456 1 file.cc:42]"
# prefix, and their few unprefixed start-up lines): the runtime's, not what the submission prints.
RUNTIME_LOG = re.compile(
    r"[IWEF]\d{4} [\d:.]+\s+\d+ \S+:\d+\]|WARNING: All log messages before absl::InitializeLog"
    r"|oneDNN custom operations are on|To enable the following instructions: |This TensorFlow binary is optimized"
)
RUNTIME_NOTE = (
    "(TensorFlow's own start-up and device messages are not shown: they come from the runtime, e.g. "
    "'failed call to cuInit' when there is no GPU, and are harmless)"
)
CHILD_SCRIPT = Path(__file__).resolve().with_name("child.py")  # run in the sandbox, with wire.py beside it
WIRE_SCRIPT = Path(wire.__file__).resolve()
POLL_SECONDS = 0.05
SERVICE_MESSAGE_BYTES = 64 << 20  # the most a service call (e.g. env.step) may send to the parent
# What the child may say went wrong: anything else it claims is a protocol error.
CHILD_KINDS = {"todo", "syntax", "import", "exception", "exit", "memory", "stopped"}


class SubmissionError(Exception):
    """The submission failed: crashed, hung, used too much memory, broke the protocol,
    left a TODO or returned something invalid. `kind` is one of: todo, syntax, import,
    exception, exit, crash, timeout, memory, threads, processes, protocol, invalid, stopped,
    too_large. `observed` is what the grader saw; `cause`, when given, what it concludes from it
    (e.g. "likely bug: ..."); `message` joins them for the report."""

    def __init__(self, kind, observed, details="", *, cause=""):
        self.observed, self.cause = observed, cause
        self.message = f"{observed}; {cause}" if cause else observed
        super().__init__(self.message)
        self.kind, self.details = kind, details


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
    if isinstance(value, list):
        return [_wire_value(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_wire_value(v) for v in value)
    return value


class Service:
    """A parent-side object the submission may call back during a question, e.g. the
    training environment. `methods` maps method names to callables taking decoded arguments;
    a method may raise `Service.Stop` to end the submission's use of it (e.g. budget used up).
    Arguments that do not fit a method's signature are the submission's error (`invalid`)."""

    class Stop(Exception):
        pass

    def __init__(self, name, **methods):
        self.name, self.methods = name, methods


def printable(text, newlines=False):
    """Text from the submission as it may be shown: no terminal control characters (which could
    move the cursor and overwrite the grader's own lines), newlines only where allowed."""
    keep = "\n\t" if newlines else "\t"
    return "".join(ch if ch.isprintable() or ch in keep else "?" for ch in str(text))


# ------------------------------------------------------------------ the sandbox
class Sandbox:
    """One child process running one submission, given as the exact bytes to grade. Use as a
    context manager. `isolation` is "bubblewrap" or "none"; `on_output(line)` receives what
    the submission prints, line by line, as it prints it (for progress; never for scoring)."""

    def __init__(
        self,
        source,
        module,
        limits,
        device="cpu",
        tensorflow=False,
        isolation="bubblewrap",
        display_name=None,
        on_output=None,
        cells=(),
    ):
        self.source, self.module, self.limits = bytes(source), module, limits
        self.cells = [list(cell) for cell in cells]  # a notebook's: its code's lines -> cells (grader/notebook.py)
        self.device_requested, self.tensorflow, self.isolation = device, tensorflow, isolation
        self.display_name = display_name or f"{module}.py"
        self.on_output = on_output
        self.process = self.cgroup = self.workdir = self.usage = None
        self.device = None
        self.names = []
        self._next_check = 0.0
        self._request = 0
        self._stopped = False
        self._output = deque(maxlen=400)
        self._reader = None
        self._started = False  # the child said hello: what it prints from now on is the submission's
        self._runtime_noted = False  # the note that the runtime's log lines are not shown was given

    # ------------------------------------------------------------ life cycle
    def start(self):
        if len(self.source) > self.limits.max_submission_bytes:
            raise SubmissionError(
                "too_large",
                f"the file has {len(self.source):,} bytes, more than the {self.limits.max_submission_bytes:,} allowed",
            )
        to_child_r, self.to_child = os.pipe()
        os.set_blocking(self.to_child, False)  # writes wait with a deadline (a child may stop reading)
        self.from_child, from_child_w = os.pipe()
        output_r, output_w = os.pipe()
        config = {
            "rfd": to_child_r,
            "wfd": from_child_w,
            "module": self.module,
            "display": self.display_name,
            "tensorflow": self.tensorflow,
            "device": self.device_requested,
            "threads": self.limits.threads,
            "max_file_bytes": self.limits.disk_mb << 20,
            "cells": self.cells,
        }
        fds = {}
        if self.isolation == "bubblewrap":
            path, reason = policy.bubblewrap()
            if path is None:
                raise RuntimeError(reason)
            fds = {
                "child": policy.memory_file("child.py", CHILD_SCRIPT.read_bytes()),
                "wire": policy.memory_file("wire.py", WIRE_SCRIPT.read_bytes()),
                "submission": policy.memory_file("submission", self.source),
                "passwd": policy.memory_file(
                    "passwd", f"sandbox:x:{policy.SANDBOX_UID}:{policy.SANDBOX_UID}::/tmp:/bin/false\n".encode()
                ),
                "seccomp": policy.memory_file("seccomp", policy.seccomp_program()),
            }
            config["submission"] = f"{policy.INSIDE}/submission/{self.module}.py"
            prefix, sources = [], None
            if policy.sandbox_user() is not None:  # root: bubblewrap runs as an unprivileged user (see sandbox_user)
                self.workdir = tempfile.mkdtemp(prefix="grader-stage-")
                os.chmod(self.workdir, 0o755)
                prefix, sources = policy.staging(self.workdir)
                prefix += policy.drop_privileges()
            command = [
                *prefix,
                path,
                *policy.bwrap_arguments(self.module, self.limits, self.device_requested, self.tensorflow, fds, sources),
                "--",
                policy.interpreter(),
                "-I",
                "-B",
                f"{policy.INSIDE}/child.py",
                json.dumps(config),
            ]
            cwd, workdir = "/", "/tmp"
        else:
            self.workdir = tempfile.mkdtemp(prefix="grader-")
            copy = Path(self.workdir, "submission", f"{self.module}.py")
            copy.parent.mkdir()
            copy.write_bytes(self.source)
            config["submission"] = str(copy)
            command = [sys.executable, "-I", "-B", str(CHILD_SCRIPT), json.dumps(config)]
            cwd = workdir = self.workdir
        self.cgroup = limits.Cgroup.create(self.limits)
        if self.cgroup is not None:  # the first process joins the cgroup, then becomes the sandbox
            command = [
                "/bin/sh",
                "-c",
                'while [ "$1" != -- ]; do echo $$ > "$1" || exit 125; shift; done; shift; exec "$@"',
                "join",
                *self.cgroup.join_files,
                "--",
                *command,
            ]
        try:
            self.process = subprocess.Popen(
                command,
                cwd=cwd,
                env=policy.child_environment(workdir, self.limits.threads, self.device_requested, self.tensorflow),
                stdin=subprocess.DEVNULL,
                stdout=output_w,
                stderr=output_w,
                pass_fds=(to_child_r, from_child_w, *fds.values()),
                start_new_session=True,
            )
        finally:
            for fd in (to_child_r, from_child_w, output_w, *fds.values()):
                os.close(fd)
        self.usage = limits.Usage(
            self.process.pid, self.cgroup, self.isolation == "bubblewrap", self.limits.disk_mb << 20
        )
        self._reader = threading.Thread(target=self._read_output, args=(output_r,), daemon=True)
        self._reader.start()
        start_deadline = limits.Deadline(self, self.limits.start_time)
        try:  # nothing of the submission has run before the first message: a failure is the machine's
            header, fields = self._receive(start_deadline, "start-up", self.limits.start_time)
            if header["op"] != "hello" or not isinstance(fields.get("device"), str):
                raise SubmissionError("protocol", "did not say hello")
        except SubmissionError as failure:
            self.close()  # (waits for its output to the end)
            said = "\n".join(self._output) or "(nothing)"
            self._output.clear()
            raise RuntimeError(f"the sandbox did not start ({failure.message}); it said:\n{said}") from None
        self._started = True
        self.device = fields["device"][:100]
        if fields.get("device_error"):
            self.close()
            raise DeviceUnavailable(str(fields["device_error"])[:300])
        header, fields = self._receive(start_deadline, "import", self.limits.start_time)
        if header["op"] == "error":
            self._raise(fields, "import")
        names = fields.get("names")
        if header["op"] != "ready" or not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise SubmissionError("protocol", "unexpected message while importing the submission")
        self.names = names
        return self

    def close(self):
        """Kills every process of the sandbox and removes what it leaves (its cgroup, or the
        working folder when there is no sandbox)."""
        if self.process is not None:
            self.cpu_seconds()  # the last measurement, kept in self.usage.cpu
            self.kill()
            self.process.wait()
            for fd in (self.to_child, self.from_child):
                try:
                    os.close(fd)
                except OSError:
                    pass
            if self._reader is not None:
                self._reader.join(timeout=5)
            self.process = None
        if self.cgroup is not None:
            self.cgroup.remove()
            self.cgroup = None
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    def kill(self):
        """Kills the sandbox's processes now (safe from another thread)."""
        process, cgroup = self.process, self.cgroup
        if process is not None:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if cgroup is not None:
            cgroup.kill()

    def __enter__(self):
        return self.start()

    def cpu_seconds(self, cached=False):
        """CPU seconds used so far by all the sandbox's processes (0 before it starts)."""
        return 0.0 if self.usage is None else self.usage.cpu_seconds(cached)

    def deadline(self, limit):
        """A `Deadline` of `limit` CPU seconds from now (with its wall-clock backstop)."""
        return limits.Deadline(self, limit)

    def __exit__(self, *exc):
        self.close()

    @property
    def alive(self):
        return self.process is not None and self.process.poll() is None

    def _read_output(self, fd):
        """Keeps the end of what the submission prints and passes each line on."""
        pending = b""
        with os.fdopen(fd, "rb", buffering=0) as pipe:
            while True:
                try:
                    chunk = pipe.read(65536)
                except OSError:
                    break
                if not chunk:
                    break
                lines = (pending + chunk).split(b"\n")
                pending = lines.pop()[-4096:]
                for line in lines:
                    text = printable(line[:1000].decode(errors="replace").rstrip())
                    self._output.append(text)
                    if self.on_output is not None and text.strip() and self._started:  # not bwrap's own words
                        if not RUNTIME_LOG.match(text):
                            self.on_output(text)
                        elif not self._runtime_noted:  # TensorFlow's, CUDA's or XLA's log, not the submission's
                            self._runtime_noted = True
                            self.on_output(RUNTIME_NOTE)

    def output_tail(self, lines=15):
        """The end of what the submission printed (for feedback only, never for scoring)."""
        return "\n".join(list(self._output)[-lines:])

    # ------------------------------------------------------------ questions
    def call(self, target, *args, timeout=None, phase=None, services=(), **kwargs):
        """Calls `target` in the child (a name such as "Agent" or "train", or a `Method` of a
        `Handle`) and returns its decoded result. Raises SubmissionError on any failure."""
        return self._ask(
            "call", target, args=list(args), kwargs=kwargs, timeout=timeout, phase=phase, services=services
        )

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
        self._stopped = False
        limit = timeout or self.limits.time
        deadline = limits.Deadline(self, limit)
        self._send(dict(payload, op=op, target=wire_target, id=self._request), arrays, deadline, label, limit)
        services = {s.name: s for s in services}
        while True:
            header, fields = self._receive(deadline, label, limit)
            if header.get("id") != self._request:
                self.kill()
                raise SubmissionError(
                    "protocol", f"an answer out of turn during {label} (the submission wrote to the grader's channel?)"
                )
            if header["op"] == "result":
                return fields.get("value")
            if header["op"] == "error":
                self._raise(fields, label)
            if header["op"] == "service":
                self._serve(services, fields, label, deadline, limit)
                continue
            self.kill()
            raise SubmissionError("protocol", f"unexpected message {header['op'][:40]!r} during {label}")

    def _wait(self, fd, write, deadline, label, limit):
        """Waits until `fd` can be read (or written), checking the limits; kills the sandbox and
        raises SubmissionError("timeout") past the `Deadline` (CPU seconds, or its wall-clock
        backstop): a child that stops reading or writing half-way through a message cannot hang
        the grader."""
        while True:
            now = time.monotonic()
            if now >= self._next_check or deadline.wall_left() <= 0:  # measuring costs ~1 ms: 10 times a second
                self._check_limits(label)
                self._next_check = now + 0.1
                reason = deadline.exceeded(fresh=False)  # (just measured)
                if reason is not None:
                    self.kill()
                    raise SubmissionError("timeout", f"timed out: {reason} during {label}")
            wait = max(0.0, min(POLL_SECONDS, deadline.wall_left()))
            ready = select.select([], [fd], [], wait)[1] if write else select.select([fd], [], [], wait)[0]
            if ready:
                return

    def _send(self, message, arrays, deadline, label, limit):
        def write_some(fd, view):
            self._wait(fd, True, deadline, label, limit)
            try:
                return os.write(fd, view)
            except BlockingIOError:
                return 0

        try:
            wire.send(self.to_child, message, arrays, write_some=write_some)
        except (BrokenPipeError, ConnectionResetError):
            raise self._death(label) from None

    def _serve(self, services, fields, label, deadline, limit):
        name, method_name, args = fields.get("name"), fields.get("method"), fields.get("args", [])
        service = services.get(name) if isinstance(name, str) else None
        method = service.methods.get(method_name) if service and isinstance(method_name, str) else None
        if method is None:
            self.kill()
            raise SubmissionError("protocol", f"the submission called an unknown service during {label}")
        if not isinstance(args, list):
            self.kill()
            raise SubmissionError("protocol", f"malformed call of {name}.{method_name} during {label}")
        try:
            inspect.signature(method).bind(*args)
        except TypeError as error:
            self.kill()
            raise SubmissionError(
                "invalid", f"{name}.{method_name} called with the wrong arguments during {label}: {error}"
            ) from None
        try:
            value = method(*args)
            op, reply = "service_result", {"value": value}
        except Service.Stop as stop:
            self._stopped = True
            op, reply = "service_stop", {"message": str(stop)}
        except SubmissionError:
            self.kill()
            raise
        arrays = []
        reply = {k: wire.encode(v, arrays) for k, v in reply.items()}
        self._send(dict(reply, op=op), arrays, deadline, label, limit)

    def _raise(self, fields, label):
        kind = fields.get("kind")
        message = printable(str(fields.get("message", ""))[:500])
        if not isinstance(kind, str) or kind not in CHILD_KINDS or (kind == "stopped" and not self._stopped):
            self.kill()
            raise SubmissionError("protocol", f"a malformed error report during {label}")
        if kind == "exception":
            message = f"raised {message} during {label}"
            if self.cgroup is not None and self.cgroup.tasks_refused():
                message += f" (it reached the limit of {self.limits.max_threads} processes and threads)"
        elif kind == "syntax":
            message = f"{message} in {self.display_name}"
        raise SubmissionError(kind, message, printable(str(fields.get("traceback", ""))[-4000:], newlines=True))

    # ------------------------------------------------------------ waiting and limits
    def _receive(self, deadline, label, limit):
        def read_some(fd, size):
            self._wait(fd, False, deadline, label, limit)
            return os.read(fd, size)

        try:
            header, arrays = wire.receive(self.from_child, max_bytes=self._message_limit, read_some=read_some)
            if not isinstance(header.get("op"), str):
                raise wire.ProtocolError("message without an operation")
            fields = {k: v for k, v in header.items() if k not in ("op", "id")}
            return header, wire.decode(fields, arrays, resolve=_resolve)
        except EOFError:
            raise self._death(label) from None
        except wire.ProtocolError as error:
            self.kill()
            raise SubmissionError("protocol", f"malformed answer during {label}: {error}") from None

    def _message_limit(self, header):
        """Bytes of arrays the parent takes in one message: a service call at most
        SERVICE_MESSAGE_BYTES, any other message (an answer) at most `Limits.max_message_bytes`."""
        if header.get("op") == "service":
            return min(SERVICE_MESSAGE_BYTES, self.limits.max_message_bytes)
        return self.limits.max_message_bytes

    def _check_limits(self, label):
        if self.process is None:
            return
        memory, processes, threads = self.usage.measure()
        if processes > self.limits.max_processes:  # first: a fork bomb's copies also add up as memory
            self.kill()
            raise SubmissionError(
                "processes", f"started {processes} processes during {label} (limit {self.limits.max_processes})"
            )
        if threads > self.limits.max_threads:
            self.kill()
            raise SubmissionError(
                "threads", f"started {threads} threads during {label} (limit {self.limits.max_threads})"
            )
        if memory > self.limits.memory_mb * 2**20:
            self.kill()
            raise SubmissionError(
                "memory",
                f"exceeded {format_mb(self.limits.memory_mb)} of memory "
                f"during {label} ({format_mb(memory / 2**20)} in use)",
            )

    def _death(self, label):
        """The child's process ended without answering: say how."""
        try:
            status = self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.kill()
            status = self.process.wait()
        self.kill()
        if self.cgroup is not None and self.cgroup.oom_killed():
            return SubmissionError(
                "memory", f"exceeded {format_mb(self.limits.memory_mb)} of memory during {label} (killed by the kernel)"
            )
        if self.cgroup is not None and self.cgroup.tasks_refused():
            return SubmissionError(
                "threads",
                f"died during {label} after reaching the limit of {self.limits.max_threads} processes and threads",
            )
        if status == 125 and self.cgroup is not None and label == "start-up":
            raise RuntimeError("could not put the sandbox into its cgroup")
        if status < 0 or status > 128:  # bubblewrap reports its child's death by a signal as 128 + signal
            number = -status if status < 0 else status - 128
            try:
                name = signal.Signals(number).name
            except ValueError:
                name = f"signal {number}"
            reason = "killed by the kernel's out-of-memory killer?" if name == "SIGKILL" else "crashed"
            return SubmissionError("crash", f"the submission's process died with {name} during {label} ({reason})")
        return SubmissionError(
            "exit", f"the submission's process exited with status {status} during {label} instead of answering"
        )


def _resolve(kind, payload):
    if kind == "$handle" and isinstance(payload, int) and not isinstance(payload, bool) and payload > 0:
        return Handle(payload)
    raise wire.ProtocolError(f"the submission may not send {kind}")


def format_mb(mb):
    return f"{mb / 1024:.3g} GiB" if mb >= 1024 else f"{mb:.0f} MiB"
