"""reluflow: a reproducible companion to T. Chen, *Derivation of effective gradient flow
equations and dynamical truncation of training data in Deep Learning*, arXiv:2501.07400.

Points are rows (``X.shape == (N, M)``); weights are (out, in). The package is grouped by layer:

- :mod:`reluflow.theory`    the mathematics (THEORY.md §1–4): network, cumulative parameters,
  truncation maps, adapted weights, costs, the effective flow equations (4.1)–(4.5)
- :mod:`reluflow.dynamics`  the flows solved through their truncation events (§4–5): ``solve``,
  its backends and events, the solution classes S1–S5
- :mod:`reluflow.training`  gradient descent on the plain network, comparisons with the flows,
  spectra and spectral gaps (§4.5, §5 S6)
- :mod:`reluflow.testing`   independent oracles (autodiff, finite differences, sympy),
  verification batteries, the PyTorch peer (not imported here)
- :mod:`reluflow.results`   netCDF results, figures, the shared trajectory schema
- :mod:`reluflow.pipeline`  notebooks through papermill, parameter checks, sweeps, the CLI
- :mod:`reluflow.validation` the argument checks every public function uses at its boundary

The README's "From formula to notebook" table maps each formula of the theory notes to the
function that computes it, the test that checks it and the notebook cell that shows it.
"""

__version__ = "0.1.0"

# The imports are grouped by topic, as in xarray's __init__ (so the import sorter is told to leave them).
# ruff: noqa: I001

# --- theory: network and truncation calculus (THEORY.md §1–2)
from reluflow.theory.network import cumulative_parameters, forward, layer_parameters, random_network, relu
from reluflow.theory.truncation import apex, truncated_data, truncation_map, truncation_pattern
from reluflow.theory.adapted import (
    AdaptedNetwork,
    adapted_network,
    adaptedness,
    cone_projection,
    decompose_adapted,
    random_adapted_network,
    rotation,
)
from reluflow.theory.data import ClusteredData, clustered_data
from reluflow.theory import collapse, generic  # noqa: F401  (the modules, as rf.generic and rf.collapse)

# --- theory: any ReLU network (widths of any sizes) and neural-collapse measures
from reluflow.theory.collapse import (
    class_covariances,
    class_means,
    centred_class_means,
    collapse_by_layer,
    nc1_variability,
    nc2_equiangularity,
    nc2_equinorm,
    nc2_etf_error,
    nc3_self_duality,
    nc4_ncc_mismatch,
)
from reluflow.theory.generic import (
    dead_units,
    effective_training_set,
    frozen_layer,
    general_cumulative_parameters,
    gradient_path_mask,
    layer_truncation_pattern,
    pinv_truncated_data,
    pinv_truncation_map,
    rectangular_adaptedness,
    representation_residual,
    truncation_counts,
    truncation_fractions,
)

# --- theory: costs (§3)
from reluflow.theory.costs import (
    cost_weights,
    input_cost,
    output_cost,
    output_cumulative_parameters,
    pullback_targets,
    pulled_back_cost,
    targets_by_label,
)

# --- theory: effective gradient-flow equations (§4)
from reluflow.theory.flows import (
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

# --- dynamics: solving the flows through their events, solution classes (§4–5)
from reluflow.dynamics.solver import solve
from reluflow.dynamics.descent import ScaleBiasDescent, scale_bias_descent
from reluflow.dynamics.solutions import (
    OneClusterSolution,
    SeparatedClusters,
    TwoClusterScenario,
    equilibrium_residual,
    event_time_error,
    exponential_rate,
    interference_point,
    nc1,
    one_cluster_solution,
    separated_clusters,
    separated_solutions,
    separation_margin,
    truncated_images,
    two_cluster_scenario,
    within_class_variability,
)

# --- training: gradient descent and spectra (§4.5, §5 S6)
from reluflow.training.batched import train_many
from reluflow.training.gd import CostGradient, backprop_cumulative_gradient, backprop_gradient, minibatches, train
from reluflow.training.init import he_network
from reluflow.training.spectral import (
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

# --- running: sweeps through any concurrent.futures Executor
from reluflow.pipeline.sweep import grid_points, sweep

__all__ = [
    # theory: network and truncation calculus
    "relu", "forward", "cumulative_parameters", "layer_parameters", "random_network",
    "truncation_map", "truncated_data", "truncation_pattern", "apex",
    "AdaptedNetwork", "adapted_network", "adaptedness", "cone_projection", "decompose_adapted",
    "random_adapted_network", "rotation", "ClusteredData", "clustered_data",
    # theory: costs
    "cost_weights", "input_cost", "output_cost", "output_cumulative_parameters", "pullback_targets",
    "pulled_back_cost", "targets_by_label",
    # theory: flows
    "threshold_gradient", "bias_flow", "one_layer_threshold_flow", "scale_bias_flow", "ScaleBiasFlow",
    "scale_bias_invariant", "frame_flow", "cumulative_gradient", "layer_gradient", "induced_cumulative_flow",
    "bias_chain_matrix", "induced_bias_kernel", "induced_bias_flow",
    # dynamics
    "solve", "OneClusterSolution", "one_cluster_solution", "SeparatedClusters", "separated_clusters",
    "separation_margin", "truncated_images", "within_class_variability", "nc1", "TwoClusterScenario",
    "two_cluster_scenario", "equilibrium_residual", "interference_point", "separated_solutions",
    "exponential_rate", "event_time_error", "ScaleBiasDescent", "scale_bias_descent",
    # training and spectra
    "train", "he_network", "minibatches", "train_many",
    "CostGradient", "backprop_gradient", "backprop_cumulative_gradient", "output_jacobian",
    "truncated_bias_jacobian", "flow_jacobian", "gram_eigenvalues", "spectral_gap", "spectral_trajectory",
    "bias_flow_rates", "bias_flow_gap", "bias_flow_parameter_gram",
    # any ReLU network: truncation quantities and neural collapse
    "layer_truncation_pattern", "truncation_counts", "truncation_fractions", "dead_units", "frozen_layer",
    "effective_training_set", "gradient_path_mask", "general_cumulative_parameters", "pinv_truncation_map",
    "pinv_truncated_data", "representation_residual", "rectangular_adaptedness",
    "class_means", "centred_class_means", "class_covariances", "nc1_variability", "nc2_etf_error", "nc2_equinorm",
    "nc2_equiangularity", "nc3_self_duality", "nc4_ncc_mismatch", "collapse_by_layer",
    # running
    "sweep", "grid_points",
]
