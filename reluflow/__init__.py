"""reluflow: a reproducible companion to T. Chen, *Derivation of effective gradient flow
equations and dynamical truncation of training data in Deep Learning*, arXiv:2501.07400.

Points are rows (``X.shape == (N, M)``); weights are (out, in). Where each formula of the theory
lives:

- network and cumulative parameters (§1) → :mod:`reluflow.network`
- truncation maps and the representation identity (§1) → :mod:`reluflow.truncation`
- adapted weights and cone projections (§2) → :mod:`reluflow.adapted`
- clustered synthetic data → :mod:`reluflow.data`
- costs C_in, C_out and pulled-back targets (§3) → :mod:`reluflow.costs`
- effective gradient-flow equations (4.1)–(4.5) (§4) → :mod:`reluflow.flows`
- independent oracles: autodiff, finite differences, sympy (§6) → :mod:`reluflow.oracles` (not imported here)
- gradient descent on the plain network (§4.5) → :mod:`reluflow.training`
- Gram matrices and spectral gaps (§5 S6) → :mod:`reluflow.spectral`
- the exact event-driven solver and the solve_ivp solver of the flows (§4–5) → :mod:`reluflow.solver`,
  :mod:`reluflow.events`
- parameter sweeps through any concurrent.futures Executor → :mod:`reluflow.sweep`
- solution classes S1–S5: explicit one-cluster solutions, NC1, scenarios (§5) → :mod:`reluflow.solutions`
- effective flows against gradient descent (notebooks 06–07) → :mod:`reluflow.comparison` (not imported here)
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
from .costs import (
    cost_weights,
    input_cost,
    output_cost,
    output_cumulative_parameters,
    pullback_targets,
    pulled_back_cost,
    targets_by_label,
)
from .data import ClusteredData, clustered_data
from .flows import (
    ScaleBiasFlow,
    bias_chain_matrix,
    bias_flow,
    cumulative_gradient,
    frame_flow,
    induced_bias_flow,
    induced_bias_kernel,
    induced_cumulative_flow,
    layer_gradient,
    one_layer_threshold_flow,
    scale_bias_flow,
    scale_bias_invariant,
    threshold_gradient,
)
from .network import cumulative_parameters, forward, layer_parameters, random_network, relu
from .solutions import (
    OneClusterSolution,
    SeparatedClusters,
    TwoClusterScenario,
    equilibrium_residual,
    interference_point,
    nc1,
    one_cluster_solution,
    separated_clusters,
    separation_margin,
    truncated_images,
    two_cluster_scenario,
    within_class_variability,
)
from .solver import solve
from .spectral import (
    bias_flow_gap,
    bias_flow_parameter_gram,
    bias_flow_rates,
    flow_jacobian,
    gram_eigenvalues,
    output_jacobian,
    spectral_gap,
    spectral_trajectory,
    truncated_bias_jacobian,
)
from .sweep import grid_points, sweep
from .training import CostGradient, backprop_cumulative_gradient, backprop_gradient, train
from .truncation import apex, truncated_data, truncation_map, truncation_pattern

__version__ = "0.1.0"

__all__ = [
    "adapted_network",
    "adaptedness",
    "AdaptedNetwork",
    "apex",
    "backprop_cumulative_gradient",
    "backprop_gradient",
    "bias_chain_matrix",
    "bias_flow",
    "bias_flow_gap",
    "bias_flow_parameter_gram",
    "bias_flow_rates",
    "clustered_data",
    "ClusteredData",
    "cone_projection",
    "cost_weights",
    "CostGradient",
    "cumulative_gradient",
    "cumulative_parameters",
    "decompose_adapted",
    "equilibrium_residual",
    "flow_jacobian",
    "forward",
    "frame_flow",
    "gram_eigenvalues",
    "grid_points",
    "induced_bias_flow",
    "induced_bias_kernel",
    "induced_cumulative_flow",
    "input_cost",
    "interference_point",
    "layer_gradient",
    "layer_parameters",
    "nc1",
    "one_cluster_solution",
    "one_layer_threshold_flow",
    "OneClusterSolution",
    "output_cost",
    "output_cumulative_parameters",
    "output_jacobian",
    "pullback_targets",
    "pulled_back_cost",
    "random_adapted_network",
    "random_network",
    "relu",
    "scale_bias_flow",
    "scale_bias_invariant",
    "ScaleBiasFlow",
    "separated_clusters",
    "SeparatedClusters",
    "separation_margin",
    "solve",
    "spectral_gap",
    "spectral_trajectory",
    "sweep",
    "targets_by_label",
    "threshold_gradient",
    "train",
    "truncated_bias_jacobian",
    "truncated_data",
    "truncated_images",
    "truncation_map",
    "truncation_pattern",
    "two_cluster_scenario",
    "TwoClusterScenario",
    "within_class_variability",
]
