"""The shared Wilson interval. Oracle: scipy.stats.binomtest(...).proportion_ci(method="wilson"), a separate
implementation, and the closed form at k = 0 (upper bound z²/(n + z²))."""

import pytest

from reluflow.results.intervals import Z_95, wilson_interval
from reluflow.theory import constructions
from reluflow.training import ensembles


@pytest.mark.parametrize("k, n", [(0, 10), (3, 10), (10, 10), (57, 200), (1, 1), (199, 200)])
def test_wilson_interval_against_scipy(k, n):
    from scipy.stats import binomtest

    ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    assert wilson_interval(k, n) == pytest.approx((ci.low, ci.high), abs=1e-12)


def test_zero_and_all_successes_have_the_closed_form_ends():
    for n in (1, 7, 50, 1000):
        lo, hi = wilson_interval(0, n)
        assert lo == 0.0 and hi == pytest.approx(Z_95**2 / (n + Z_95**2), rel=1e-14)
        lo_n, hi_n = wilson_interval(n, n)  # k = n mirrors k = 0
        assert hi_n == 1.0 and lo_n == pytest.approx(1.0 - hi, rel=1e-12)


def test_the_notebooks_use_the_one_helper():
    assert ensembles.wilson_interval is wilson_interval and constructions.wilson_interval is wilson_interval


@pytest.mark.parametrize("args, error, match", [((3, 2), ValueError, "k must be <= n"),
                                                ((-1, 2), ValueError, "k"), ((1.5, 2), TypeError, "k"),
                                                ((1, 2, 0.0), ValueError, "z"), ((1, 2, True), TypeError, "z")])
def test_bad_counts_are_refused(args, error, match):
    with pytest.raises(error, match=match):
        wilson_interval(*args)
