"""reluflow: a reproducible companion to T. Chen, *Derivation of effective gradient flow
equations and dynamical truncation of training data in Deep Learning*, arXiv:2501.07400.

Points are rows (``X.shape == (N, M)``); weights are (out, in). Where each formula of the theory
lives:

- network and cumulative parameters (§1) → :mod:`reluflow.network`
- truncation maps and the representation identity (§1) → :mod:`reluflow.truncation`
- adapted weights and cone projections (§2) → :mod:`reluflow.adapted`
- clustered synthetic data → :mod:`reluflow.data`
- results as netCDF, figures → :mod:`reluflow.results`, :mod:`reluflow.plotting`
- running the notebooks → :mod:`reluflow.pipeline` and the ``reluflow`` command
"""

from .adapted import (
    AdaptedNetwork,
    adapted_network,
    adaptedness,
    cone_projection,
    decompose_adapted,
    random_adapted_network,
)
from .data import ClusteredData, clustered_data
from .network import cumulative_parameters, forward, layer_parameters, random_network, relu
from .truncation import apex, truncated_data, truncation_map, truncation_pattern

__version__ = "0.1.0"

__all__ = [
    "AdaptedNetwork",
    "ClusteredData",
    "adapted_network",
    "adaptedness",
    "apex",
    "clustered_data",
    "cone_projection",
    "cumulative_parameters",
    "decompose_adapted",
    "forward",
    "layer_parameters",
    "random_adapted_network",
    "random_network",
    "relu",
    "truncated_data",
    "truncation_map",
    "truncation_pattern",
]
