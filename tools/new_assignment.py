#!/usr/bin/env python3
"""Adds an assignment in one command: the files every assignment has, with one example student
function, all of which pass `./run test -k NAME` at once.

    python tools/new_assignment.py NAME "Title"

writes
    solutions/NAME.py            the reference: docstring, one student function in a
                                 `### BEGIN SOLUTION` region under a TODO comment, parse_args/main,
                                 and the fenced grader interface
    grader/assignments/NAME.py   the spec: a unit check of that function (the grader's own
                                 computation on secret random inputs, the likely bug named),
                                 summary, limits
    tests/test_NAME.py           the assignment's own tests: its typical bug fails its check
and adds a section to README.md's "The assignments", writes the README's table of assignments
from the registry, and the template assignments/NAME.py (tools/make_templates.py NAME).
The example (the discounted returns G_t) is there to be replaced: see README.md, "Adding an
assignment", for what only the course's author decides.
"""

import keyword
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FENCE = "# " + "=" * 86

SOLUTION = '''#!/usr/bin/env python3
"""__TITLE__.

TODO (the course's author): what the student builds, in the lecture's terms and notation. The
example below computes the returns of an episode: the return G_t = sum_k gamma^k R_(t+1+k), the
discounted sum of the rewards that follow step t.

Run as a script to see what it computes, e.g.
    python __NAME__.py --gamma 0.9

How it is graded (written from the grader's spec, grader/assignments/__NAME__.py):
"""
import argparse

import numpy as np


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\\n")[0])
    parser.add_argument("--steps", default=10, type=int, help="Steps of the episode.")
    parser.add_argument("--gamma", default=0.9, type=float, help="Discount factor.")
    parser.add_argument("--seed", default=42, type=int, help="Random seed.")
    return parser.parse_args(argv)


def discounted_returns(rewards, gamma):
    """The returns of one episode: rewards[t] is R_(t+1), the reward after step t (float array
    [T]); returns the float array [T] of G_t for t = 0, ..., T-1."""
    # TODO: the return G_t = R_(t+1) + gamma R_(t+2) + gamma^2 R_(t+3) + ... of every step t,
    # computed backwards in one pass: G_(T-1) = R_T, and G_t = R_(t+1) + gamma G_(t+1).
    ### BEGIN SOLUTION
    returns = np.zeros(len(rewards))
    following = 0.0
    for t in reversed(range(len(rewards))):
        following = rewards[t] + gamma * following
        returns[t] = following
    return returns
    ### END SOLUTION


def main(argv=None):
    args = parse_args(argv)
    rewards = np.random.default_rng(args.seed).normal(size=args.steps)
    returns = discounted_returns(rewards, args.gamma)
    print(f"G_0 = {returns[0]:.3f} for {args.steps} rewards of mean {rewards.mean():.3f}, gamma {args.gamma:g}")


__FENCE__
# Grader interface: what the grader calls. You need not read or change anything below.
__FENCE__
def returns_of_episodes(rewards, gamma):
    """discounted_returns of every row of `rewards` [episodes, T]: one question for many episodes."""
    return np.stack([discounted_returns(row, gamma) for row in rewards])


if __name__ == "__main__":
    main()
'''

SPEC = '''"""__TITLE__.

TODO (the course's author): what the submission defines, what the grader measures and how, and
where the thresholds come from (a bench, bench/__NAME__.py in the course's repository, measures
them and their false-failure probability with grader/assignments/_stats.py).

The example check: `returns_of_episodes(rewards, gamma)` of the template's grader interface asks
the student's `discounted_returns` for the returns of many episodes of random rewards drawn with
the grader's secret generator, and compares them with the grader's own returns.
"""
import numpy as np

from ..answers import expect_array
from ..spec import Assignment, Check, Limits, Outcome
from ._shared import likely_bug
from ._stats import sci

RETURNS = "discounted_returns"
EPISODES, STEPS, GAMMA = 16, 50, 0.9  # the unit check's random rewards (episodes x steps) and discount
ATOL = 1e-6  # float64 sums of a few products (float32 arithmetic is within it too)

SUMMARY = (
    f"Unit check, 1 point: {RETURNS}, on {EPISODES} episodes of {STEPS} random rewards and gamma {GAMMA:g}, "
    f"must give the returns G_t = R_(t+1) + gamma G_(t+1) to within {sci(ATOL)}, and names the likely bug "
    f"when it fails."
)


def returns(rewards, gamma):
    """The grader's own returns of each row of rewards [episodes, T]."""
    result = np.zeros_like(rewards)
    after = np.zeros(len(rewards))
    for step in range(rewards.shape[1] - 1, -1, -1):
        after = rewards[:, step] + gamma * after
        result[:, step] = after
    return result


def check_returns(ctx):
    if "returns_of_episodes" not in ctx.sandbox.names:
        return Outcome(False, "returns_of_episodes is missing: the grader interface at the end of the template "
                              "must stay in the file")
    rewards = ctx.secret_rng("returns").normal(size=(EPISODES, STEPS))
    got = expect_array(ctx.sandbox.call("returns_of_episodes", rewards, GAMMA), RETURNS, shape=(EPISODES, STEPS))
    expected = returns(rewards, GAMMA)
    error = float(np.max(np.abs(got - expected)))
    threshold = f"<= {sci(ATOL)}"
    if error <= ATOL:
        return Outcome(True, f"{RETURNS}: the returns match", value=error, threshold=threshold)
    hint = likely_bug(got, {
        "gamma is missing (undiscounted returns)": lambda: returns(rewards, 1.0),
        "the returns are summed from the start of the episode instead of from its end":
            lambda: returns(rewards[:, ::-1], GAMMA)[:, ::-1],
        "the first reward R_(t+1) is discounted too (G_t = gamma (R_(t+1) + G_(t+1)))":
            lambda: GAMMA * returns(rewards, GAMMA),
    })
    return Outcome(False, f"{RETURNS}: the returns differ from G_t = R_(t+1) + gamma G_(t+1) by up to {error:.2e}"
                          + (f"; likely bug: {hint}" if hint else ""), value=error, threshold=threshold)


ASSIGNMENT = Assignment(
    name="__NAME__",
    title=__TITLE_REPR__,
    limits=Limits(time=30, start_time=30, memory_mb=1024, threads=1),
    summary=SUMMARY,
    expected_time="",  # measured: bench/sandbox.py --full --only __NAME__ in the course's repository
    checks=(
        Check("returns: G_t = R_(t+1) + gamma G_(t+1)", check_returns, functions=(RETURNS,),
              description="the discounted returns of random episodes"),
    ),
)
'''

TEST = '''"""__TITLE__: its typical bugs, each planted in the reference, fail their named check. What every
assignment must satisfy is in tests/test_assignments.py (`-k __NAME__`)."""
import pytest

from conftest import checks_of, variant

SOLUTION = "solutions/__NAME__.py"
RETURN = "        following = rewards[t] + gamma * following\\n"

# (edit of the reference, the check that must fail, the likely bug it must name)
BUGS = [
    ((RETURN, RETURN.replace("gamma * following", "following")), "returns: G_t = R_(t+1) + gamma G_(t+1)",
     "gamma is missing"),
]


@pytest.mark.parametrize("edit, check, hint", BUGS)
def test_bugs_fail_their_named_check(submission, tmp_path, edit, check, hint):
    path = submission(variant(SOLUTION, edit), name="__NAME__.py")
    result, checks, _ = checks_of(tmp_path, path, "--check", check)
    assert result.returncode == 1, result.stdout
    assert not checks[check]["passed"] and hint in checks[check]["message"], checks[check]["message"]
'''

README_SECTION = """### __TITLE__ (`__NAME__.py`)
TODO (the course's author): what the student builds, how to run it, how it is graded (the
checks and the likely bugs they name), how the thresholds were measured (its bench,
`python bench/__NAME__.py`) and what `--plots DIR` saves.

"""


def fill(text, name, title):
    return (
        text.replace("__FENCE__", FENCE)
        .replace("__TITLE_REPR__", repr(title))
        .replace("__TITLE__", title)
        .replace("__NAME__", name)
    )


def problem(name, title):
    """Why NAME and Title cannot be used, or None."""
    if not name.isidentifier() or keyword.iskeyword(name) or name.startswith("_") or name != name.lower():
        return f"{name!r} is not a lower-case Python identifier (it names the file students hand in: NAME.py)"
    taken = [
        p
        for p in (
            f"solutions/{name}.py",
            f"grader/assignments/{name}.py",
            f"assignments/{name}.py",
            f"tests/test_{name}.py",
        )
        if (ROOT / p).exists()
    ]
    if taken:
        return f"{name!r} exists already: {', '.join(taken)}"
    if not title.strip() or '"' in title or "\n" in title:
        return "the title must be one line without double quotes"
    return None


def readme_with(readme, name, title, table):
    """README.md with the section of the new assignment at the end of "## The assignments" and the
    table of assignments replaced by `table`."""
    head, rest = readme.split("\n## The assignments\n", 1)
    section, tail = rest.split("\n## ", 1) if "\n## " in rest else (rest, None)
    section = section.rstrip("\n") + "\n\n" + fill(README_SECTION, name, title)
    rows = [i for i, line in enumerate(section.split("\n")) if line.startswith("| assignment | file |")]
    if rows:
        lines = section.split("\n")
        end = rows[0]
        while end < len(lines) and lines[end].startswith("|"):
            end += 1
        section = "\n".join(lines[: rows[0]] + [table] + lines[end:])
    return head + "\n## The assignments\n" + section + ("\n## " + tail if tail is not None else "")


def main(argv):
    if len(argv) != 2:
        print('usage: python tools/new_assignment.py NAME "Title"', file=sys.stderr)
        return 2
    name, title = argv
    why = problem(name, title)
    if why:
        print(f"new_assignment.py: {why}", file=sys.stderr)
        return 2
    files = {f"solutions/{name}.py": SOLUTION, f"grader/assignments/{name}.py": SPEC, f"tests/test_{name}.py": TEST}
    for path, text in files.items():
        (ROOT / path).write_text(fill(text, name, title))
    (ROOT / "solutions" / f"{name}.py").chmod(0o755)
    sys.path.insert(0, str(ROOT / "tools"))
    import make_templates

    if make_templates.main([name]):
        return 1
    from grader.assignments import table

    readme = ROOT / "README.md"
    readme.write_text(readme_with(readme.read_text(), name, title, table("solutions")))
    print(
        f"wrote {', '.join(files)}, assignments/{name}.py and README.md's section and table; "
        f'now: .venv/bin/python -m pytest -k {name}, then README.md\'s "Adding an assignment"'
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
