"""grader/assignments/_stats.py against tables and exact sums: the numbers specs print as their
false-failure probabilities are right."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from grader.assignments import _stats as stats


@pytest.mark.parametrize(
    "x, dof", [(3.841459, 1), (5.991465, 2), (7.814728, 3), (11.0705, 5), (18.30704, 10), (15.50731, 8)]
)
def test_chi_square_tails_match_the_tables_5_percent_quantiles(x, dof):
    assert stats.chi2_tail(x, dof) == pytest.approx(0.05, abs=2e-6)


def test_normal_tails():
    assert stats.normal_tail(1.959964) == pytest.approx(0.05, abs=1e-7)
    assert stats.normal_tail(5, sides=1) == pytest.approx(2.8665e-7, rel=1e-4)


@given(st.integers(1, 60), st.floats(0.01, 0.99), st.integers(-2, 62))
def test_binomial_tails_are_the_exact_sums(n, p, k):
    exact = sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(n + 1) if i < k)
    assert stats.binomial_below(n, p, k) == pytest.approx(exact, abs=1e-12)
    assert stats.binomial_below(n, p, k) + stats.binomial_above(n, p, k - 1) == pytest.approx(1, abs=1e-12)


def test_k_of_n_and_several_checks():
    # REINFORCE with baseline's rule: a training fails 6.5% of the time, 2 of at most 3 must pass
    assert stats.k_of_n_fails(0.065, 2, 3) == pytest.approx(3 * 0.935 * 0.065**2 + 0.065**3)
    assert stats.false_fail(0.1, 0.2) == pytest.approx(0.28)


def test_a_mean_tolerance_holds_a_correct_mean_as_often_as_its_z_says():
    rng = np.random.default_rng(0)
    tolerance = stats.mean_tolerance(2.0, 100, z=2)
    means = rng.normal(0, 2.0, size=(20000, 100)).mean(axis=1)
    assert np.mean(np.abs(means) > tolerance) == pytest.approx(stats.normal_tail(2), abs=0.006)
    assert stats.mean_tolerance(1.0, 100, z=5, reference_n=100) == pytest.approx(5 * math.sqrt(0.02))


def test_sci():
    assert [stats.sci(x) for x in (1e-5, 2.3e-6, 0.04)] == ["1e-5", "2e-6", "4e-2"]


def test_write_constants_writes_a_module_the_spec_imports(tmp_path):
    path = stats.write_constants(
        tmp_path / "x_constants.py", {"EXPECTED": {(0.1, 0.0): (1.25, 0.5)}, "N": 20}, by="bench/x.py"
    )
    namespace = {}
    exec(path.read_text(), namespace)
    assert namespace["EXPECTED"] == {(0.1, 0.0): (1.25, 0.5)} and namespace["N"] == 20
    assert "course's repository" in path.read_text().splitlines()[0]  # the handout may ship it
    with pytest.raises(ValueError, match="not a plain Python literal"):
        stats.write_constants(tmp_path / "y.py", {"MEAN": np.float64(1.5)}, by="bench/x.py")
    with pytest.raises(ValueError, match="UPPER_CASE"):
        stats.write_constants(tmp_path / "y.py", {"mean": 1.5}, by="bench/x.py")
