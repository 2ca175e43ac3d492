"""The wire format between the grader and its child, both directions, and nothing else.

A message is a 4-byte big-endian length, a UTF-8 JSON header of that length, then the raw bytes
of the arrays the header lists (C order). Inside the JSON, `{"$array": i}` stands for the i-th
array, `{"$handle": n}` for an object that stays in the child (e.g. an Agent), `{"$service": name}`
for a parent-side service the child may call back (e.g. the training environment). Nothing is
ever pickled. Sizes, depth, dtypes and shapes are checked while decoding, without overflow.

This file must not import anything from the repository: the sandbox holds it beside child.py
(grader/sandbox.py starts both from memory), and the parent imports it as `grader.wire`.
"""

import json
import math
import os
import struct

import numpy as np

ALLOWED_DTYPES = {
    "bool",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "float16",
    "float32",
    "float64",
}
MAX_HEADER_BYTES = 1 << 20  # the largest header the parent accepts from the child
MAX_PARENT_HEADER_BYTES = 1 << 28  # the largest header the child accepts from the (trusted) parent
MAX_DEPTH = 100  # nesting of lists, tuples and dicts
MAX_ARRAYS = 100_000


class ProtocolError(Exception):
    """A malformed message: the other side broke the protocol."""


class PayloadTooLarge(Exception):
    """A message this side cannot send (the parent's own question too large: a grader error)."""


# ---------------------------------------------------------------- encoding
def encode(value, arrays, handles=None, depth=0):
    """Turns a value into JSON-able data, appending arrays to `arrays`. Tuples and dicts whose
    keys are not all plain strings are tagged (`$tuple`, `$dict`), so both arrive as they left.
    Objects that are neither numbers, strings, containers nor arrays become handles when
    `handles` is given (the child's side), else raise ProtocolError."""
    if depth > MAX_DEPTH:
        raise ProtocolError(f"a value nested more than {MAX_DEPTH} levels deep")
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, (np.generic, np.ndarray)) or hasattr(value, "numpy"):
        array = np.asarray(value.numpy() if hasattr(value, "numpy") else value)
        if array.dtype.name not in ALLOWED_DTYPES:
            if handles is None:
                raise ProtocolError(f"cannot send an array of dtype {array.dtype}")
            return {"$handle": handles.add(value)}
        arrays.append(array if array.flags.c_contiguous else array.copy(order="C"))  # keeps 0-d arrays 0-d
        return {"$array": len(arrays) - 1}
    if isinstance(value, list):
        return [encode(v, arrays, handles, depth + 1) for v in value]
    if isinstance(value, tuple):
        return {"$tuple": [encode(v, arrays, handles, depth + 1) for v in value]}
    if handles is None and isinstance(value, dict) and len(value) == 1 and next(iter(value)) in ("$handle", "$service"):
        return value  # the parent referring to a child's object or to one of its services
    if isinstance(value, dict):
        if all(isinstance(k, str) and not k.startswith("$") for k in value):
            return {k: encode(v, arrays, handles, depth + 1) for k, v in value.items()}
        if all(isinstance(k, (str, int, float, bool, tuple)) or k is None for k in value):
            return {
                "$dict": [
                    [encode(k, arrays, None, depth + 1), encode(v, arrays, handles, depth + 1)]
                    for k, v in value.items()
                ]
            }
    if handles is None:
        raise ProtocolError(f"cannot send a value of type {type(value).__name__}")
    return {"$handle": handles.add(value)}


def decode(data, arrays, resolve=None, depth=0):
    """Inverse of `encode`; `resolve(kind, payload)` maps handles and services to objects.
    Raises ProtocolError on anything that `encode` cannot have produced."""
    if depth > MAX_DEPTH:
        raise ProtocolError(f"a value nested more than {MAX_DEPTH} levels deep")
    if isinstance(data, list):
        return [decode(v, arrays, resolve, depth + 1) for v in data]
    if isinstance(data, dict):
        if len(data) == 1:
            ((key, payload),) = data.items()
            if key == "$array":
                if isinstance(payload, bool) or not isinstance(payload, int) or not 0 <= payload < len(arrays):
                    raise ProtocolError("reference to a missing array")
                return arrays[payload]
            if key in ("$handle", "$service"):
                if resolve is None:
                    raise ProtocolError(f"unexpected {key}")
                return resolve(key, payload)
            if key == "$tuple":
                if not isinstance(payload, list):
                    raise ProtocolError("malformed $tuple")
                return tuple(decode(v, arrays, resolve, depth + 1) for v in payload)
            if key == "$dict":
                if not isinstance(payload, list) or not all(isinstance(p, list) and len(p) == 2 for p in payload):
                    raise ProtocolError("malformed $dict")
                try:
                    return {
                        decode(k, arrays, None, depth + 1): decode(v, arrays, resolve, depth + 1) for k, v in payload
                    }
                except TypeError:
                    raise ProtocolError("a dict key that cannot be a key") from None
        if any(k.startswith("$") for k in data):
            raise ProtocolError("unknown tagged value")
        return {k: decode(v, arrays, resolve, depth + 1) for k, v in data.items()}
    if data is None or isinstance(data, (bool, int, float, str)):
        return data
    raise ProtocolError(f"unexpected value of type {type(data).__name__}")


def send(fd, header, arrays=(), max_header=MAX_PARENT_HEADER_BYTES, write_some=os.write):
    header = dict(header, arrays=[{"dtype": a.dtype.name, "shape": list(a.shape)} for a in arrays])
    blob = json.dumps(header, allow_nan=True, separators=(",", ":")).encode()
    if len(blob) > max_header:
        raise PayloadTooLarge(
            f"a message header of {len(blob)} bytes (the receiver takes at most {max_header}): "
            "send big payloads as numpy arrays"
        )
    parts = [struct.pack(">I", len(blob)), blob] + [a.reshape(-1).view(np.uint8) for a in arrays]
    for part in parts:
        view = memoryview(part)
        while view:
            view = view[write_some(fd, view) :]


def _read_exact(fd, size, read_some):
    """`size` bytes, read into one buffer (a message is held once, not once more in pieces)."""
    buffer, done = bytearray(size), 0
    while done < size:
        chunk = read_some(fd, min(size - done, 1 << 22))
        if not chunk:
            raise EOFError("the other side closed the connection")
        buffer[done : done + len(chunk)] = chunk
        done += len(chunk)
    return buffer


def _array_spec(spec):
    """(dtype, shape) of an array's description, checked; sizes are Python ints (no overflow)."""
    if not isinstance(spec, dict) or not isinstance(spec.get("dtype"), str) or not isinstance(spec.get("shape"), list):
        raise ProtocolError("malformed array description")
    dtype, shape = spec["dtype"], spec["shape"]
    if (
        dtype not in ALLOWED_DTYPES
        or len(shape) > 8
        or not all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d < 1 << 40 for d in shape)
        or math.prod(max(d, 1) for d in shape) >= 1 << 40
    ):  # even an empty array must be a possible one
        raise ProtocolError(f"array of dtype {dtype!r} and shape {shape}"[:200])
    return dtype, tuple(shape)


def receive(fd, max_bytes=1 << 30, read_some=os.read, max_header=MAX_HEADER_BYTES):
    """Reads one message; returns (header, arrays). Validates sizes and dtypes before
    allocating anything, so a malicious peer cannot make the reader allocate unbounded memory.
    `max_bytes`: the most its arrays may hold, or a function of the header giving it."""
    (size,) = struct.unpack(">I", _read_exact(fd, 4, read_some))
    if size > max_header:
        raise ProtocolError(f"message header of {size} bytes")
    try:
        header = json.loads(_read_exact(fd, size, read_some))
    except (ValueError, RecursionError) as error:
        raise ProtocolError(f"malformed message header ({type(error).__name__})") from None
    if not isinstance(header, dict) or not isinstance(header.get("arrays"), list) or len(header["arrays"]) > MAX_ARRAYS:
        raise ProtocolError("malformed message header")
    shapes = [_array_spec(spec) for spec in header.pop("arrays")]
    sizes = [math.prod(shape) * np.dtype(dtype).itemsize for dtype, shape in shapes]
    limit = max_bytes(header) if callable(max_bytes) else max_bytes
    if sum(sizes) > limit:
        raise ProtocolError(f"message of {sum(sizes)} bytes exceeds the limit of {limit}")
    arrays = []
    for (dtype, shape), n in zip(shapes, sizes):
        data = _read_exact(fd, n, read_some) if n else b""
        try:
            arrays.append(np.frombuffer(data, dtype=dtype).reshape(shape) if n else np.zeros(shape, dtype))
        except (ValueError, MemoryError) as error:
            raise ProtocolError(f"array of dtype {dtype!r} and shape {shape}: {error}"[:200]) from None
    return header, arrays


# ---------------------------------------------------------------- the child
