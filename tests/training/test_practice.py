"""reluflow.training.practice (notebook 10's measures).

Oracles: hand-made fixtures with known answers (closed forms), scipy's Student t and Spearman, and a plain
recount on the trained parameters.
"""

import numpy as np
import pytest

from reluflow.theory.realdata import load_split
from reluflow.training import practice as P


def test_truncated_variability_share_on_a_hand_fixture():
    """Closed form: one layer W = 1, b = 0 on 1-D points; the truncated entries are the non-positive z."""
    X = np.array([[-2.0], [0.0], [1.0], [3.0]])
    labels = np.array([0, 0, 1, 1])  # class means -1 and 2
    share = P.truncated_variability_share([np.eye(1)], [np.zeros(1)], X, labels)
    dev2 = np.array([1.0, 1.0, 1.0, 1.0])  # (z - mu)^2 for the four points
    assert share.tolist() == [pytest.approx((dev2[0] + dev2[1]) / dev2.sum())]


def test_mean_interval_is_the_student_t_interval():
    from scipy import stats

    v = np.array([0.1, 0.4, 0.35, 0.2, 0.3])
    m, lo, hi = P.mean_interval(v)
    ref = stats.t.interval(0.95, len(v) - 1, loc=v.mean(), scale=stats.sem(v))
    assert m == pytest.approx(v.mean()) and (lo, hi) == pytest.approx(ref, rel=1e-12)
    assert P.mean_interval([0.5]) == (0.5, 0.5, 0.5)
    assert np.isnan(P.mean_interval([np.nan])[0])


@pytest.fixture(scope="module")
def wine_run():
    split = load_split("wine", seed=1)
    return split, P.real_run(split, hidden=(6, 4), cost="squared", seed=2, lr=0.05, n_steps=60, record_every=10)


def test_a_real_run_records_what_a_recount_gives(wine_run):
    """Oracle: a plain forward pass on the trained parameters recounts the monitor's last record and the accuracy."""
    from reluflow import monitor

    split, run = wine_run
    weights, biases, W_out, b_out = monitor.trajectory_parameters(run.trajectory.isel(time=[-1]))[0]
    h = split.X_train
    for ell, (W, b) in enumerate(zip(weights, biases)):
        z = h @ W.T + b
        np.testing.assert_array_equal(run.record.n_truncated.values[-1, ell, :z.shape[1]], (z <= 0).sum(axis=0))
        h = np.maximum(z, 0)
    assert run.train_accuracy == pytest.approx(np.mean((h @ W_out.T + b_out).argmax(1) == split.y_train))
    assert run.record.step.values.tolist() == [0, 10, 20, 30, 40, 50, 60]
    assert run.adaptedness_start.shape == (2,) and np.all(np.isfinite(run.share_end))


def test_rate_count_correlation_follows_a_constructed_run(wine_run):
    """Closed form: a cost made of e^{-r_s t} pieces with rates rising with the count: rho = +1; reversed: -1."""
    from dataclasses import replace

    _, run = wine_run
    S = run.trajectory.sizes["time"]
    t = run.trajectory.time.values
    n = np.arange(S)  # a strictly rising count
    counts = run.record.n_truncated.copy(data=np.zeros_like(run.record.n_truncated.values))
    counts.values[:, 0, 0] = n
    rates = 0.1 + 0.05 * n[:-1]
    cost = np.exp(-np.concatenate([[0.0], np.cumsum(rates * np.diff(t))]))
    up = replace(run, trajectory=run.trajectory.assign(cost=run.trajectory.cost.copy(data=cost)),
                 record=run.record.assign(n_truncated=counts))
    assert P.rate_count_correlation(up) == pytest.approx(1.0)
    down_cost = np.exp(-np.concatenate([[0.0], np.cumsum(rates[::-1] * np.diff(t))]))
    down = replace(up, trajectory=up.trajectory.assign(cost=up.trajectory.cost.copy(data=down_cost)))
    assert P.rate_count_correlation(down) == pytest.approx(-1.0)


def test_bias_flow_prediction_is_first_order_in_the_step(wine_run):
    """Small-step gradient descent against solve_ivp: the error falls about tenfold with the step."""
    split, run = wine_run
    out = P.bias_flow_prediction(run, split, horizon=0.5, lrs=(0.05, 0.005))
    assert out["moved"] > 0 and out["relative_error"][1] <= 0.5 * out["relative_error"][0]


def test_bad_arguments_are_refused():
    split = load_split("iris", seed=0)
    with pytest.raises(TypeError, match="split must be a DataSplit"):
        P.real_run("iris")
    with pytest.raises(ValueError, match="cost must be one of"):
        P.real_run(split, cost="hinge")
    with pytest.raises(ValueError, match="hidden"):
        P.real_run(split, hidden=(4, 0))
    with pytest.raises(ValueError, match="variable must be one of"):
        P.finding_lines(__import__("xarray").Dataset(), "nope")
