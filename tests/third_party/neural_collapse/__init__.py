from . import accumulate, kernels, measure, util
