"""The isolation machinery itself (grader/sandbox.py, policy.py, limits.py): what the sandbox binds, the GPU nodes it
adds, and limits that hold over every process of the sandbox, with or without a cgroup.
(Hostile submissions graded end to end are in test_sandbox.py.)"""

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pytest

from conftest import REPO
from grader import limits, policy
from grader import sandbox as sb
from grader.spec import Limits


def test_bubblewrap_is_there():
    """CI installs bubblewrap (./run): the sandbox tests run there, never skipped."""
    path, reason = policy.bubblewrap()
    assert path is not None, reason


def arguments(device="cpu", tensorflow=True):
    return policy.bwrap_arguments(
        "bandits", Limits(), device, tensorflow, {"child": 5, "wire": 9, "submission": 6, "passwd": 7}
    )


def test_the_sandbox_sees_only_python_read_only():
    args = arguments()
    for flag in ("--unshare-all", "--unshare-user", "--disable-userns", "--die-with-parent", "--new-session"):
        assert flag in args
    assert args[args.index("--uid") + 1] == "65534"
    binds = [args[i + 1] for i, a in enumerate(args) if a in ("--bind", "--dev-bind", "--ro-bind")]
    assert "--bind" not in args  # nothing of the host is writable
    for source in binds:
        path = Path(source).resolve()
        assert not path.is_relative_to(REPO) or path.is_relative_to(Path(sys.prefix).resolve()), source
        assert not path.is_relative_to(Path.home()) or path.is_relative_to(Path(sys.base_prefix).resolve()), source
    masked = [args[i + 1] for i, a in enumerate(args) if a == "--tmpfs"]
    import datasets

    for folder in datasets.data_folders():
        if folder.is_dir() and any(folder.resolve().is_relative_to(Path(b).resolve()) for b in binds):
            assert str(folder) in masked, f"{folder} holds data and is visible"
    assert args[args.index("--size") + 1] == str(Limits().disk_mb << 20)
    tmp = args.index("/tmp")  # the writable tmpfs before the binds: Python may live under the host's /tmp
    assert args[tmp - 1] == "--tmpfs" and tmp < min(
        i for i, a in enumerate(args) if a == "--ro-bind" and args[i + 1] in map(str, policy.python_folders())
    )


def test_gpu_nodes_are_bound_only_for_a_gpu(tmp_path, monkeypatch):
    for name in ("nvidia0", "nvidia1", "nvidiactl", "nvidia-uvm", "nvidia-uvm-tools", "null", "nvidia-foo"):
        (tmp_path / name).touch()
    (tmp_path / "nvidia-caps").mkdir()
    args = policy.gpu_binds(str(tmp_path))
    bound = [args[i + 1] for i, a in enumerate(args) if a == "--dev-bind"]
    assert sorted(Path(p).name for p in bound) == [
        "nvidia-caps",
        "nvidia-uvm",
        "nvidia-uvm-tools",
        "nvidia0",
        "nvidia1",
        "nvidiactl",
    ]
    assert args[args.index("--dev-bind") + 2].startswith("/dev/nvidia")
    assert policy.gpu_binds(str(tmp_path / "nvidia-caps")) == []  # no nodes: nothing bound, not even /sys
    monkeypatch.setattr(policy, "gpu_binds", lambda dev="/dev": ["--dev-bind", "/dev/nvidia0", "/dev/nvidia0"])
    assert "/dev/nvidia0" in arguments("gpu") and "/dev/nvidia0" in arguments("auto")
    assert "/dev/nvidia0" not in arguments("cpu") and "/dev/nvidia0" not in arguments("gpu", tensorflow=False)


HOG = """
import os, time
def hog(megabytes, detach):
    if os.fork() == 0:
        if detach:
            os.setsid()
            if os.fork():
                os._exit(0)
        block = bytearray(megabytes << 20)
        for i in range(0, len(block), 4096):
            block[i] = 1
        time.sleep(600)
        os._exit(0)
    time.sleep(30)
def bomb(n):
    for _ in range(n):
        if os.fork() == 0:
            os.setsid()
            time.sleep(600)
            os._exit(0)
    time.sleep(30)
def marker():
    return os.getpid()
"""


@pytest.fixture(params=["cgroup", "namespace"])
def limits_by(request, monkeypatch):
    if request.param == "namespace":
        monkeypatch.setattr(limits.Cgroup, "create", classmethod(lambda cls, limits: None))
    elif limits.Cgroup.create(Limits()) is None:
        pytest.skip("no cgroup can be created here: the limits are held by scanning the PID namespace")
    return request.param


def sandbox(**limits):
    return sb.Sandbox(HOG.encode(), "hog", Limits(time=20, start_time=30, **limits))


@pytest.mark.parametrize("detach", [False, True])
def test_memory_of_every_process_in_the_sandbox_counts(limits_by, detach):
    with sandbox(memory_mb=200) as box:
        with pytest.raises(sb.SubmissionError) as failure:
            box.call("hog", 400, detach)
        assert failure.value.kind == "memory", failure.value.message
        assert "200 MiB" in failure.value.message


def test_a_fork_bomb_is_stopped(limits_by):
    with sandbox(max_processes=20, max_threads=40) as box:
        with pytest.raises(sb.SubmissionError) as failure:
            box.call("bomb", 200)
        assert failure.value.kind in ("processes", "threads", "exception"), failure.value.message


def test_nothing_is_left_after_closing(limits_by):
    box = sandbox().start()
    cgroup = box.cgroup
    outer = box.process.pid
    namespace = box.usage.find_namespace()
    assert namespace is not None
    with pytest.raises(sb.SubmissionError):
        box.call("bomb", 5, timeout=2)  # five detached sleepers, then a time-out
    box.close()
    assert outer not in limits.process_table()
    deadline = time.monotonic() + 10  # killed processes may stay zombies for a moment, holding nothing
    while time.monotonic() < deadline and any(row[5] == namespace for row in limits.process_table().values()):
        time.sleep(0.1)
    assert not any(row[5] == namespace for row in limits.process_table().values())
    if cgroup is not None:
        assert not any(folder.exists() for folder in cgroup.folders)


def test_without_bubblewrap_the_child_still_runs_and_is_cleaned_up(tmp_path):
    box = sb.Sandbox(HOG.encode(), "hog", Limits(time=20, start_time=30), isolation="none").start()
    workdir = box.workdir
    assert box.call("marker") > 0 and Path(workdir).is_dir()
    box.close()
    assert not Path(workdir).exists()


def test_the_policy_is_part_of_every_sandbox():
    """Seccomp by descriptor, /proc's root-only files read-only, no pseudo-terminals (no --dev);
    with staged folders (the grader as root) the Python folders are bound from their stage."""
    args = policy.bwrap_arguments(
        "bandits", Limits(), "cpu", False, {"child": 5, "wire": 9, "submission": 6, "passwd": 7, "seccomp": 8}
    )
    assert args[args.index("--seccomp") + 1] == "8"
    assert "--dev" not in args and "--ro-bind" in args
    assert [args[i + 1] for i, a in enumerate(args) if a == "--ro-bind" and args[i + 1] == "/proc/sys"]
    assert args.index("/proc/sys") > args.index("--proc")
    folder = policy.python_folders()[0]
    staged = policy.bwrap_arguments(
        "bandits", Limits(), "cpu", False, {"child": 5, "wire": 9, "submission": 6, "passwd": 7}, {folder: "/stage/0"}
    )
    assert staged[staged.index("/stage/0") + 1] == str(folder)
    assert len(policy.seccomp_program()) > 0 and len(policy.seccomp_program()) % 8 == 0  # BPF instructions


def test_root_runs_the_sandbox_as_an_unprivileged_user(monkeypatch):
    monkeypatch.setattr(sb.os, "geteuid", lambda: 0)
    monkeypatch.delenv("GRADER_SANDBOX_UID", raising=False)
    assert policy.sandbox_user() == (65533, 65533)
    prefix = policy.drop_privileges()
    assert prefix[prefix.index("--reuid") + 1] == "65533" and "--clear-groups" in prefix and prefix[-1] == "--"
    monkeypatch.setenv("GRADER_SANDBOX_UID", "1234")
    assert policy.sandbox_user() == (1234, 1234)
    monkeypatch.setenv("GRADER_SANDBOX_UID", "0")
    with pytest.raises(RuntimeError, match="must not be 0"):
        policy.sandbox_user()
    monkeypatch.setattr(sb.os, "geteuid", lambda: 1000)
    assert policy.sandbox_user() is None and policy.drop_privileges() == []


LIBRARIES = """
import numpy as np, gymnasium as gym, tensorflow as tf
def work():
    env = gym.make("CartPole-v1")
    observation, _ = env.reset(seed=1)
    observation, reward, *_ = env.step(0)
    model = tf.keras.Sequential([tf.keras.Input((4,)), tf.keras.layers.Dense(8), tf.keras.layers.Dense(2)])
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(model(observation[None].astype(np.float32)) ** 2)
    grads = tape.gradient(loss, model.trainable_variables)
    return float(loss), len(grads), float(reward), float(np.linalg.svd(np.eye(3))[1].sum())
"""


@pytest.fixture
def fake_dev():
    """A folder of empty files named as NVIDIA's nodes, where the sandbox's user may look (as /dev)."""
    folder = Path(tempfile.mkdtemp(prefix="fake-dev-"))
    os.chmod(folder, 0o755)
    for name in ("nvidia0", "nvidiactl", "nvidia-uvm"):
        (folder / name).touch()
    yield folder
    shutil.rmtree(folder)


def test_tensorflow_numpy_and_gymnasium_work_under_the_policy_with_the_gpu_binds(fake_dev, monkeypatch):
    """The references' libraries under the seccomp policy, with the GPU path's arguments built
    against a fake /dev (empty files named as NVIDIA's nodes: bound, never a real device)."""
    real = policy.gpu_binds
    monkeypatch.setattr(policy, "gpu_binds", lambda dev="/dev": real(str(fake_dev)))
    with sb.Sandbox(
        LIBRARIES.encode(), "libraries", Limits(start_time=300, time=120), device="auto", tensorflow=True
    ) as box:
        loss, grads, reward, singular = box.call("work")
        assert box.device == "cpu"  # the fake nodes are no GPU
    assert loss >= 0 and grads == 4 and reward == 1.0 and singular == 3.0
