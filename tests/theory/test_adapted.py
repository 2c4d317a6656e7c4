"""Tests of reluflow.theory.adapted additions: the plane rotation used as a frame."""

import numpy as np
import pytest

import reluflow as rf
from reluflow.theory.adapted import rotation


@pytest.mark.parametrize("degrees", [0.0, 30.0, -60.0, 90.0, 137.5])
def test_rotation_turns_the_first_axis_by_the_angle(degrees):
    R = rotation(degrees)
    a = degrees * np.pi / 180.0
    # independent: the image of e_1 is (cos a, sin a), of e_2 is (-sin a, cos a) (counter-clockwise)
    np.testing.assert_allclose(R @ [1.0, 0.0], [np.cos(a), np.sin(a)], atol=1e-15)
    np.testing.assert_allclose(R @ [0.0, 1.0], [-np.sin(a), np.cos(a)], atol=1e-15)
    np.testing.assert_allclose(R @ R.T, np.eye(2), atol=1e-15)
    assert np.linalg.det(R) == pytest.approx(1.0, abs=1e-15)


def test_rotations_compose_and_invert():
    np.testing.assert_allclose(rotation(25.0) @ rotation(35.0), rotation(60.0), atol=1e-15)
    np.testing.assert_allclose(rotation(-40.0), rotation(40.0).T, atol=0)
    np.testing.assert_allclose(rotation(360.0), np.eye(2), atol=1e-15)


def test_givens_rotation_in_higher_dimension():
    R = rotation(30.0, dim=4, plane=(1, 3))
    np.testing.assert_allclose(R @ R.T, np.eye(4), atol=1e-15)
    v = np.array([5.0, 1.0, 7.0, 0.0])
    w = R @ v
    assert w[0] == 5.0 and w[2] == 7.0  # coordinates outside the plane are untouched
    np.testing.assert_allclose(w[[1, 3]], rotation(30.0) @ [1.0, 0.0], atol=1e-15)


def test_rotation_is_a_valid_frame():
    net = rf.adapted_network([rotation(30.0)], [[1.0, 2.0]], [[0.0, 0.0]])
    np.testing.assert_allclose(net.frames[0], rotation(30.0))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(degrees="30"), TypeError, "degrees"),
        (dict(degrees=True), TypeError, "degrees"),
        (dict(degrees=np.inf), ValueError, "degrees"),
        (dict(degrees=1.0, dim=1), ValueError, "dim"),
        (dict(degrees=1.0, dim=3, plane=(0, 0)), ValueError, "plane"),
        (dict(degrees=1.0, dim=3, plane=(0, 3)), ValueError, "plane"),
        (dict(degrees=1.0, plane=None), TypeError, "plane"),
    ],
)
def test_rotation_rejects_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        rotation(**kwargs)
