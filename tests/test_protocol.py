"""The wire format and the parent-side validation, without a child process."""
import os

import numpy as np
import pytest

from grader import child as wire
from grader.sandbox import Handle, SubmissionError, child_environment, expect_array, expect_handle


def roundtrip(header, arrays=(), max_bytes=1 << 30):
    r, w = os.pipe()
    try:
        wire.send(w, header, arrays)
        os.close(w)
        return wire.receive(r, max_bytes=max_bytes)
    finally:
        os.close(r)


def test_arrays_and_values_roundtrip():
    arrays = []
    value = {"x": np.arange(6, dtype=np.float32).reshape(2, 3), "n": 3, "s": "a", "l": [True, None, 1.5],
             "e": np.zeros((0, 4), np.int64)}
    encoded = wire.encode(value, arrays)
    header, received = roundtrip({"op": "result", "value": encoded}, arrays)
    decoded = wire.decode(header["value"], received)
    assert decoded["x"].dtype == np.float32 and np.array_equal(decoded["x"], value["x"])
    assert decoded["e"].shape == (0, 4) and decoded["n"] == 3 and decoded["l"] == [True, None, 1.5]


def test_objects_become_handles_only_on_the_child_side():
    with pytest.raises(wire.ProtocolError):
        wire.encode(object(), [])
    handles = wire.Handles()
    assert wire.encode(object(), [], handles) == {"$handle": 1}
    assert wire.encode(np.array(["a"], dtype=object), [], handles) == {"$handle": 2}


def test_receiver_rejects_oversized_and_malformed_messages():
    with pytest.raises(wire.ProtocolError, match="exceeds the limit"):
        roundtrip({"op": "result"}, [np.zeros(1000)], max_bytes=100)
    r, w = os.pipe()
    os.write(w, (5).to_bytes(4, "big") + b"nojso")
    os.close(w)
    with pytest.raises(wire.ProtocolError, match="malformed"):
        wire.receive(r)
    os.close(r)
    r, w = os.pipe()
    blob = b'{"op": "result", "arrays": [{"dtype": "object", "shape": [1]}]}'
    os.write(w, len(blob).to_bytes(4, "big") + blob)
    os.close(w)
    with pytest.raises(wire.ProtocolError, match="dtype 'object'"):
        wire.receive(r)
    os.close(r)


def test_truncated_message_is_end_of_file():
    r, w = os.pipe()
    os.write(w, (100).to_bytes(4, "big") + b"{")
    os.close(w)
    with pytest.raises(EOFError):
        wire.receive(r)
    os.close(r)


def test_expect_array_names_the_problem():
    assert expect_array(np.array([1, 2]), "f", kind="i", shape=(2,)).tolist() == [1, 2]
    with pytest.raises(SubmissionError, match=r"f returned shape \(3,\), expected \(2\)"):
        expect_array(np.zeros(3), "f", shape=(2,))
    with pytest.raises(SubmissionError, match="1 non-finite"):
        expect_array(np.array([0.0, np.inf]), "f")
    with pytest.raises(SubmissionError, match="below the allowed minimum 0"):
        expect_array(np.array([-1]), "f", kind="i", low=0)
    with pytest.raises(SubmissionError, match="expected integer"):
        expect_array(np.array([True]), "f", kind="i")
    with pytest.raises(SubmissionError, match="returned str"):
        expect_array("x", "f")
    assert expect_handle(Handle(3), "g") == Handle(3)
    with pytest.raises(SubmissionError, match="expected an object"):
        expect_handle(np.zeros(2), "g")


def test_child_environment_hides_gpus_for_cpu_and_non_tensorflow(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    monkeypatch.setenv("SECRET_TOKEN", "x")
    cpu = child_environment("/tmp/w", 3, "cpu", tensorflow=True)
    assert cpu["CUDA_VISIBLE_DEVICES"] == "-1" and cpu["OMP_NUM_THREADS"] == "3" and "SECRET_TOKEN" not in cpu
    assert child_environment("/tmp/w", 1, "gpu", tensorflow=False)["CUDA_VISIBLE_DEVICES"] == "-1"
    assert child_environment("/tmp/w", 1, "gpu", tensorflow=True)["CUDA_VISIBLE_DEVICES"] == "1"
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert "CUDA_VISIBLE_DEVICES" not in child_environment("/tmp/w", 1, "auto", tensorflow=True)
