"""Small fixed problems that several test modules share (the solver's and the comparisons' tests).

Each returns ``(net, X, Y)``: an :class:`~reluflow.theory.adapted.AdaptedNetwork`, points as rows and
per-point input-space targets.
"""

from __future__ import annotations

import numpy as np

from reluflow.theory.adapted import adapted_network, random_adapted_network, rotation
from reluflow.theory.costs import targets_by_label
from reluflow.theory.data import clustered_data

__all__ = ["two_cluster_problem", "random_problem"]


def two_cluster_problem(seed, n: int = 12, L: int = 2):
    """Two clusters of ``n`` points in the plane, their class targets, and an adapted net of depth L ≤ 2."""
    data = clustered_data([[-1.0, 0.6], [1.0, -0.6]], 0.7, n, seed=seed)
    Y = targets_by_label([[-1.6, 1.4], [1.5, -0.2]], data.labels)
    frames = [rotation(0.0), rotation(35.0)][:L]
    scales = [[1.0, 1.3], [0.9, 1.1]][:L]
    thresholds = [[-1.2, 0.3], [-0.6, -1.0]][:L]
    return adapted_network(frames, scales, thresholds), data.points, Y


def random_problem(seed, M: int, L: int, N: int):
    """A random adapted net (thresholds of scale 0.5), Gaussian points and targets shifted by +1."""
    rng = np.random.default_rng(seed)
    net = random_adapted_network(M, L, seed=rng, threshold_scale=0.5)
    X = rng.standard_normal((N, M))
    Y = rng.standard_normal((N, M)) + 1.0
    return net, X, Y
