"""The wire format and the parent-side validation, without a child process."""

import os

import numpy as np
import pytest

from grader import child, wire
from grader.answers import expect_array, expect_handle
from grader.policy import child_environment
from grader.sandbox import Handle, SubmissionError


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
    value = {
        "x": np.arange(6, dtype=np.float32).reshape(2, 3),
        "n": 3,
        "s": "a",
        "l": [True, None, 1.5],
        "e": np.zeros((0, 4), np.int64),
    }
    encoded = wire.encode(value, arrays)
    header, received = roundtrip({"op": "result", "value": encoded}, arrays)
    decoded = wire.decode(header["value"], received)
    assert decoded["x"].dtype == np.float32 and np.array_equal(decoded["x"], value["x"])
    assert decoded["e"].shape == (0, 4) and decoded["n"] == 3 and decoded["l"] == [True, None, 1.5]


def test_objects_become_handles_only_on_the_child_side():
    with pytest.raises(wire.ProtocolError):
        wire.encode(object(), [])
    handles = child.Handles()  # (the child's side of the wire)
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


def test_tuples_and_dicts_with_any_keys_arrive_as_they_left():
    """gymnasium's FrozenLake model P[s][a] = [(p, s', r, done), ...] crosses as it is."""
    value = {0: {1: [(1.0, 4, 0.0, False)], 2: [(0.5, 3, 1.0, True)]}, "name": ("a", (1, 2)), (1, "x"): None}
    arrays = []
    header, received = roundtrip({"op": "result", "value": wire.encode(value, arrays)}, arrays)
    assert wire.decode(header["value"], received) == value
    assert isinstance(wire.decode(header["value"], received)[0][1][0], tuple)


def test_big_nested_payloads_from_the_parent_and_the_limit_on_the_sending_side():
    big = {s: {a: [(0.25, s, 0.0, False)] * 3 for a in range(4)} for s in range(3600)}  # a 60x60 map
    arrays = []
    r, w = os.pipe()
    reader = __import__("threading").Thread(
        target=lambda: out.append(wire.receive(r, max_header=wire.MAX_PARENT_HEADER_BYTES)), daemon=True
    )
    out = []
    reader.start()
    wire.send(w, {"op": "call", "value": wire.encode(big, arrays)}, arrays)
    reader.join(10)
    os.close(w), os.close(r)
    assert wire.decode(out[0][0]["value"], out[0][1]) == big
    with pytest.raises(wire.PayloadTooLarge, match="receiver takes at most"):  # the parent knows before sending
        wire.send(w, {"op": "call", "value": wire.encode(big, [])}, max_header=1000)


@pytest.mark.parametrize(
    "blob, match",
    [
        (b'{"op": "result", "value": ' + b"[" * 100000 + b"]" * 100000 + b', "arrays": []}', "malformed"),
        (
            b'{"op": "result", "arrays": [{"dtype": "float64", "shape": [4294967296, 4294967296, 4294967296]}]}',
            "array of dtype",
        ),
        (
            b'{"op": "result", "arrays": [{"dtype": "float64", "shape": [0, 549755813888, 549755813888]}]}',
            "array of dtype",
        ),
        (b'{"op": "result", "arrays": [{"dtype": "float64", "shape": [100000, 100000]}]}', "exceeds the limit"),
        (b'{"op": "result", "arrays": [{"dtype": "float64", "shape": [2, 1099511627776]}]}', "array of dtype"),
        (
            b'{"op": "result", "arrays": [{"dtype": "float64", "shape": [1099511627775, 1099511627775]}]}',
            "array of dtype",
        ),
        (b'{"op": "result", "arrays": [{"dtype": "float64", "shape": "12"}]}', "malformed array"),
        (b'{"op": "result", "arrays": [{"dtype": "float64", "shape": [true]}]}', "array of dtype"),
        (b"[1, 2]", "malformed message header"),
    ],
)
def test_hostile_headers_are_protocol_errors(blob, match):
    r, w = os.pipe()
    os.write(w, len(blob).to_bytes(4, "big"))
    writer = __import__("threading").Thread(target=lambda: (os.write(w, blob), os.close(w)), daemon=True)
    writer.start()
    with pytest.raises(wire.ProtocolError, match=match):
        wire.receive(r, max_bytes=1 << 28)
    writer.join(5)
    os.close(r)


@pytest.mark.parametrize(
    "data",
    [
        [[[[0]]]] * 1,
        {"$dict": [[[1, 2], 3]]},  # a list cannot be a key
        {"$tuple": 5},
        {"$array": True},
        {"$bogus": 1, "x": 2},
    ],
)
def test_decoding_refuses_what_encode_cannot_produce(data):
    nested = data
    if data == [[[[0]]]]:
        for _ in range(wire.MAX_DEPTH + 5):
            nested = [nested]
    with pytest.raises(wire.ProtocolError):
        wire.decode(nested, [])
