"""Confidence intervals for the project's findings (hold rates, fractions of starts, accuracies).

- Wilson score interval for k successes in n trials:
  (p + z²/2n ± z √(p(1−p)/n + z²/4n²)) / (1 + z²/n),  p = k/n          → :func:`wilson_interval`

One function serves every notebook, so an interval printed by 08 and one printed by 09 mean the same.
"""

from __future__ import annotations

import numpy as np

from reluflow.validation import as_real, check_positive_int

__all__ = ["Z_95", "wilson_interval"]

#: The standard-normal quantile of 0.975: a two-sided 95 % interval.
Z_95 = 1.959963984540054


def wilson_interval(k: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval for k successes out of n (95 % by default); (0, 1) when n = 0 (nothing tested)."""
    k = check_positive_int(k, "k", minimum=0)
    n = check_positive_int(n, "n", minimum=0)
    z = as_real(z, "z", minimum=0, strict=True)
    if k > n:
        raise ValueError(f"k must be <= n; got k={k}, n={n}")
    if n == 0:
        return 0.0, 1.0
    p = k / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    # at k = 0 (k = n) the lower (upper) end is exactly 0 (1); the formula gives it only up to round-off
    low = 0.0 if k == 0 else float(max(0.0, centre - half))
    high = 1.0 if k == n else float(min(1.0, centre + half))
    return low, high
