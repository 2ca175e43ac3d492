"""Device selection (tested on a CPU-only machine) and the grader's own errors (exit 3)."""

import dataclasses
import sys
import types

import pytest

from conftest import REPO
from grader import child, cli
from grader.assignments import all_assignments
from grader.runner import GraderBug, grade
from grader.spec import Check

BANDITS = all_assignments()["bandits"]
TF_BANDITS = dataclasses.replace(BANDITS, tensorflow=True, checks=BANDITS.checks[:1])


def machine_has_gpu():
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


def test_device_gpu_fails_clearly_without_a_gpu(monkeypatch, capsys):
    if machine_has_gpu():
        pytest.skip("this machine has a GPU")
    monkeypatch.setattr(cli, "all_assignments", lambda: {"bandits": TF_BANDITS})
    status = cli.main([str(REPO / "solutions/bandits.py"), "--device", "gpu"])
    assert status == cli.EXIT_USAGE
    assert "TensorFlow sees no GPU (--device gpu)" in capsys.readouterr().err


def test_device_cpu_and_auto_report_the_device_used():
    for device in ("cpu", "auto"):
        report = grade(TF_BANDITS, REPO / "solutions/bandits.py", device=device)
        assert report.passed
        assert report.device == ("cpu" if device == "cpu" or not machine_has_gpu() else report.device)
        assert report.device.startswith(("cpu", "gpu"))


def test_gpu_configuration_enables_memory_growth(monkeypatch):
    """configure_tensorflow against a stand-in for tf.config (no GPU here to do it for real)."""
    calls = []
    gpu = types.SimpleNamespace(name="/physical_device:GPU:0")
    config = types.SimpleNamespace(
        threading=types.SimpleNamespace(
            set_intra_op_parallelism_threads=lambda n: calls.append(("intra", n)),
            set_inter_op_parallelism_threads=lambda n: calls.append(("inter", n)),
        ),
        list_physical_devices=lambda kind: [gpu] if kind == "GPU" else [],
        experimental=types.SimpleNamespace(set_memory_growth=lambda d, on: calls.append(("growth", d.name, on))),
    )
    monkeypatch.setitem(sys.modules, "tensorflow", types.SimpleNamespace(config=config))
    assert child.configure_tensorflow("gpu", 2) == ("gpu (/physical_device:GPU:0)", None)
    assert ("growth", gpu.name, True) in calls and ("intra", 2) in calls
    config.list_physical_devices = lambda kind: []
    assert child.configure_tensorflow("gpu", 2) == ("none", "TensorFlow sees no GPU (--device gpu)")
    assert child.configure_tensorflow("auto", 2) == ("cpu", None)


def buggy_check(ctx):
    return {}["missing"]


def test_a_grader_bug_is_not_a_student_failure(monkeypatch, capsys):
    buggy = dataclasses.replace(BANDITS, checks=(Check("broken check", buggy_check),))
    with pytest.raises(GraderBug, match="broken check"):
        grade(buggy, REPO / "solutions/bandits.py")
    monkeypatch.setattr(cli, "all_assignments", lambda: {"bandits": buggy})
    status = cli.main([str(REPO / "solutions/bandits.py")])
    err = capsys.readouterr().err
    assert status == cli.EXIT_BUG
    assert "grader error (not the submission's fault)" in err and "Traceback" in err and "KeyError" in err
