"""Limits over the whole sandbox, and what it used: memory, tasks and CPU time.

Where a cgroup can be created (root, or a delegated cgroup v2), memory and the number of tasks
are limited by the kernel and measured there, with the CPU time; otherwise every process of the
sandbox's PID namespace is summed ten times a second (`Usage`). A time limit is a `Deadline`:
CPU seconds of all the sandbox's processes, with a wall-clock backstop.
"""

import os
import signal
import time
import uuid
from pathlib import Path


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
