"""Bad input gets a clear error that names the argument, the expectation and the received value."""

import numpy as np
import pytest

import reluflow as rf
from reluflow.pipeline import parameters as P


def test_nan_and_inf_are_refused():
    W, b = np.eye(2), np.zeros(2)
    with pytest.raises(ValueError, match=r"X must be finite; got 1 NaN or inf entry"):
        rf.truncation_map(W, b, np.array([[np.nan, 0.0]]))
    with pytest.raises(ValueError, match=r"b must be finite"):
        rf.truncation_map(W, np.array([np.inf, 0.0]), np.zeros((1, 2)))


def test_wrong_shapes_are_refused():
    with pytest.raises(ValueError, match=r"X must have shape \(N, 2\) \(points as rows\); got shape \(3, 3\)"):
        rf.truncation_map(np.eye(2), np.zeros(2), np.zeros((3, 3)))
    with pytest.raises(ValueError, match=r"X must be a 2-D array; got shape \(2,\)"):
        rf.truncation_map(np.eye(2), np.zeros(2), np.zeros(2))
    with pytest.raises(ValueError, match=r"W must be a square \(M, M\) matrix; got shape \(2, 3\)"):
        rf.truncation_map(np.ones((2, 3)), np.zeros(2), np.zeros((1, 3)))
    with pytest.raises(ValueError, match=r"b must have shape \(2,\); got shape \(3,\)"):
        rf.truncation_map(np.eye(2), np.zeros(3), np.zeros((1, 2)))
    with pytest.raises(ValueError, match=r"weights and biases must have one entry per layer; got 2 and 1"):
        rf.cumulative_parameters([np.eye(2), np.eye(2)], [np.zeros(2)])
    with pytest.raises(ValueError, match=r"must hold at least one point"):
        rf.forward([np.eye(2)], [np.zeros(2)], np.zeros((0, 2)))
    with pytest.raises(ValueError, match=r"weights\[1\] \(layer 2\) must have 2 columns"):
        rf.forward([np.eye(2), np.ones((2, 3))], [np.zeros(2), np.zeros(2)], np.zeros((1, 2)))


def test_non_numeric_input_is_refused():
    with pytest.raises(TypeError, match=r"X must be a real numeric array; got dtype bool"):
        rf.truncation_map(np.eye(2), np.zeros(2), np.zeros((1, 2), dtype=bool))
    with pytest.raises(TypeError, match=r"complex"):
        rf.truncation_map(np.eye(2), np.zeros(2), np.zeros((1, 2), dtype=complex))
    with pytest.raises(TypeError, match=r"weights must be a sequence of per-layer arrays"):
        rf.cumulative_parameters(3.0, [np.zeros(2)])
    with pytest.raises(ValueError, match=r"weights must hold at least one layer"):
        rf.cumulative_parameters([], [])


def test_singular_and_ill_conditioned_weights_are_refused():
    msg = r"W is singular or ill-conditioned: condition number .* exceeds max_condition=1e\+08"
    with pytest.raises(ValueError, match=msg):
        rf.truncation_map(np.array([[1.0, 2.0], [2.0, 4.0]]), np.zeros(2), np.zeros((1, 2)))
    W = np.diag([1.0, 1e-9])
    with pytest.raises(ValueError, match=r"cumulative weights\[0\] \(layer 1\) is singular or ill-conditioned"):
        rf.truncated_data([W], [np.zeros(2)], np.zeros((1, 2)))
    # the bound is adjustable, and the identity still holds at the new bound
    out = rf.truncated_data([W], [np.zeros(2)], np.ones((1, 2)), max_condition=1e10)
    np.testing.assert_allclose(out[-1], np.ones((1, 2)))
    with pytest.raises(ValueError, match=r"weights\[1\] \(layer 2\) is singular"):
        rf.cumulative_parameters([np.eye(2), np.zeros((2, 2))], [np.zeros(2)] * 2)


def test_adapted_constructor_errors():
    R = np.eye(2)[None]
    with pytest.raises(ValueError, match=r"scales must be positive; got minimum -1"):
        rf.adapted_network(R, [[1.0, -1.0]], [[0.0, 0.0]])
    with pytest.raises(ValueError, match=r"frames\[0\] must be orthogonal"):
        rf.adapted_network(np.array([[[1.0, 0.1], [0.0, 1.0]]]), [[1.0, 1.0]], [[0.0, 0.0]])
    msg = r"thresholds must have shape \(L, M\) = \(1, 2\) to match frames; got \(1, 3\)"
    with pytest.raises(ValueError, match=msg):
        rf.adapted_network(R, [[1.0, 1.0]], [[0.0, 0.0, 0.0]])
    with pytest.raises(ValueError, match=r"layer 1\) are not adapted: adaptedness"):
        rf.decompose_adapted([np.array([[1.0, 0.5], [0.0, 1.0]])], [np.zeros(2)])
    with pytest.raises(ValueError, match=r"R must be an orthogonal"):
        rf.cone_projection(np.array([[1.0, 1.0], [0.0, 1.0]]), np.zeros(2), np.zeros((1, 2)))


def test_data_errors():
    with pytest.raises(ValueError, match=r"radii must be non-negative"):
        rf.clustered_data([[0.0, 0.0]], [-1.0], 3)
    with pytest.raises(ValueError, match=r"n_per_cluster must have 2 entries"):
        rf.clustered_data([[0.0], [1.0]], 1.0, [3])
    with pytest.raises(ValueError, match=r"n_per_cluster\[0\] must be >= 1; got 0"):
        rf.clustered_data([[0.0], [1.0]], 1.0, [0, 2])
    with pytest.raises(ValueError, match=r"j must be a cluster index in 0..0; got 3"):
        rf.clustered_data([[0.0]], 1.0, 2, seed=0).cluster(3)


def test_parameter_checks_name_the_parameter():
    with pytest.raises(TypeError, match=r"parameter 'seed' must be an int; got float 1.5"):
        P.check_seed(1.5)
    with pytest.raises(ValueError, match=r"parameter 'seed' must lie in \[0, inf\]; got -1"):
        P.check_seed(-1)
    with pytest.raises(ValueError, match=r"parameter 'widths\[1\]' must lie in \[1, inf\]; got 0"):
        P.check_int_list([2, 0], "widths", minimum=1)
    with pytest.raises(TypeError, match=r"parameter 'flag' must be an int; got bool True"):
        P.check_int(True, "flag")
    with pytest.raises(ValueError, match=r"parameter 'eta' must be positive"):
        P.check_float(0.0, "eta", positive=True)


def test_labels_of_the_wrong_length_name_the_array_they_belong_to():
    """The shared check of as_labels(rows=…), which the monitor, curation, schedules and NC1 measures use."""
    from reluflow import monitor
    from reluflow.theory import collapse

    X = np.random.default_rng(0).standard_normal((6, 2))
    with pytest.raises(ValueError, match=r"labels must have shape \(6,\), one label per row of X; got shape \(5,\)"):
        monitor.watch(lambda: ([np.eye(2)], [np.zeros(2)]), X, labels=np.arange(5) % 2)
    with pytest.raises(ValueError, match=r"labels must have shape \(6,\), one label per row of H; got shape \(4,\)"):
        collapse.nc1_variability(X, np.arange(4) % 2)
