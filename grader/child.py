"""The child-side runtime: the only grader code that runs next to a submission.

The parent (grader/sandbox.py) starts this file as a script in a fresh, isolated Python
(`python -I`, scrubbed environment, its own temporary working directory). It imports the
submission and then answers the parent's questions by calling the submission's functions.
It holds no thresholds, no data and no scoring: it only moves numbers and arrays.

The messages it exchanges with the parent are in the wire format of grader/wire.py, which the
sandbox holds beside this file (/sandbox/wire.py). Neither imports anything else from the
repository: the child runs them as plain files in the sandbox.
"""

import json
import os
import re
import sys
import traceback

import numpy as np


def _sibling(name):
    """The module NAME.py beside this file, loaded by its path (as a script under `python -I`, no
    folder of ours is on sys.path): in the sandbox, /sandbox/wire.py."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        f"_{name}", os.path.join(os.path.dirname(os.path.abspath(__file__)), f"{name}.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


try:  # imported by the grader as grader.child
    from . import wire
except ImportError:  # run as the child's script
    wire = _sibling("wire")
ProtocolError, encode, decode, send, receive = wire.ProtocolError, wire.encode, wire.decode, wire.send, wire.receive
MAX_HEADER_BYTES, MAX_PARENT_HEADER_BYTES = wire.MAX_HEADER_BYTES, wire.MAX_PARENT_HEADER_BYTES


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
