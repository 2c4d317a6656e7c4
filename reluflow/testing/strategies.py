"""Hypothesis strategies shared by the tests, in the spirit of :mod:`xarray.testing.strategies`.

Property tests draw small problems: a seed, a width M, a depth L, a number of points N, and from them
networks, adapted networks and point clouds built by the library's seeded constructors. Drawing a seed
and building from it (instead of drawing every matrix entry) keeps the examples well conditioned and
makes every failure reproducible from the printed seed.

Needs the ``test`` extra (hypothesis); nothing in ``import reluflow`` imports this module.
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

__all__ = ["seeds", "widths", "depths", "point_counts", "networks", "adapted_networks", "point_clouds"]


def seeds(max_value: int = 2**32 - 1) -> st.SearchStrategy[int]:
    """Seeds for :func:`numpy.random.default_rng` and the library's ``seed=`` arguments."""
    return st.integers(0, max_value)


def widths(max_value: int = 4, min_value: int = 1) -> st.SearchStrategy[int]:
    """Widths M of the square hidden layers (and of the input space)."""
    return st.integers(min_value, max_value)


def depths(max_value: int = 3, min_value: int = 1) -> st.SearchStrategy[int]:
    """Depths L (numbers of hidden layers)."""
    return st.integers(min_value, max_value)


def point_counts(max_value: int = 12, min_value: int = 1) -> st.SearchStrategy[int]:
    """Numbers N of training points."""
    return st.integers(min_value, max_value)


@st.composite
def networks(draw, *, max_width: int = 4, max_depth: int = 3):
    """``(weights, biases)`` of a random square network (:func:`reluflow.random_network`)."""
    from reluflow.theory.network import random_network

    return random_network(draw(widths(max_width)), draw(depths(max_depth)), seed=draw(seeds()))


@st.composite
def adapted_networks(draw, *, max_width: int = 4, max_depth: int = 3):
    """A random :class:`reluflow.AdaptedNetwork` (:func:`reluflow.random_adapted_network`)."""
    from reluflow.theory.adapted import random_adapted_network

    return random_adapted_network(draw(widths(max_width)), draw(depths(max_depth)), seed=draw(seeds()))


@st.composite
def point_clouds(draw, M: int, *, max_points: int = 12, scale: float = 2.0):
    """Points as rows, shape (N, M), Gaussian with standard deviation ``scale``, from a drawn seed."""
    N = draw(point_counts(max_points))
    return scale * np.random.default_rng(draw(seeds())).standard_normal((N, M))
