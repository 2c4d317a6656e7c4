"""The shared hypothesis strategies draw what they promise (oracle: the library's own validators)."""

import numpy as np
from hypothesis import given, settings

import reluflow as rf
from reluflow.testing import strategies as rs


@settings(max_examples=25, deadline=None)
@given(M=rs.widths(5), L=rs.depths(4), N=rs.point_counts(7), seed=rs.seeds())
def test_sizes_stay_in_their_ranges(M, L, N, seed):
    assert 1 <= M <= 5 and 1 <= L <= 4 and 1 <= N <= 7 and 0 <= seed < 2**32


@settings(max_examples=15, deadline=None)
@given(net=rs.networks(max_width=4, max_depth=3), adapted=rs.adapted_networks(max_width=3, max_depth=2))
def test_networks_are_valid_inputs_of_the_library(net, adapted):
    weights, biases = net
    Wc, bc = rf.cumulative_parameters(weights, biases)  # validates: square, invertible, well conditioned
    assert len(Wc) == len(weights) <= 3 and Wc[0].shape[0] <= 4
    assert isinstance(adapted, rf.AdaptedNetwork) and adapted.depth <= 2 and adapted.width <= 3
    assert float(np.max(rf.adaptedness(adapted.cumulative_parameters()[0][0]))) <= 1e-10


@settings(max_examples=15, deadline=None)
@given(X=rs.point_clouds(3, max_points=9))
def test_point_clouds_have_the_requested_width(X):
    assert X.ndim == 2 and X.shape[1] == 3 and 1 <= X.shape[0] <= 9 and np.isfinite(X).all()
