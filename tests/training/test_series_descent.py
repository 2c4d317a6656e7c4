"""Notebook 09's gradient-descent runs (reluflow.training.series_descent): outcomes, counts and their errors.

Oracles, named in each test: a closed form (CE23 Thm 2.3's network has zero cost), brute-force recounts of
hand-made runs, and identities of the boundary checks.
"""

from __future__ import annotations

import numpy as np
import pytest

from reluflow.theory import series as S
from reluflow.training import series_descent as SD

C0 = (0.02, 0.08)


def test_descent_runs_near_the_construction_stay_at_zero_cost():
    """Oracle: closed form (CE23 Thm 2.3's network has C_N = 0; a perturbation of 1e-8 keeps C_N ≤ 1e-6 and gradient
    descent does not raise it) and identities of the reading (outcomes among DESCENT_OUTCOMES, one time grid)."""
    runs = SD.descent_runs(2, 3, C0, 2, 1e-8, 0.1, 4, np.random.default_rng(0))
    assert list(runs) == ["near", "random"] and all(len(rs) == 2 for rs in runs.values())
    assert [r["outcome"] for r in runs["near"]] == ["zero cost", "zero cost"]
    assert all(r["cost"][-1] <= 1e-6 for r in runs["near"])
    assert {r["outcome"] for rs in runs.values() for r in rs} <= set(S.DESCENT_OUTCOMES)
    t = runs["near"][0]["time"]
    assert all(np.array_equal(r["time"], t) and r["states"].shape == (len(t), 2) for rs in runs.values() for r in rs)


def _hand_runs():
    run = lambda outcome, states: dict(outcome=outcome, states=np.array(states), s=np.array(states[-1]))  # noqa: E731
    return {"near": [run("zero cost", [[0, 0], [0, 0]]), run("Thm 2.4/2.5 type", [[1, 0], [1, 0]])],
            "random": [run("partly truncated", [[2, 2], [0, 2]]), run("Thm 2.4/2.5 type", [[1, 1], [1, 0]]),
                       run("Thm 2.4/2.5 type", [[2, 0], [1, 0]])]}


def test_outcome_counts_patterns_and_collapsed_fraction_by_hand():
    """Oracle: brute-force recount of five hand-made runs."""
    runs = _hand_runs()
    counts = SD.descent_outcome_counts(runs)
    assert list(counts["near"]) == list(S.DESCENT_OUTCOMES)
    assert counts["near"] == {"zero cost": 1, "Thm 2.4/2.5 type": 1, "merged classes": 0, "partly truncated": 0,
                              "not converged": 0}
    assert counts["random"]["Thm 2.4/2.5 type"] == 2 and counts["random"]["partly truncated"] == 1
    pats = SD.stalled_patterns(runs["random"])
    assert pats == {(1, 0): 2} and str(next(iter(pats))) == "(1, 0)"
    assert SD.stalled_patterns(runs["near"][:1]) == {}
    frac = SD.collapsed_fraction({"near": runs["near"]}, 2)  # near: t0 2 and 1 collapsed, t1 the same
    np.testing.assert_array_equal(frac[0], [[0, 0], [0.5, 0.5], [0.5, 0.5]])
    frac = SD.collapsed_fraction({"random": runs["random"]}, 2)  # random: t0 0, 0, 1 collapsed; t1 1, 1, 1
    np.testing.assert_array_equal(frac[0], [[2 / 3, 0], [1 / 3, 1], [0, 0]])



@pytest.mark.parametrize("call, error, words", [
    (lambda: SD.descent_runs(2, 3, C0, 0, 0.05, 0.1, 5, np.random.default_rng()), ValueError, "n_starts"),
    (lambda: SD.descent_runs(2, 3, C0, 1, 0.0, 0.1, 5, np.random.default_rng()), ValueError, "start_noise"),
    (lambda: SD.descent_runs(2, 3, C0, 1, 0.05, np.inf, 5, np.random.default_rng()), ValueError, "lr"),
    (lambda: SD.descent_outcome_counts([]), TypeError, "runs"),
    (lambda: SD.descent_outcome_counts({"near": []}), ValueError, "runs['near']"),
    (lambda: SD.descent_outcome_counts({"near": [dict(outcome="won", states=np.zeros((1, 2)), s=np.zeros(2))]}),
     ValueError, "won"),
    (lambda: SD.collapsed_fraction(_hand_runs(), 0), ValueError, "Q"),
])
def test_errors_name_the_argument(call, error, words):
    """Oracle: identity of the boundary checks (the message names the argument and what was received)."""
    with pytest.raises(error) as info:
        call()
    assert words in str(info.value)
