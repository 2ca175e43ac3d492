"""Validating what a submission answers, for check authors: `expect_array` (type, dtype, shape,
finiteness, range) and `expect_handle` (an object living in the child). A wrong answer is the
submission's failure (`SubmissionError("invalid", ...)`), never a grader error."""

import numpy as np

from .sandbox import Handle, SubmissionError


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
