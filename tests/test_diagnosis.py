"""monitor.diagnose: the flags fire on broken runs and stay silent on healthy ones (5 seeds each)."""

import warnings

import numpy as np
import pytest

from reluflow import monitor, solve, train
from reluflow.testing.problems import random_problem
from reluflow.theory.realdata import load_split
from reluflow.training.diagnosis import DEFAULT_THRESHOLDS, Diagnosis
from reluflow.training.init import he_network

SEEDS = range(5)
SPLIT = load_split("digits", seed=0, n_train=300)
#: The flags each kind of broken run must raise.
EXPECTED = {"negative_biases": {"frozen_out"}, "dying_layer": {"dead_units", "frozen_out"},
            "large_step": {"unstable"}}


def _run(kind, seed, n_steps=120):
    Ws, bs, Wo, bo = he_network([64, 32, 16], 10, seed=seed)
    lr = 0.1
    if kind == "negative_biases":
        bs = [b - 3.0 for b in bs]
    elif kind == "dying_layer":
        bs[1] = bs[1] - 5.0
    elif kind == "large_step":
        lr = 20.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        tr = train(Ws, bs, SPLIT.X_train, SPLIT.y_train, mode="full", cost="cross_entropy", lr=lr, n_steps=n_steps,
                   record_every=1 if kind == "large_step" else 10, W_out=Wo, b_out=bo, train_terminal=True)
    return monitor.from_trajectory(tr, SPLIT.X_train, SPLIT.y_train), tr


@pytest.mark.parametrize("kind", sorted(EXPECTED))
@pytest.mark.parametrize("seed", SEEDS)
def test_flags_fire_on_broken_runs(kind, seed):
    rec, tr = _run(kind, seed)
    d = monitor.diagnose(rec, trajectory=tr)
    assert not d.healthy
    assert EXPECTED[kind] <= set(d.fired), str(d)
    for name in EXPECTED[kind]:
        assert d[name].step >= 0 and d[name].value > d[name].threshold


@pytest.mark.parametrize("seed", SEEDS)
def test_flags_silent_on_healthy_runs(seed):
    rec, tr = _run("healthy", seed)
    d = monitor.diagnose(rec, trajectory=tr)
    assert d.healthy, str(d)
    assert d.fired == ()
    assert all(f.step == -1 for f in d.flags)


def test_values_are_brute_force_counts():
    """dead_units and frozen_out equal a recount from a plain forward pass at each recorded state."""
    rec, tr = _run("dying_layer", 0)
    d = monitor.diagnose(rec, trajectory=tr)
    worst_dead, worst_frozen = 0.0, 0.0
    for weights, biases, _, _ in monitor.trajectory_parameters(tr):
        h, alive = SPLIT.X_train, np.ones(len(SPLIT.y_train), dtype=bool)
        for W, b in zip(weights, biases):
            z = h @ W.T + b
            worst_dead = max(worst_dead, float(np.all(z <= 0, axis=0).mean()))
            alive &= np.any(z > 0, axis=1)
            h = np.maximum(z, 0.0)
        worst_frozen = max(worst_frozen, float(1 - alive.mean()))
    assert d["dead_units"].value == pytest.approx(worst_dead, abs=0)
    # a point whose layer truncates all its units has no gradient path; the path mask may exclude more points
    assert d["frozen_out"].value >= worst_frozen


def test_table_text():
    rec, tr = _run("healthy", 0, n_steps=20)
    text = str(monitor.diagnose(rec, trajectory=tr))
    lines = text.splitlines()
    assert lines[0].split()[:5] == ["flag", "fired", "value", "threshold", "step"]
    assert [ln.split()[0] for ln in lines[1:6]] == ["dead_units", "frozen_out", "unstable", "stalled", "flow_gap"]
    assert lines[-1].endswith("healthy")
    assert repr(monitor.diagnose(rec, trajectory=tr)) == text


def test_without_trajectory_the_cost_flags_are_not_evaluated():
    rec, _ = _run("healthy", 0, n_steps=20)
    d = monitor.diagnose(rec)
    assert not d["unstable"].evaluated and not d["stalled"].evaluated and not d["unstable"].fired


def test_stalled_fires_on_a_flat_cost():
    rec, tr = _run("negative_biases", 1, n_steps=200)
    d = monitor.diagnose(rec, trajectory=tr, thresholds={"min_decrease": 0.05})
    assert d["stalled"].fired and d["stalled"].value < 0.05


@pytest.mark.parametrize("seed", SEEDS)
def test_flow_gap_on_adapted_starts(seed):
    """GD on the biases of an adapted one-layer start follows the bias flow for a small step, not for a step past
    the stability limit."""
    net, X, Y = random_problem(seed, M=3, L=1, N=40)
    Wc, bc = net.cumulative_parameters()
    out = {}
    for lr in (0.01, 6.0 * float(net.scales.max() ** 2)):
        n = int(round(3.0 / lr)) if lr < 1 else 60
        tr = train(list(Wc), list(bc), X, Y, mode="biases", cost="input", lr=lr, n_steps=n)
        flow = solve(net, X, Y, tr.time.values)
        rec = monitor.from_trajectory(tr, X)
        out[lr] = monitor.diagnose(rec, trajectory=tr, prediction=flow)
    small, large = out.values()
    assert not small["flow_gap"].fired and small["flow_gap"].value < 0.05, str(small)
    assert large["flow_gap"].fired, str(large)


def test_bad_input_names_the_argument():
    rec, tr = _run("healthy", 0, n_steps=10)
    with pytest.raises(TypeError, match="record"):
        monitor.diagnose(tr)
    with pytest.raises(TypeError, match="trajectory"):
        monitor.diagnose(rec, trajectory=rec)
    with pytest.raises(ValueError, match="thresholds"):
        monitor.diagnose(rec, thresholds={"dead": 0.5})
    with pytest.raises(ValueError, match=r"thresholds\['dead_share'\]"):
        monitor.diagnose(rec, thresholds={"dead_share": 2.0})
    with pytest.raises(TypeError, match="thresholds"):
        monitor.diagnose(rec, thresholds=[0.5])
    with pytest.raises(ValueError, match="prediction"):
        monitor.diagnose(rec, prediction=tr)
    with pytest.raises(ValueError, match="thresholds"):
        monitor.diagnose(rec, trajectory=tr, prediction=tr.rename({"cost": "thresholds"}))
    with pytest.raises(KeyError, match="name"):
        monitor.diagnose(rec)["nope"]


def test_defaults_documented():
    assert set(DEFAULT_THRESHOLDS) == {"dead_share", "frozen_share", "rise_tol", "tail", "min_decrease",
                                       "cost_floor", "gap_share"}
    assert isinstance(monitor.diagnose, type(lambda: 0)) and Diagnosis.__dataclass_params__.frozen
