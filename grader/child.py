"""The child-side runtime: the only grader code that runs next to a submission.

The parent (grader/sandbox.py) starts this file as a script in a fresh, isolated Python
(`python -I`, scrubbed environment, its own temporary working directory). It imports the
submission and then answers the parent's questions by calling the submission's functions.
It holds no thresholds, no data and no scoring: it only moves numbers and arrays.

Wire format, both directions: a 4-byte big-endian length, a UTF-8 JSON header of that
length, then the raw bytes of the arrays the header lists (C order). Inside the JSON,
`{"$array": i}` stands for the i-th array, `{"$handle": n}` for an object that stays in
the child (e.g. an Agent), `{"$service": name}` for a parent-side service the child may
call back (e.g. the training environment). Nothing is ever pickled.

This file must not import anything from the repository: the parent imports it too, for
`send`/`receive`, and runs it as a script for the child.
"""

import json
import math
import os
import re
import struct
import sys
import traceback

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
class Handles:
    def __init__(self):
        self.objects = {}

    def add(self, obj):
        self.objects[len(self.objects) + 1] = obj
        return len(self.objects)

    def get(self, number):
        if number not in self.objects:
            raise ProtocolError(f"no object with handle {number}")
        return self.objects[number]


class ServiceStopped(Exception):
    """Raised inside the submission when a parent-side service refuses to continue,
    e.g. the training environment when the grader's episode budget is used up."""


class ServiceProxy:
    """Stands in the child for a parent-side object: method calls are forwarded to the parent."""

    def __init__(self, name, connection):
        self._name, self._connection = name, connection

    def __getattr__(self, method):
        if method.startswith("_"):
            raise AttributeError(method)
        return lambda *args: self._connection.service(self._name, method, args)

    def __repr__(self):
        return f"<grader service {self._name}>"


class Connection:
    def __init__(self, rfd, wfd):
        self.rfd, self.wfd, self.handles = rfd, wfd, Handles()

    request = None  # the id of the parent's question being answered, echoed in every reply

    def send(self, op, **fields):
        arrays = []
        fields = {k: encode(v, arrays, self.handles) for k, v in fields.items()}
        send(self.wfd, dict(fields, op=op, id=self.request), arrays, max_header=MAX_HEADER_BYTES)

    def receive(self):
        header, arrays = receive(self.rfd, max_header=MAX_PARENT_HEADER_BYTES)

        def resolve(kind, payload):
            return self.handles.get(payload) if kind == "$handle" else ServiceProxy(payload, self)

        return header, decode({k: v for k, v in header.items() if k not in ("op", "id")}, arrays, resolve)

    def service(self, name, method, args):
        self.send("service", name=name, method=method, args=list(args))
        header, fields = self.receive()
        if header["op"] == "service_stop":
            raise ServiceStopped(fields.get("message", "stopped by the grader"))
        return fields["value"]


def location(lineno, cells=()):
    """ "line N" of the submission; of a notebook's code (`cells`: [first line, cell, lines] per
    code cell, made by grader/notebook.py) "cell C, line L"."""
    if not cells or not isinstance(lineno, int):
        return f"line {lineno}"
    first, number, count = max((c for c in cells if c[0] <= lineno), default=cells[0])
    return f"cell {number}, line {min(max(lineno - first + 1, 1), count)}"


def describe_exception(error, submission_file, cells=()):
    """Kind and one-line summary of an exception, naming the submission's own frame."""
    frames = [f for f in traceback.extract_tb(error.__traceback__) if f.filename == submission_file]
    where = f" ({location(frames[-1].lineno, cells)}, in {frames[-1].name})" if frames else ""
    if isinstance(error, SyntaxError) and error.filename == submission_file:
        return "syntax", f"{type(error).__name__}: {error.msg} ({location(error.lineno, cells)})"
    if isinstance(error, NotImplementedError):
        text = str(error) if str(error).startswith("TODO") else f"TODO: {frames[-1].name if frames else error}"
        return "todo", f"unfinished {text}"
    if isinstance(error, ServiceStopped):
        return "stopped", str(error)
    if isinstance(error, MemoryError):
        return "memory", "MemoryError" + where
    return "exception", f"{type(error).__name__}: {error}{where}"


def traceback_text(error, config):
    """The traceback for the student: the submission's path shown as its own file name; for a
    syntax error only the offending line with its caret."""
    frames = traceback.extract_tb(error.__traceback__)
    if isinstance(error, SyntaxError) and error.filename == config["submission"]:
        frames = []
    else:  # from the submission's first frame on: the grader's own frames are not the student's business
        first = next((i for i, f in enumerate(frames) if f.filename == config["submission"]), 0)
        frames = frames[first:][-8:]
    text = "Traceback (most recent call last):\n" + "".join(traceback.format_list(frames)) if frames else ""
    text += "".join(traceback.format_exception_only(type(error), error))
    if config.get("cells"):  # a notebook: its cells' lines, not the joined code's
        text = re.sub(
            rf'File "{re.escape(config["submission"])}", line (\d+)',
            lambda m: f'File "{config["submission"]}", {location(int(m[1]), config["cells"])}',
            text,
        )
    return text.replace(config["submission"], config.get("display", config["submission"]))


def configure_tensorflow(device, threads):
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:  # take memory as needed instead of all of it at start-up
        tf.config.experimental.set_memory_growth(gpu, True)
    if device == "gpu" and not gpus:
        return "none", "TensorFlow sees no GPU (--device gpu)"
    return (f"gpu ({gpus[0].name})" if gpus else "cpu"), None


def set_limits(config):
    import resource

    for name, value in (("RLIMIT_CORE", 0), ("RLIMIT_FSIZE", config["max_file_bytes"])):
        resource.setrlimit(getattr(resource, name), (value, value))
    try:  # if memory runs out on the machine, the kernel kills the submission first
        with open("/proc/self/oom_score_adj", "w") as file:
            file.write("1000")
    except OSError:
        pass


def main():
    config = json.loads(sys.argv[1])
    connection = Connection(config["rfd"], config["wfd"])
    set_limits(config)
    device, device_error = "cpu", None
    if config["tensorflow"]:
        device, device_error = configure_tensorflow(config["device"], config["threads"])
    connection.send("hello", device=device, device_error=device_error, pid=os.getpid(), python=sys.version.split()[0])
    if device_error:
        return

    sys.path.insert(0, os.path.dirname(config["submission"]))
    import importlib.util

    spec = importlib.util.spec_from_file_location(config["module"], config["submission"])
    module = importlib.util.module_from_spec(spec)
    sys.modules[config["module"]] = module
    try:
        spec.loader.exec_module(module)
    except BaseException as error:  # SystemExit included: exiting during import is a failure
        kind, message = describe_exception(error, config["submission"], config.get("cells"))
        if isinstance(error, SystemExit):
            kind, message = "exit", f"the submission called exit({error.code}) while being imported"
        connection.send("error", kind=kind, message=message, traceback=traceback_text(error, config))
        return
    connection.send("ready", names=sorted(n for n in vars(module) if not n.startswith("_")))

    while True:
        header, fields = connection.receive()
        if header["op"] == "exit":
            return
        connection.request = header.get("id")
        target = fields["target"]
        label = target if isinstance(target, str) else target[1]
        try:
            if isinstance(target, str):
                function = module
                for part in target.split("."):
                    function = getattr(function, part)
            else:  # [object, attribute]
                function = getattr(*target)
            if header["op"] == "getattr":
                value = function
            elif header["op"] == "grad":
                value = gradient(function, fields["args"], fields["wrt"])
            else:
                value = function(*fields.get("args", []), **fields.get("kwargs", {}))
            connection.send("result", value=value)
        except BaseException as error:
            kind, message = describe_exception(error, config["submission"], config.get("cells"))
            if isinstance(error, SystemExit):
                kind, message = "exit", f"the submission called exit({error.code}) during {label}"
            connection.send("error", kind=kind, message=message, traceback=traceback_text(error, config))
            if isinstance(error, (SystemExit, KeyboardInterrupt)):
                return


def gradient(function, args, wrt):
    """Value of function(*args) and its gradients with respect to the arguments listed in
    `wrt` (generic automatic differentiation; what the gradients should be is the parent's business)."""
    import tensorflow as tf

    args = [tf.constant(a) if isinstance(a, np.ndarray) else a for a in args]
    with tf.GradientTape() as tape:
        for i in wrt:
            tape.watch(args[i])
        value = function(*args)
    grads = tape.gradient(value, [args[i] for i in wrt], unconnected_gradients=tf.UnconnectedGradients.ZERO)
    return [value, grads]


if __name__ == "__main__":
    main()
