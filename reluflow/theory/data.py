"""Seeded synthetic training data: clusters (classes) of points in R^M.

The data matrix has one point per row, shape (N, M), with integer labels j = 0..Q-1 (the
mathematics numbers clusters from 1; the code from 0, as numpy does).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from reluflow.validation import as_real_array, check_memory, check_positive_int

__all__ = ["ClusteredData", "clustered_data"]


@dataclass(frozen=True, repr=False)
class ClusteredData:
    """Points (N, M), labels (N,), and the centres (Q, M) and radii (Q,) they were drawn with."""

    points: np.ndarray
    labels: np.ndarray
    centres: np.ndarray
    radii: np.ndarray

    @property
    def n_clusters(self) -> int:
        """Q, the number of clusters."""
        return self.centres.shape[0]

    @property
    def counts(self) -> np.ndarray:
        """N_j, the number of points in each cluster."""
        return np.bincount(self.labels, minlength=self.n_clusters)

    def cluster(self, j: int) -> np.ndarray:
        """The points of cluster j, shape (N_j, M)."""
        if not 0 <= j < self.n_clusters:
            raise ValueError(f"j must be a cluster index in 0..{self.n_clusters - 1}; got {j}")
        return self.points[self.labels == j]

    def __repr__(self) -> str:
        N, M = self.points.shape
        return f"<ClusteredData N={N} points in R^{M}, Q={self.n_clusters} clusters, sizes {self.counts.tolist()}>"


def clustered_data(centres, radii, n_per_cluster, *, seed=None) -> ClusteredData:
    """Q clusters drawn uniformly from the balls B(centre_j, radius_j) in R^M.

    Parameters
    ----------
    centres : array (Q, M)
    radii : float or array (Q,), non-negative
    n_per_cluster : int or sequence of Q ints, each >= 1
    seed : int or numpy SeedSequence, for reproducibility
    """
    centres = as_real_array(centres, "centres", ndim=2)
    Q, M = centres.shape
    if Q == 0 or M == 0:
        raise ValueError(f"centres must have shape (Q, M) with Q, M >= 1; got {centres.shape}")
    if np.ndim(radii) == 0:
        radii = np.broadcast_to(as_real_array(radii, "radii"), (Q,))
    else:
        radii = as_real_array(radii, "radii", ndim=1)
    if radii.shape != (Q,):
        raise ValueError(f"radii must be a number or have shape ({Q},); got {radii.shape}")
    if np.any(radii < 0):
        raise ValueError(f"radii must be non-negative; got minimum {radii.min():.3g}")
    if np.ndim(n_per_cluster) == 0:
        counts = [check_positive_int(n_per_cluster, "n_per_cluster")] * Q
    else:
        counts = [check_positive_int(n, f"n_per_cluster[{j}]") for j, n in enumerate(n_per_cluster)]
        if len(counts) != Q:
            raise ValueError(f"n_per_cluster must have {Q} entries (one per cluster); got {len(counts)}")
    check_memory(8.0 * 6 * sum(counts) * M, f"n_per_cluster = {n_per_cluster!r} ({sum(counts)} points in R^{M})")
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(Q), counts)
    directions = rng.standard_normal((labels.size, M))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    r = radii[labels] * rng.uniform(size=labels.size) ** (1.0 / M)
    points = centres[labels] + r[:, None] * directions
    return ClusteredData(points=points, labels=labels, centres=centres.copy(), radii=np.array(radii, dtype=float))
