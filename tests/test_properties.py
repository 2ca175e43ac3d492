"""No hostile answer is a grader error: property-based gradings of generated submissions.

A generated submission is a reference solution with one of its functions (a student's part, the
grader interface, or a helper it calls) replaced by a generated behaviour: on each call, in turn,
one of a few actions: answer as the reference does; return an arbitrary value (numbers, strings,
None, nested lists, tuples and dicts, arrays of any dtype -- object, complex, bool, datetime,
structured -- and shape, huge ones within the limits, NaN and infinities, array subclasses,
self-containing lists, objects); return the reference's answer transformed (another dtype or
shape, a list, NaN, empty); raise any exception (SystemExit, KeyboardInterrupt, MemoryError,
an exception whose str() raises...); sleep (briefly or for ever); exit or kill itself; print
junk; overwrite its arguments; call the grader's services (the training episodes) never, again
and again, with wrong arguments, or unknown methods. Each generated submission is graded by the
real grader in the real sandbox, and the grading must end with status `passed` or `failed`:
never a grader error (exit status 3, `GraderBug`) and never an exception out of the grader.

The same machinery serves every assignment (`TARGETS`): bandits and value iteration are graded in
full; the TensorFlow assignments only on their unit checks (a training costs minutes). The fast
suite runs in CI (`EXAMPLES`); the thorough one (`-m thorough`, a few hundred per assignment,
`PROPERTY_EXAMPLES=N` to change) is not run by default (pyproject.toml's addopts).
"""

import os
import textwrap

import pytest
from hypothesis import HealthCheck, Phase, example, given, note, settings
from hypothesis import strategies as st

from conftest import REPO

TARGETS = {  # the functions a generated behaviour may replace, and the checks graded
    "bandits": (["Agent.select_actions", "Agent.update", "Agent.__init__", "set_estimates", "Environment.step"], ()),
    "value_iteration": (["q_values", "sweep", "value_iteration", "greedy_policy"], ()),
    "reinforce": (
        [
            "compute_returns",
            "policy_loss",
            "sample_actions",
            "Agent.predict",
            "Agent.train",
            "Agent.__init__",
            "train",
            "evaluate",
            "sample_with_seed",
        ],
        ("returns", "loss", "policy", "Agent.train", "sample", "train:", "evaluate"),
    ),
    "reinforce_baseline": (
        [
            "compute_returns",
            "policy_loss",
            "value_loss",
            "sample_actions",
            "Agent.predict",
            "Agent.predict_values",
            "Agent.train",
            "train",
            "evaluate",
        ],
        ("returns", "loss", "policy", "Agent.train", "sample", "train:", "evaluate"),
    ),
    "vae": (
        ["sample_z", "reconstruction_loss", "latent_loss", "build_encoder", "build_decoder", "VAE.train_step"],
        ("encoder", "decoder", "sample", "latent loss", "reconstruction loss", "train step"),
    ),
}
TRAIN_WITHOUT_PLAYING = (
    "a[1].reset(2)\na[0].train(_np.zeros((3, 4), _np.float32), _np.zeros(3, _np.int64), _np.ones(3, _np.float32))"
)
EXPLICIT = {  # always tried first: answers that made the grader blame itself before (issue 15)
    "reinforce": [
        ("train", ["return None"]),
        ("train", [TRAIN_WITHOUT_PLAYING]),
        ("evaluate", ["return _np.full(a[2], 500.0)"]),
    ],
    "reinforce_baseline": [
        ("train", ["return None"]),
        ("train", [TRAIN_WITHOUT_PLAYING]),
        ("evaluate", ["return _np.full(a[2], 500.0)"]),
    ],
}
EXAMPLES = {"bandits": 12, "value_iteration": 8, "reinforce": 2, "reinforce_baseline": 2, "vae": 2}
THOROUGH = int(os.environ.get("PROPERTY_EXAMPLES", "300"))

# ------------------------------------------------------------------ values, as Python source
DTYPES = [
    "bool",
    "int8",
    "uint8",
    "int64",
    "uint64",
    "float16",
    "float32",
    "float64",
    "complex64",
    "complex128",
    "object",
    "U3",
    "S2",
    "datetime64[s]",
    "timedelta64[ms]",
    "[('a', 'f8'), ('b', 'i4')]",
]
shapes = st.one_of(
    st.lists(st.integers(0, 5), max_size=4).map(tuple),
    st.sampled_from([(1 << 22,), (2000, 2000), (1, 1, 1, 1, 1, 1, 1, 1), (0, 1 << 30)]),
)
fills = st.sampled_from(
    ["0", "1", "-1", "0.5", "float('nan')", "float('inf')", "1e300", "2**70", "'x'", "None", "True"]
)
scalars = st.one_of(
    st.sampled_from(
        [
            "None",
            "True",
            "False",
            "0",
            "-1",
            "2**70",
            "-2**200",
            "float('nan')",
            "float('-inf')",
            "1e308",
            "-0.0",
            "1j",
            "b'bytes'",
            "Ellipsis",
            "NotImplemented",
            "object()",
            "(lambda: 1)",
            "_np.float16(3)",
            "_np.int64(-7)",
            "_np.uint64(2**64 - 1)",
            "_np.complex128(1j)",
            "_np.datetime64('2020-01-01')",
            "_np.str_('a')",
            "_np.bool_(True)",
            "_np.void(b'ab')",
            "_np.float64('nan')",
            "range(3)",
            "{1, 2}",
            "_Weird()",
            "_np",
            "print",
            "_sys.stdout",
            "type",
            "_np.ndarray",
        ]
    ),
    st.integers().map(repr),
    st.floats().map(lambda f: f"float({str(f)!r})"),
    st.text(max_size=20).map(repr),
)
arrays = st.one_of(
    st.builds(lambda shape, dtype, fill: f"_arr({shape!r}, {dtype!r}, {fill})", shapes, st.sampled_from(DTYPES), fills),
    st.sampled_from(
        [
            "_np.zeros(3).view(_np.matrix)",
            "_np.ma.masked_array([1.0, 2.0], mask=[0, 1])",
            "_np.zeros(4)[::2]",
            "_np.zeros((3, 3)).T",
            "_np.broadcast_to(_np.zeros(1), (1 << 20,))",
            "_np.array([None, 1, 'a'], dtype=object)",
            "_np.zeros(2).view(_np.recarray)",
        ]
    ),
)


def containers(children):
    return st.one_of(
        st.lists(children, max_size=4).map(lambda xs: "[" + ", ".join(xs) + "]"),
        st.lists(children, max_size=4).map(lambda xs: "(" + "".join(x + ", " for x in xs) + ")"),
        st.dictionaries(
            st.sampled_from(["'a'", "1", "None", "(1, 2)", "'$array'", "'$handle'", "1.5"]), children, max_size=3
        ).map(lambda d: "{" + ", ".join(f"{k}: {v}" for k, v in d.items()) + "}"),
    )


values = st.one_of(
    st.recursive(st.one_of(scalars, arrays), containers, max_leaves=6),
    st.sampled_from(["_deep(150)", "_deep(5000)", "_loop()", "[_np.zeros(1)] * 200000"]),
)
transforms = st.sampled_from(
    [
        "r",
        "_np.asarray(r).astype({dtype!r})",
        "_np.asarray(r)[..., None]",
        "_np.asarray(r).T",
        "_np.asarray(r).ravel()",
        "_np.asarray(r).tolist()",
        "_np.asarray(r) * _np.nan",
        "_np.asarray(r)[:0]",
        "_np.asarray(r)[:1]",
        "-_np.asarray(r)",
        "_np.asarray(r) + 1e300",
        "(r, r)",
        "[r]",
        "{{'a': r}}",
        "_np.asarray(r, dtype=object)",
        "_np.asarray(r).astype(int)",
        "_np.zeros_like(r)",
        "_np.ones_like(r) * 1e-300",
        "_np.asarray(r)[::-1]",
        "_np.asarray(r).reshape(-1, 1)",
    ]
)
exceptions = st.sampled_from(
    [
        "ValueError('boom')",
        "SystemExit(3)",
        "SystemExit('text')",
        "KeyboardInterrupt()",
        "MemoryError()",
        "RecursionError()",
        "NotImplementedError('TODO: something_else')",
        "NotImplementedError()",
        "BaseException()",
        "GeneratorExit()",
        "StopIteration()",
        "_Unprintable()",
        "Exception('x' * 1000000)",
        "ArithmeticError('\\x1b[2J')",
        "_np.linalg.LinAlgError()",
        "OSError(28, 'No space left')",
        "TypeError()",
        "AssertionError()",
    ]
)
service_calls = st.lists(
    st.tuples(
        st.sampled_from(["reset", "step", "reset", "step", "close", "seed", "_private", "__class__", "nonexistent"]),
        st.lists(
            st.one_of(
                values,
                st.sampled_from(
                    [
                        "1",
                        "2",
                        "1024",
                        "1025",
                        "0",
                        "-1",
                        "_np.zeros(1, int)",
                        "_np.ones(2, int)",
                        "_np.zeros(1024, int)",
                    ]
                ),
            ),
            max_size=2,
        ),
        st.booleans(),
        st.sampled_from([1, 1, 2, 50]),
    ),
    max_size=4,
)


def poke(generated):
    calls, then_answer = generated
    listed = ", ".join(
        f"({method!r}, [{', '.join(args)}], {swallow}, {times})" for method, args, swallow, times in calls
    )
    return f"_poke(a, k, [{listed}])\n" + ("return _orig(*a, **k)" if then_answer else "return None")


actions = st.one_of(
    st.just("return _orig(*a, **k)"),
    values.map(lambda v: f"return {v}"),
    st.tuples(transforms, st.sampled_from(DTYPES)).map(
        lambda t: "r = _orig(*a, **k)\nreturn " + t[0].format(dtype=t[1])
    ),
    exceptions.map(lambda e: f"raise {e}"),
    st.sampled_from([0, 0.001, 0.01, 0.05, 0.05, 0.05, 1e6]).map(lambda s: f"_time.sleep({s})\nreturn _orig(*a, **k)"),
    st.sampled_from(
        [
            "_os._exit(0)",
            "_os._exit(3)",
            "_os.kill(_os.getpid(), 9)",
            "_os.kill(_os.getpid(), 11)",
            "_sys.stdout.write('\\x1b[31m' * 10000 + '\\n' * 1000)\nreturn _orig(*a, **k)",
            "_sys.stderr.buffer.write(bytes(range(256)) * 100)\nreturn _orig(*a, **k)",
            "_spoil(a, k)\nreturn _orig(*a, **k)",
            "r = _orig(*a, **k)\n_spoil(a, k)\nreturn r",
            "_time.sleep(0.05)\n_os.kill(_os.getppid(), 9)\nreturn _orig(*a, **k)",
        ]
    ),
    st.tuples(service_calls, st.booleans()).map(poke),
)


PRELUDE = """

# ---------------------------------------------------------------- generated by tests/test_properties.py
import numpy as _np, os as _os, sys as _sys, time as _time


class _Weird:
    def __eq__(self, other):
        raise RuntimeError("no comparing")
    def __len__(self):
        return -1
    def __float__(self):
        raise RuntimeError("no float")


class _Unprintable(Exception):
    def __str__(self):
        raise RuntimeError("no str")


def _arr(shape, dtype, fill):
    a = _np.zeros(shape, dtype)
    try:
        a[...] = fill
    except Exception:
        pass
    return a


def _deep(n):
    x = []
    for _ in range(n):
        x = [x]
    return x


def _loop():
    x = []
    x.append(x)
    return x


def _spoil(a, k):
    for x in list(a) + list(k.values()):
        if isinstance(x, _np.ndarray) and x.flags.writeable and x.size:
            x.reshape(-1)[:1] = 0 if x.dtype.kind in "biu" else _np.nan


def _poke(a, k, calls):
    services = [x for x in list(a) + list(k.values()) if type(x).__name__ == "ServiceProxy"]
    for service in services:
        for method, args, swallow, times in calls:
            for _ in range(times):
                try:
                    getattr(service, method)(*args)
                except Exception:
                    if not swallow:
                        raise


def _hostile(path, actions):
    owner = _sys.modules[__name__]
    *parents, name = path.split(".")
    for part in parents:
        owner = getattr(owner, part)
    original, calls = getattr(owner, name), [0]

    def wrapper(*a, **k):
        calls[0] += 1
        return actions[(calls[0] - 1) % len(actions)](original, a, k)
    setattr(owner, name, wrapper)
"""


def submission_source(name, target, bodies):
    """solutions/NAME.py with `target` (e.g. "Agent.update") replaced by a wrapper that, on its
    i-th call, runs the body bodies[i % len(bodies)] (with `_orig`, `a`, `k`)."""
    source = (REPO / "solutions" / f"{name}.py").read_text()
    main = source.rindex('\nif __name__ == "__main__":')
    functions = "".join(
        f"\n\ndef _action{i}(_orig, a, k):\n{textwrap.indent(body, '    ')}\n" for i, body in enumerate(bodies)
    )
    listed = ", ".join(f"_action{i}" for i in range(len(bodies)))
    return source[:main] + PRELUDE + functions + f"\n\n_hostile({target!r}, [{listed}])\n" + source[main:]


def submissions(name):
    """(the function replaced, the bodies of its behaviours)."""
    return st.tuples(st.sampled_from(TARGETS[name][0]), st.lists(actions, min_size=1, max_size=3))


# ------------------------------------------------------------------ the property
def graded_without_error(name, target, bodies, tmp_path):
    """Grades the reference NAME.py with `target` replaced by `bodies` (`submission_source`) in the
    real sandbox; asserts the grading ends passed or failed."""
    import dataclasses

    from grader import runner
    from grader.assignments import all_assignments

    assignment = all_assignments()[name]
    checks = TARGETS[name][1]
    if checks:
        assignment = dataclasses.replace(
            assignment, checks=tuple(c for c in assignment.checks if any(text in c.name for text in checks))
        )
    path = tmp_path / f"{name}.py"
    path.write_text(submission_source(name, target, bodies))
    limits = assignment.limits.override(time=min(assignment.limits.time, 10), wall_factor=2)
    report = runner.grade(assignment, path, limits=limits, seed=1).to_dict()  # GraderBug: the property fails
    assert report["status"] in ("passed", "failed"), report
    note(f"{report['status']}: " + "; ".join(f"{c['name']}: {c['message'][:200]}" for c in report["checks"]))


def run_property(name, examples, tmp_path, derandomize):
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=derandomize,
        phases=[Phase.explicit, Phase.generate],  # no shrinking: each example is a grading (seconds)
        suppress_health_check=list(HealthCheck),
    )
    @given(submission=submissions(name))
    def graded(submission):
        graded_without_error(name, *submission, tmp_path)

    for submission in EXPLICIT.get(name, [])[::-1]:
        graded = example(submission=submission)(graded)
    graded()


@pytest.mark.parametrize("name", list(TARGETS))
def test_no_generated_submission_is_a_grader_error(name, tmp_path):
    if TARGETS[name][1]:  # TensorFlow: unit checks only, few examples
        pytest.importorskip("tensorflow")
    run_property(name, EXAMPLES[name], tmp_path, derandomize=True)


@pytest.mark.slow
@pytest.mark.thorough
@pytest.mark.parametrize("name", list(TARGETS))
def test_no_generated_submission_is_a_grader_error_thorough(name, tmp_path):
    run_property(name, THOROUGH if not TARGETS[name][1] else max(THOROUGH // 10, 1), tmp_path, derandomize=False)
