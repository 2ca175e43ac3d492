"""The sandbox's system policy: what a child sees and may do, as bubblewrap's command line.

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

grader/sandbox.py starts the child with these arguments; grader/limits.py holds it to its limits.
"""

import functools
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SANDBOX_UID = 65534  # the uid inside the sandbox
DEFAULT_SANDBOX_USER = 65533  # the uid (and gid) outside it when the grader is root (see sandbox_user)
INSIDE = "/sandbox"  # where child.py and the submission are, inside the sandbox


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
    """The bubblewrap command line up to `--`; `fds` maps "child", "wire" and "submission" to the
    memory file descriptors holding child.py, wire.py and the submission ("seccomp": the policy);
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
        str(fds["wire"]),
        f"{INSIDE}/wire.py",
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


def memory_file(name, data):
    fd = os.memfd_create(name, 0)
    os.write(fd, data)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd
