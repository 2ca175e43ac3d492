"""The statistics of a check's threshold, for check authors: one place, so that every spec states
its tolerances and its false-failure probability the same way.

A check that compares a noisy measurement of the submission with the reference passes within a
tolerance of z standard errors; `false_fail` says how often a correct submission then fails a
grading, and the spec's summary prints that number (`sci`). Constants measured by a bench (the
reference's mean and standard deviation, ...) are written by `write_constants` into a module
next to the spec, which the spec imports: a bench run changes the numbers, never the code.

    tolerance = mean_tolerance(sd, n, z=5, reference_n=20000)    # |mean - reference| <= tolerance
    normal_tail(5)                  # 5.7e-7: P(|N(0, 1)| > 5), a two-sided check at z = 5
    chi2_tail(50, 8)                # P(chi-square with 8 degrees of freedom > 50)
    binomial_below(1000, 0.74, 700) # P(Binomial(1000, 0.74) < 700), exactly
    k_of_n_fails(0.065, 2, 3)       # a training that fails 6.5% of the time, graded "2 of at most 3"
    false_fail(p1, p2, ...)         # one grading with several independent checks
"""

import ast
import datetime
import math
import pprint
from pathlib import Path


def sci(x):
    """A probability or a tolerance in one significant digit: 1e-05 -> "1e-5", 2.3e-06 -> "2e-6"."""
    return f"{x:.0e}".replace("e-0", "e-")


def mean_tolerance(sd, n, *, z, reference_n=None):
    """z standard errors of a mean of n values with standard deviation sd; with `reference_n`, of
    the difference between that mean and the reference's mean over reference_n values."""
    return z * sd * math.sqrt(1 / n + (1 / reference_n if reference_n else 0))


def rate_tolerance(p, n, *, z):
    """z standard errors of a success rate over n trials of probability p."""
    return z * math.sqrt(p * (1 - p) / n)


def normal_tail(z, *, sides=2):
    """P(|N(0, 1)| > z) (sides=2) or P(N(0, 1) > z) (sides=1)."""
    return math.erfc(z / math.sqrt(2)) * sides / 2


def chi2_tail(x, dof):
    """P(chi-square with `dof` degrees of freedom > x), in closed form (no scipy needed)."""
    if x <= 0:
        return 1.0
    half = x / 2
    if dof % 2 == 0:  # Q(k, x/2) = exp(-x/2) sum_{j<k} (x/2)^j / j!
        return math.exp(-half) * sum(half**j / math.factorial(j) for j in range(dof // 2))
    # odd: Q(k + 1/2, x/2) = erfc(sqrt(x/2)) + exp(-x/2) sum_{j=1..k} (x/2)^(j - 1/2) / Gamma(j + 1/2)
    return math.erfc(math.sqrt(half)) + sum(
        math.exp(-half + (j - 0.5) * math.log(half) - math.lgamma(j + 0.5)) for j in range(1, dof // 2 + 1)
    )


def _binomial_pmf(n, p, i):
    if p in (0.0, 1.0):
        return float(i == (n if p == 1.0 else 0))
    return math.exp(
        math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * math.log(p) + (n - i) * math.log1p(-p)
    )


def binomial_below(n, p, k):
    """P(Binomial(n, p) < k), exactly (k may be a float: below it)."""
    return min(1.0, sum(_binomial_pmf(n, p, i) for i in range(min(n + 1, max(0, math.ceil(k))))))


def binomial_above(n, p, k):
    """P(Binomial(n, p) > k), exactly."""
    return min(1.0, sum(_binomial_pmf(n, p, i) for i in range(max(0, math.floor(k) + 1), n + 1)))


def k_of_n_fails(p_fail, k, n):
    """How often a correct submission fails the rule "at least k of n runs pass" (or "k of at most
    n": stopping once it is decided changes nothing) when one run fails with probability p_fail."""
    return binomial_below(n, 1 - p_fail, k)


def false_fail(*probabilities):
    """The probability that at least one of several independent checks fails a correct submission."""
    return 1 - math.prod(1 - p for p in probabilities)


def write_constants(path, constants, *, by):
    """Writes the measured `constants` ({NAME: Python literal}) as a module a spec imports, e.g.
    grader/assignments/NAME_constants.py, with a header saying which bench wrote them and when.
    Returns the path. The spec reads the module as it is: there are no placeholder values."""
    path = Path(path)
    today = datetime.date.today().isoformat()
    lines = [
        f'"""Measured by {by} in the course\'s repository on {today}, which wrote this file',
        '(grader/assignments/_stats.py: write_constants). Do not edit by hand: run the bench again."""',
    ]
    for name, value in constants.items():
        if not name.isidentifier() or not name.isupper():
            raise ValueError(f"{name!r}: constants are UPPER_CASE identifiers")
        text = pprint.pformat(value, width=100, sort_dicts=False)
        try:
            plain = ast.literal_eval(text) == value
        except (ValueError, SyntaxError):
            plain = False
        if not plain:
            raise ValueError(f"{name}: {text[:80]} is not a plain Python literal (numpy scalars? use float())")
        lines.append(f"{name} = {text}")
    path.write_text("\n".join(lines) + "\n")
    return path
