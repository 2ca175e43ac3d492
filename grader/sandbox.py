"""The isolation machinery, parent side: runs a submission in a sandboxed child process.

`Sandbox` starts grader/child.py next to one submission and asks it questions. The child runs in
an operating-system sandbox made with bubblewrap (`bwrap`):

- new user, PID, IPC, UTS, network and cgroup namespaces (no network; it sees only its own
  processes), as uid 65534 with no capabilities, `--disable-userns` (no nested namespaces),
  `--new-session` (no terminal to type into), `--die-with-parent`;
- never root on the host: when the grader is root, bubblewrap runs as an unprivileged uid
  (`sandbox_user`, via setpriv, the Python folders staged in a private mount namespace); the
  root-only files of /proc are read-only; a seccomp policy after Docker's (`seccomp_program`);
- a read-only view of only what it needs: /usr (and /bin, /lib... as the host has them), the
  Python installation and the virtual environment, `child.py` and the exact bytes of the
  submission (both copied in from memory, so no file of the grader's is visible); the data sets'
  files inside those folders are hidden (masked by empty folders);
- a private writable /tmp (a tmpfs of `Limits.disk_mb`), which is gone with the sandbox;
- with `--device gpu|auto`, the NVIDIA device nodes (and /sys, read-only, where CUDA looks).

Limits hold over every process in the sandbox: where a cgroup can be created (root, or a
delegated cgroup v2), memory and the number of tasks are limited by the kernel and measured
there; otherwise every process of the sandbox's PID namespace is summed ten times a second. A
child that needs more time, memory or threads than allowed is killed and the question fails
with a one-line reason (`SubmissionError`). When the sandbox closes, its processes are killed
(the PID namespace dies with its first process) and its cgroup is removed: nothing is left.

Without bubblewrap (`isolation="none"`) the child runs in a plain subprocess with a scrubbed
environment and its own temporary folder: enough for a student checking their own work, not
against a hostile submission (the command line refuses to grade a class that way unless told).

Answers come back as numbers, strings, containers and numpy arrays only (grader/child.py);
the assignment's checks validate them with `expect_array`.
"""

import functools
import inspect
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import child as wire

CHILD_SCRIPT = Path(wire.__file__).resolve()
REPO = CHILD_SCRIPT.parents[1]
POLL_SECONDS = 0.05
SANDBOX_UID = 65534  # the uid inside the sandbox
SERVICE_MESSAGE_BYTES = 64 << 20  # the most a service call (e.g. env.step) may send to the parent
DEFAULT_SANDBOX_USER = 65533  # the uid (and gid) outside it when the grader is root (see sandbox_user)
INSIDE = "/sandbox"  # where child.py and the submission are, inside the sandbox
# What the child may say went wrong: anything else it claims is a protocol error.
CHILD_KINDS = {"todo", "syntax", "import", "exception", "exit", "memory", "stopped"}


class SubmissionError(Exception):
    """The submission failed: crashed, hung, used too much memory, broke the protocol,
    left a TODO or returned something invalid. `kind` is one of: todo, syntax, import,
    exception, exit, crash, timeout, memory, threads, processes, protocol, invalid, stopped,
    too_large."""

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


# ------------------------------------------------------------------ bubblewrap
@functools.cache
def bubblewrap():
    """(path of bwrap, None) when bubblewrap can make a sandbox here, else (None, the reason)."""
    path = shutil.which("bwrap")
    if path is None:
        return None, "bubblewrap (bwrap) is not installed (Debian/Ubuntu: apt-get install bubblewrap)"
    try:  # as the sandbox will run: as the unprivileged user when root, in its namespaces, with the policy
        seccomp = memory_file("seccomp", seccomp_program())
        try:
            probe = subprocess.run(
                [
                    *drop_privileges(),
                    path,
                    *namespaces(),
                    *system_binds(),
                    "--proc",
                    "/proc",
                    *proc_covers(),
                    "--seccomp",
                    str(seccomp),
                    "--",
                    "/bin/true",
                ],
                capture_output=True,
                text=True,
                timeout=30,
                pass_fds=(seccomp,),
            )
        finally:
            os.close(seccomp)
    except (OSError, RuntimeError, subprocess.SubprocessError) as error:
        return None, f"bubblewrap does not run: {error}"
    if probe.returncode != 0:
        return None, f"bubblewrap cannot make a sandbox here: {probe.stderr.strip()[:200]}"
    return path, None


def sandbox_user():
    """(uid, gid) on the host that bubblewrap runs as when the grader is root, so that no process
    of the sandbox is root outside it: GRADER_SANDBOX_UID / GRADER_SANDBOX_GID, default 65533 (an
    id no account uses: it owns no file and may read only what everyone may). None when the grader
    is not root (the sandbox then runs as the grader's own unprivileged user)."""
    if os.geteuid() != 0:
        return None
    try:
        uid = int(os.environ.get("GRADER_SANDBOX_UID", DEFAULT_SANDBOX_USER))
        gid = int(os.environ.get("GRADER_SANDBOX_GID", uid))
    except ValueError:
        raise RuntimeError("GRADER_SANDBOX_UID and GRADER_SANDBOX_GID must be numbers") from None
    if uid <= 0 or gid <= 0:
        raise RuntimeError("GRADER_SANDBOX_UID and GRADER_SANDBOX_GID must not be 0 (root)")
    return uid, gid


def drop_privileges():
    """The command prefix that starts bubblewrap as `sandbox_user()` (empty when not root): no
    supplementary groups, no capabilities, no way back (no_new_privs)."""
    user = sandbox_user()
    if user is None:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        raise RuntimeError(
            "setpriv (util-linux) is needed to run the sandbox as an unprivileged user when "
            "the grader is root (Debian/Ubuntu: apt-get install util-linux)"
        )
    return [
        setpriv,
        "--reuid",
        str(user[0]),
        "--regid",
        str(user[1]),
        "--clear-groups",
        "--inh-caps",
        "-all",
        "--bounding-set",
        "-all",
        "--no-new-privs",
        "--",
    ]


# The seccomp policy, after Docker's default profile: these fail with EPERM in the sandbox.
DENIED_SYSCALLS = (
    "keyctl",
    "add_key",
    "request_key",  # the kernel's keyrings
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "lookup_dcookie",  # kernel attack surface
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "kcmp",
    "pidfd_getfd",  # other processes' memory
    "mount",
    "umount2",
    "pivot_root",
    "chroot",
    "move_mount",
    "open_tree",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "mount_setattr",
    "unshare",
    "setns",  # file systems and namespaces
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "reboot",
    "swapon",
    "swapoff",
    "acct",
    "syslog",
    "quotactl",
    "quotactl_fd",
    "nfsservctl",
    "open_by_handle_at",
    "settimeofday",
    "clock_settime",
    "clock_adjtime",
    "vhangup",
    "iopl",
    "ioperm",
    "uselib",
    "sysfs",
    "_sysctl",
    "fanotify_init",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
)
NAMESPACE_FLAGS = (0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000, 0x40000000, 0x00000080)
# personality() flags that weaken the process (ADDR_NO_RANDOMIZE: no ASLR, MMAP_PAGE_ZERO,
# ADDR_COMPAT_LAYOUT, READ_IMPLIES_EXEC, ADDR_LIMIT_32BIT, ADDR_LIMIT_3GB)
UNSAFE_PERSONALITY_FLAGS = (0x0040000, 0x0100000, 0x0200000, 0x0400000, 0x0800000, 0x8000000)
TERMINAL_IOCTLS = (0x5412, 0x541C)  # TIOCSTI (type into a terminal), TIOCLINUX


@functools.cache
def seccomp_program():
    """The BPF program of the policy (bytes), built with libseccomp: DENIED_SYSCALLS, clone with
    any namespace flag, personality with an unsafe flag, and terminal-injecting ioctls fail
    with EPERM; clone3 with ENOSYS (its flags cannot be inspected: the C library falls back to
    clone). Other architectures' system calls kill the process. Everything else is allowed."""
    import errno

    import pyseccomp as sc

    deny = sc.ERRNO(errno.EPERM)
    policy = sc.SyscallFilter(defaction=sc.ALLOW)
    try:  # a binary tree of the system call numbers: a few comparisons per call, not one per rule
        policy.set_attr(sc.Attr.CTL_OPTIMIZE, 2)
    except OSError:  # (libseccomp before 2.5)
        pass
    for name in DENIED_SYSCALLS:
        try:
            policy.add_rule(deny, name)
        except (RuntimeError, ValueError, OSError):  # not a system call of this architecture
            pass
    for flag in NAMESPACE_FLAGS:
        policy.add_rule(deny, "clone", sc.Arg(0, sc.MASKED_EQ, flag, flag))
    policy.add_rule(sc.ERRNO(errno.ENOSYS), "clone3")
    for flag in UNSAFE_PERSONALITY_FLAGS:  # the flag set in any value but 0xffffffff (the query): for
        for bit in range(32):  # each other bit, "flag set and that bit clear"
            if 1 << bit != flag:
                policy.add_rule(deny, "personality", sc.Arg(0, sc.MASKED_EQ, flag | 1 << bit, flag))
    for request in TERMINAL_IOCTLS:
        policy.add_rule(deny, "ioctl", sc.Arg(1, sc.MASKED_EQ, 0xFFFFFFFF, request))
    fd = os.memfd_create("seccomp", 0)
    try:
        with os.fdopen(os.dup(fd), "wb") as file:
            policy.export_bpf(file)
        os.lseek(fd, 0, os.SEEK_SET)
        return os.read(fd, 1 << 20)
    finally:
        os.close(fd)


def namespaces():
    return [
        "--unshare-all",
        "--unshare-user",
        "--disable-userns",
        "--die-with-parent",
        "--new-session",
        "--uid",
        str(SANDBOX_UID),
        "--gid",
        str(SANDBOX_UID),
        "--hostname",
        "sandbox",
        "--cap-drop",
        "ALL",
    ]


def system_binds():
    """/usr read-only, and the top-level folders that hold programs and libraries as the host
    has them (symbolic links into /usr on merged-/usr systems)."""
    args = ["--ro-bind", "/usr", "/usr"]
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        path = f"/{name}"
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    return args


def python_folders():
    """The folders the child's Python needs: the installation and the virtual environment."""
    folders = {Path(sys.base_prefix).resolve(), Path(sys.prefix).resolve(), Path(sys.executable).resolve().parent}
    folders = {f for f in folders if not f.is_relative_to("/usr")}
    return [f for f in sorted(folders) if not any(f != g and f.is_relative_to(g) for g in folders)]


def hidden_folders(binds):
    """Folders inside the bound ones that the child must not read: where the data sets are."""
    try:
        sys.path.insert(0, str(REPO))
        import datasets

        places = datasets.data_folders()
    except (ImportError, AttributeError):
        return []
    finally:
        sys.path.remove(str(REPO))
    return sorted(str(p) for p in places if p.is_dir() and any(p.resolve().is_relative_to(b) for b in binds))


GPU_NODES = ("nvidiactl", "nvidia-uvm", "nvidia-uvm-tools", "nvidia-modeset", "nvidia-caps")


def gpu_binds(dev="/dev"):
    """bwrap arguments that make the NVIDIA device nodes of `dev` visible in the sandbox."""
    names = sorted(n for n in os.listdir(dev) if n in GPU_NODES or (n.startswith("nvidia") and n[6:].isdigit()))
    args = []
    for name in names:
        args += ["--dev-bind", os.path.join(dev, name), f"/dev/{name}"]
    if names:
        args += ["--ro-bind", "/sys", "/sys"]
    for folder in os.environ.get("LD_LIBRARY_PATH", "").split(":"):  # the driver's libraries outside /usr
        if (
            folder
            and os.path.isdir(folder)
            and not Path(folder).resolve().is_relative_to("/usr")
            and any(name.startswith(("libcuda", "libnvidia", "libcudnn", "libcublas")) for name in os.listdir(folder))
        ):
            args += ["--ro-bind", folder, folder]
    return args


# Writable files of /proc that only root may write (sysctls, sysrq-trigger...): read-only in any case.
PROC_COVERS = ("sys", "sysrq-trigger", "irq", "bus", "fs", "acpi", "scsi", "driver", "tty", "sysvipc")


def proc_covers():
    args = []
    for name in PROC_COVERS:
        if os.path.exists(f"/proc/{name}"):
            args += ["--ro-bind", f"/proc/{name}", f"/proc/{name}"]
    return args


def device_nodes():
    """A /dev of the harmless nodes only. (Not bubblewrap's --dev: its pseudo-terminals need uid 0
    in an intermediate user namespace, which /proc/self/uid_map would show.)"""
    args = ["--tmpfs", "/dev"]
    for name in ("null", "zero", "full", "random", "urandom"):
        args += ["--dev-bind", f"/dev/{name}", f"/dev/{name}"]
    for name, target in (
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ):
        args += ["--symlink", target, f"/dev/{name}"]
    return args


def interpreter():
    """The Python to run in the sandbox, by its folder's resolved path (the folder bound in the
    sandbox; the file itself may be the virtual environment's link to the installation's)."""
    return str(Path(sys.executable).parent.resolve() / Path(sys.executable).name)


def staging(stage):
    """When the grader is root: the command prefix that binds the Python folders (which may lie
    where the sandbox's user cannot go, e.g. under /root) to subfolders of `stage` (a new folder
    that user can enter), in a private mount namespace of the sandbox's own, and {folder: its
    place in stage}. The host never sees these mounts."""
    sources, binds = {}, []
    for i, folder in enumerate(python_folders()):
        sources[folder] = os.path.join(stage, str(i))
        os.mkdir(sources[folder], 0o755)
        binds += [str(folder), sources[folder]]
    for old in Path(stage).parent.glob("grader-stage-*"):  # left by killed graders (needed only at start-up)
        try:
            if time.time() - old.stat().st_mtime > 3600:
                for folder in old.iterdir():
                    folder.rmdir()
                old.rmdir()
        except OSError:
            pass
    unshare = shutil.which("unshare")
    if unshare is None:
        raise RuntimeError(
            "unshare (util-linux) is needed to run the sandbox when the grader is root "
            "(Debian/Ubuntu: apt-get install util-linux)"
        )
    return [
        unshare,
        "--mount",
        "--propagation",
        "private",
        "/bin/sh",
        "-c",
        'while [ "$1" != -- ]; do mount --bind "$1" "$2" || exit 126; shift 2; done; shift; exec "$@"',
        "stage",
        *binds,
        "--",
    ], sources


def bwrap_arguments(module, limits, device, tensorflow, fds, sources=None):
    """The bubblewrap command line up to `--`; `fds` maps "child" and "submission" to the
    memory file descriptors holding child.py and the submission ("seccomp": the policy);
    `sources` maps Python folders to where bubblewrap finds them (see `staging`)."""
    binds = python_folders()
    # The writable tmpfs first: the Python folders may lie under the host's /tmp (a clone in mktemp -d).
    args = [
        *namespaces(),
        *system_binds(),
        "--proc",
        "/proc",
        *proc_covers(),
        *device_nodes(),
        "--size",
        str(limits.disk_mb << 20),
        "--tmpfs",
        "/tmp",
        "--size",
        str(limits.disk_mb << 20),
        "--tmpfs",
        "/dev/shm",
    ]
    for folder in binds:
        args += ["--ro-bind", str((sources or {}).get(folder, folder)), str(folder)]
    for folder in hidden_folders([Path("/usr"), *binds]):
        args += ["--tmpfs", folder, "--remount-ro", folder]
    for name in ("ld.so.cache", "fonts", "localtime"):
        if os.path.exists(f"/etc/{name}"):
            args += ["--ro-bind", f"/etc/{name}", f"/etc/{name}"]
    args += [
        "--ro-bind-data",
        str(fds["child"]),
        f"{INSIDE}/child.py",
        "--ro-bind-data",
        str(fds["submission"]),
        f"{INSIDE}/submission/{module}.py",
        "--ro-bind-data",
        str(fds["passwd"]),
        "/etc/passwd",
    ]
    if "seccomp" in fds:
        args += ["--seccomp", str(fds["seccomp"])]
    if tensorflow and device in ("gpu", "auto"):
        args += gpu_binds()
    # Only /tmp and /dev/shm are writable (size-capped tmpfs, measured): the rest is read-only.
    return args + ["--remount-ro", "/dev", "--remount-ro", "/", "--chdir", "/tmp"]


def child_environment(workdir, threads, device, tensorflow):
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": workdir,
        "TMPDIR": workdir,
        "LANG": "C.UTF-8",
        "PYTHONHASHSEED": "0",
        "PYTHONDONTWRITEBYTECODE": "1",
        "MPLBACKEND": "Agg",
        "MPLCONFIGDIR": os.path.join(workdir, ".matplotlib"),
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    for name in (
        "OMP_NUM_THREADS",
        "OPENBLAS_NUM_THREADS",
        "MKL_NUM_THREADS",
        "TF_NUM_INTRAOP_THREADS",
        "TF_NUM_INTEROP_THREADS",
    ):
        env[name] = str(threads)
    if device == "cpu" or not tensorflow:
        env["CUDA_VISIBLE_DEVICES"] = "-1"
    elif "CUDA_VISIBLE_DEVICES" in os.environ:
        env["CUDA_VISIBLE_DEVICES"] = os.environ["CUDA_VISIBLE_DEVICES"]
    for name in ("LD_LIBRARY_PATH", "CUDA_HOME", "XLA_FLAGS"):  # needed to find a GPU's libraries
        if device != "cpu" and tensorflow and name in os.environ:
            env[name] = os.environ[name]
    return env


def printable(text, newlines=False):
    """Text from the submission as it may be shown: no terminal control characters (which could
    move the cursor and overwrite the grader's own lines), newlines only where allowed."""
    keep = "\n\t" if newlines else "\t"
    return "".join(ch if ch.isprintable() or ch in keep else "?" for ch in str(text))


def memory_file(name, data):
    fd = os.memfd_create(name, 0)
    os.write(fd, data)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


# ------------------------------------------------------------------ limits over the whole sandbox
class Cgroup:
    """A cgroup for one sandbox, where this process may create one: cgroup v2 (a delegated
    subtree, or root), or v1's memory and pids hierarchies (and cpuacct where it can, for the CPU
    time). The kernel then holds memory and tasks (processes and threads) to the limits, whatever
    the submission forks, and counts the CPU time of every process that ever ran in it."""

    def __init__(self, folders, version, cpu=None):
        self.folders, self.version, self.cpu = folders, version, cpu  # cpu: the folder that counts CPU time

    @classmethod
    def create(cls, limits):
        """A new cgroup with the limits, or None where none can be made."""
        name = f"course-grader-{uuid.uuid4().hex[:12]}"
        memory = (limits.memory_mb + 512) << 20  # + the libraries' page cache; the polling holds memory_mb
        try:
            unified = _own_cgroup_v2()
            if unified is not None:
                cls.remove_stale(unified)
                folder = unified / name
                folder.mkdir()
                group = cls([folder], 2, cpu=folder)  # cpu.stat is there whatever controllers are enabled
                try:
                    (folder / "memory.max").write_text(str(memory))
                    (folder / "pids.max").write_text(str(limits.max_threads))
                except OSError:
                    group.remove()
                    raise
                return group
            memory_root, pids_root = (_own_cgroup_v1(kind) for kind in ("memory", "pids"))
            if memory_root is None or pids_root is None:
                return None
            cpu_root = _own_cgroup_v1("cpuacct")  # optional: without it the CPU time comes from /proc
            for root in (memory_root, cpu_root, pids_root):
                if root is not None:
                    cls.remove_stale(root)
            folders = [memory_root / name] + ([cpu_root / name] if cpu_root else []) + [pids_root / name]
            group = cls([], 1)
            for folder in folders:
                folder.mkdir()
                group.folders.append(folder)
            group.cpu = cpu_root / name if cpu_root else None
            try:
                (folders[0] / "memory.limit_in_bytes").write_text(str(memory))
                (folders[-1] / "pids.max").write_text(str(limits.max_threads))
            except OSError:
                group.remove()
                raise
            return group
        except OSError:
            return None

    @staticmethod
    def remove_stale(parent, older_than=60):
        """Removes the empty cgroups that killed graders left behind (rmdir fails on a used one)."""
        for folder in parent.glob("course-grader-*"):
            try:
                if time.time() - folder.stat().st_mtime > older_than:
                    folder.rmdir()
            except OSError:
                pass

    @property
    def join_files(self):
        return [str(f / "cgroup.procs") for f in self.folders]

    def _read(self, index, name):
        try:
            return (self.folders[index] / name).read_text()
        except OSError:
            return ""

    def _stat(self, index, name):
        return dict(
            (k, int(v))
            for k, v in (line.split() for line in self._read(index, name).splitlines() if len(line.split()) == 2)
        )

    def memory(self):
        """Bytes of anonymous memory and tmpfs files (the sandbox's /tmp) in the group."""
        stat = self._stat(0, "memory.stat")
        if self.version == 2:
            return stat.get("anon", 0) + stat.get("shmem", 0)
        return stat.get("total_rss", stat.get("rss", 0)) + stat.get("total_shmem", stat.get("shmem", 0))

    def tasks(self):
        return int(self._read(-1, "pids.current") or 0)

    def cpu_seconds(self):
        """CPU seconds used by every process that ran in the group (None: not counted here)."""
        if self.cpu is None:
            return None
        try:
            if self.version == 2:
                for line in (self.cpu / "cpu.stat").read_text().splitlines():
                    if line.startswith("usage_usec "):
                        return int(line.split()[1]) / 1e6
                return None
            return int((self.cpu / "cpuacct.usage").read_text()) / 1e9
        except (OSError, ValueError):
            return None

    def oom_killed(self):
        name = "memory.events" if self.version == 2 else "memory.oom_control"
        return self._stat(0, name).get("oom_kill", 0) > 0

    def tasks_refused(self):
        return self._stat(-1, "pids.events").get("max", 0) > 0

    def pids(self):
        found = set()
        for folder in self.folders:
            try:
                found |= {int(p) for p in (folder / "cgroup.procs").read_text().split()}
            except (OSError, ValueError):
                pass
        return found

    def kill(self):
        if self.version == 2 and (self.folders[0] / "cgroup.kill").exists():
            try:
                (self.folders[0] / "cgroup.kill").write_text("1")
            except OSError:
                pass
        for pid in self.pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass

    def remove(self):
        for _ in range(100):
            self.kill()
            for folder in list(self.folders):
                try:
                    folder.rmdir()
                    self.folders.remove(folder)
                except FileNotFoundError:
                    self.folders.remove(folder)
                except OSError:
                    pass
            if not self.folders:
                return
            time.sleep(0.02)


def _own_cgroup_v1(kind):
    root = Path("/sys/fs/cgroup") / kind
    if not (root / "cgroup.procs").exists():
        return None
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if kind in controllers.split(","):
            own = root / path.lstrip("/")
            return own if own.is_dir() and os.access(own, os.W_OK) else (root if os.access(root, os.W_OK) else None)
    return None


def _own_cgroup_v2():
    """Our cgroup v2 folder if it can hold children with memory and pids limits, else None."""
    for root in (Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/unified")):
        if (root / "cgroup.controllers").exists():
            break
    else:
        return None
    path = next(
        (line[3:] for line in Path("/proc/self/cgroup").read_text().splitlines() if line.startswith("0::")), None
    )
    own = root / path.lstrip("/") if path else root
    try:
        enabled = (own / "cgroup.subtree_control").read_text().split()
    except OSError:
        return None
    if not {"memory", "pids"} <= set(enabled) or not os.access(own, os.W_OK):
        return None
    return own


def process_table():
    """{pid: (ppid, pgid, session, threads, resident bytes, pid namespace, CPU seconds)} of every
    process (CPU: its own and that of its children it waited for)."""
    page, tick, table = os.sysconf("SC_PAGE_SIZE"), os.sysconf("SC_CLK_TCK"), {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as file:
                fields = file.read().rsplit(")", 1)[1].split()
            namespace = os.readlink(f"/proc/{entry}/ns/pid")
        except (OSError, IndexError):
            continue
        table[int(entry)] = (
            int(fields[1]),
            int(fields[2]),
            int(fields[3]),
            int(fields[17]),
            int(fields[21]) * page,
            namespace,
            sum(int(f) for f in fields[11:15]) / tick,
        )
    return table


class Usage:
    """Measures the sandbox's processes: through its cgroup when there is one, else by scanning
    /proc for the processes of its PID namespace (bubblewrap) or of its session (no sandbox)."""

    def __init__(self, root_pid, cgroup, sandboxed, tmpfs_bytes=None):
        self.root_pid, self.cgroup, self.sandboxed, self.tmpfs_bytes = root_pid, cgroup, sandboxed, tmpfs_bytes
        self.namespace = None
        self.cpu = 0.0  # the CPU seconds measured so far (never less than before)

    def find_namespace(self, table=None):
        """The sandbox's PID namespace (that of the first child of bubblewrap's outer process)."""
        if self.namespace is None and self.sandboxed:
            table = process_table() if table is None else table
            own = os.readlink("/proc/self/ns/pid")
            self.namespace = next((row[5] for row in table.values() if row[0] == self.root_pid and row[5] != own), None)
        return self.namespace

    def members(self, table):
        if self.sandboxed:
            namespace = self.find_namespace(table)
            return [row for row in table.values() if namespace is not None and row[5] == namespace]
        return [row for pid, row in table.items() if row[2] == self.root_pid or pid == self.root_pid]

    def waiting_seconds(self):
        """Seconds the sandbox's threads have waited for a CPU, ready to run, so far (summed over
        its threads now alive; /proc/PID/task/TID/schedstat): how much a busy machine starves it."""
        if self.cgroup is not None:
            pids = self.cgroup.pids()
        else:
            table = process_table()
            namespace = self.find_namespace(table) if self.sandboxed else None
            pids = [
                pid
                for pid, row in table.items()
                if (row[5] == namespace if self.sandboxed else row[2] == self.root_pid or pid == self.root_pid)
            ]
        total = 0
        for pid in pids:
            try:
                tasks = os.listdir(f"/proc/{pid}/task")
            except OSError:
                continue
            for task in tasks:
                try:
                    with open(f"/proc/{pid}/task/{task}/schedstat") as file:
                        total += int(file.read().split()[1])
                except (OSError, IndexError, ValueError):
                    pass
        return total / 1e9

    def cpu_seconds(self, cached=False):
        """CPU seconds used so far by the sandbox's processes: the cgroup's count where it has
        one, else the sum of its processes' times in /proc (with the children they waited for;
        `cached`: the last such sum, measured at most 0.1 s ago while a question runs)."""
        cpu = self.cgroup.cpu_seconds() if self.cgroup is not None else None
        if cpu is None and cached:
            return self.cpu
        if cpu is None:
            table = process_table()
            members = (
                [table[pid] for pid in self.cgroup.pids() if pid in table]
                if self.cgroup is not None
                else self.members(table)
            )
            cpu = sum(row[6] for row in members)
        self.cpu = max(self.cpu, cpu)
        return self.cpu

    def measure(self):
        """(memory bytes, processes, threads); also updates the CPU seconds (`self.cpu`)."""
        if self.cgroup is not None:  # the kernel's own counts (files in its tmpfs included): no scan of /proc
            self.cpu_seconds()
            return self.cgroup.memory(), len(self.cgroup.pids()), self.cgroup.tasks()
        table = process_table()
        members = self.members(table)
        self.cpu = max(self.cpu, sum(row[6] for row in members))
        memory = sum(row[4] for row in members)
        if self.sandboxed and members:  # the files in its writable tmpfs live in memory too
            pid = max(pid for pid, row in table.items() if row in members)  # past bubblewrap's set-up
            for folder in ("tmp", "dev/shm"):
                try:
                    usage = os.statvfs(f"/proc/{pid}/root/{folder}")
                except OSError:
                    continue
                if usage.f_blocks * usage.f_frsize == self.tmpfs_bytes:  # the sandbox's own tmpfs, not the host's
                    memory += (usage.f_blocks - usage.f_bfree) * usage.f_frsize
        return memory, len(members), sum(row[3] for row in members)


class MachineTooBusy(Exception):
    """The machine starved a submission of CPU time for so long that no fair verdict can be given:
    the grader's problem (exit status 3), never the student's."""


class Deadline:
    """A time limit of a sandbox: `limit` CPU seconds of all its processes together from now (so
    that it does not depend on the machine's load), with a wall-clock backstop of
    `limits.wall_factor` times as many seconds (a submission that sleeps or waits). At the backstop
    a sandbox whose threads are ready to run but wait for a CPU (a busy machine, not a sleeping
    submission) gets more wall-clock time, up to `STARVED_FACTOR` times the backstop; past that the
    machine is too busy to grade (`MachineTooBusy`). Questions get one each; a service may hold one
    for a longer phase (e.g. the training episodes)."""

    PROBE_SECONDS = 0.5  # how long the backstop watches whether the sandbox waits for a CPU
    STARVED_FACTOR = 5

    def __init__(self, sandbox, limit):
        self.sandbox, self.limit = sandbox, limit
        self.wall_limit = self.backstop = limit * sandbox.limits.wall_factor
        self.cpu_start, self.wall_start = sandbox.cpu_seconds(cached=True), time.monotonic()
        self.probe = None  # (wall, seconds waited for a CPU) when the backstop began to watch

    def cpu(self, fresh=True):
        """CPU seconds the sandbox used since the deadline was set (`fresh`: measured now)."""
        return (self.sandbox.cpu_seconds() if fresh else self.sandbox.usage.cpu) - self.cpu_start

    def wall(self):
        return time.monotonic() - self.wall_start

    def wall_left(self):
        return self.wall_limit - self.wall()

    def exceeded(self, fresh=True):
        """None within the limit, else which limit was hit, in a few words."""
        cpu, wall = self.cpu(fresh), self.wall()
        if cpu > self.limit:
            return f"used {cpu:.3g} CPU seconds of its {self.limit:g}"
        if wall <= self.wall_limit:
            return None
        waited = self.sandbox.usage.waiting_seconds() if self.sandbox.usage is not None else 0.0
        if self.probe is None:
            self.probe = (wall, waited)
            self.wall_limit = wall + self.PROBE_SECONDS
            return None
        starved = waited - self.probe[1] >= 0.5 * (wall - self.probe[0])
        self.probe = None
        if not starved:
            return (
                f"slept: {wall:.3g} wall seconds, {self.sandbox.limits.wall_factor:g}x "
                f"the limit of {self.limit:g} (while using {cpu:.2f} CPU seconds)"
            )
        if wall > self.backstop * self.STARVED_FACTOR:
            raise MachineTooBusy(
                f"the machine is too busy to grade: the submission waited for a CPU for most of "
                f"{wall:.0f} wall seconds and got {cpu:.1f} CPU seconds of its {self.limit:g}"
            )
        self.wall_limit = wall + self.limit  # a busy machine: wait on while it computes
        return None

    def used(self):
        """{"cpu_s", "wall_s", "cpu_limit_s", "wall_limit_s"} so far, for reports."""
        return {
            "cpu_s": round(self.cpu(), 3),
            "wall_s": round(self.wall(), 3),
            "cpu_limit_s": self.limit,
            "wall_limit_s": self.wall_limit,
        }


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
            path, reason = bubblewrap()
            if path is None:
                raise RuntimeError(reason)
            fds = {
                "child": memory_file("child.py", CHILD_SCRIPT.read_bytes()),
                "submission": memory_file("submission", self.source),
                "passwd": memory_file("passwd", f"sandbox:x:{SANDBOX_UID}:{SANDBOX_UID}::/tmp:/bin/false\n".encode()),
                "seccomp": memory_file("seccomp", seccomp_program()),
            }
            config["submission"] = f"{INSIDE}/submission/{self.module}.py"
            prefix, sources = [], None
            if sandbox_user() is not None:  # root: bubblewrap runs as an unprivileged user (see sandbox_user)
                self.workdir = tempfile.mkdtemp(prefix="grader-stage-")
                os.chmod(self.workdir, 0o755)
                prefix, sources = staging(self.workdir)
                prefix += drop_privileges()
            command = [
                *prefix,
                path,
                *bwrap_arguments(self.module, self.limits, self.device_requested, self.tensorflow, fds, sources),
                "--",
                interpreter(),
                "-I",
                "-B",
                f"{INSIDE}/child.py",
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
        self.cgroup = Cgroup.create(self.limits)
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
                env=child_environment(workdir, self.limits.threads, self.device_requested, self.tensorflow),
                stdin=subprocess.DEVNULL,
                stdout=output_w,
                stderr=output_w,
                pass_fds=(to_child_r, from_child_w, *fds.values()),
                start_new_session=True,
            )
        finally:
            for fd in (to_child_r, from_child_w, output_w, *fds.values()):
                os.close(fd)
        self.usage = Usage(self.process.pid, self.cgroup, self.isolation == "bubblewrap", self.limits.disk_mb << 20)
        self._reader = threading.Thread(target=self._read_output, args=(output_r,), daemon=True)
        self._reader.start()
        start_deadline = Deadline(self, self.limits.start_time)
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
        return Deadline(self, limit)

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
                        self.on_output(text)

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
        deadline = Deadline(self, limit)
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
    if shape is not None and (
        value.ndim != len(shape) or any(w is not None and w != s for w, s in zip(shape, value.shape))
    ):
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
