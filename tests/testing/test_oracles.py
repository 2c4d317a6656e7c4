"""Tests of the forward-pass and root-finding oracles of reluflow.testing.oracles."""

import numpy as np
import pytest

from reluflow.testing.oracles import forward_pass_truncation_check, one_layer_equilibrium, plain_input_space_images
from reluflow.theory.adapted import adapted_network, rotation


def test_plain_images_of_one_layer_by_hand():
    W, b = np.array([[2.0, 0.0], [0.0, 1.0]]), np.array([-2.0, 1.0])
    X = np.array([[0.0, 0.0], [3.0, -4.0]])
    (img,) = plain_input_space_images([W], [b], X)
    # tau clips x_1 at 1 (2 x_1 - 2 >= 0) and x_2 at -1 (x_2 + 1 >= 0)
    assert np.allclose(img, [[1.0, 0.0], [3.0, -1.0]], atol=1e-15)


def test_forward_pass_truncation_check_agrees_and_is_not_vacuous():
    d = forward_pass_truncation_check([2, 3], [1, 3], n_networks=3, n_points=20, seed=4)
    assert float(d.composed_maps.max()) <= 1e-12 and float(d.adapted_projections.max()) <= 1e-12
    assert float(d.truncated_fraction.min()) > 0.0
    with pytest.raises(ValueError):
        forward_pass_truncation_check([2], [1], n_networks=0, n_points=5, seed=0)


def test_one_layer_equilibrium_is_the_mean_target_when_all_are_truncated():
    R = rotation(20.0)
    X = np.array([[0.0, 0.0], [0.3, -0.2], [-0.1, 0.4]])
    y_frame = np.array([[2.0, 3.0], [2.5, 2.0], [3.0, 2.5]])  # beyond the data in both frame coordinates
    net = adapted_network([R], [[1.0, 2.0]], [[-1.0, -1.0]])
    theta = one_layer_equilibrium(net, X, y_frame @ R, [1.0, 1.0], [5.0, 5.0])
    assert np.allclose(theta, y_frame.mean(axis=0), atol=1e-12)
    with pytest.raises(ValueError, match="lower"):
        one_layer_equilibrium(net, X, y_frame @ R, [5.0, 5.0], [6.0, 6.0])
    with pytest.raises(TypeError, match="AdaptedNetwork"):
        one_layer_equilibrium("net", X, y_frame @ R, [-1.0, -1.0], [5.0, 5.0])


def test_one_layer_equilibrium_of_a_dead_coordinate_is_its_start():
    R = rotation(0.0)
    X = np.array([[0.0, 0.0], [0.3, -0.2]])
    net = adapted_network([R], [[1.0, 1.0]], [[-5.0, 1.0]])
    theta = one_layer_equilibrium(net, X, np.array([[2.0, 2.0], [2.0, 2.0]]), [-5.0, 1.0], [5.0, 5.0])
    assert theta[0] == -5.0 and theta[1] == pytest.approx(2.0, abs=1e-12)
