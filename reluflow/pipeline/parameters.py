"""Validation of notebook parameters.

Each notebook checks its parameters at the top through these functions, so that a bad value
fails at once with a message that names the parameter. The command line checks names and types
before any kernel starts (see :mod:`reluflow.pipeline.runner`); these functions check values.
"""

from __future__ import annotations

import math
import numbers

__all__ = ["check_int", "check_float", "check_int_list", "check_float_list", "check_seed"]


def _range_message(name, value, minimum, maximum):
    lo = "-inf" if minimum is None else repr(minimum)
    hi = "inf" if maximum is None else repr(maximum)
    return f"parameter {name!r} must lie in [{lo}, {hi}]; got {value!r}"


def check_int(value, name: str, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """Return ``value`` if it is an int within [minimum, maximum]; else raise naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"parameter {name!r} must be an int; got {type(value).__name__} {value!r}")
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise ValueError(_range_message(name, value, minimum, maximum))
    return int(value)


def check_float(value, name: str, *, minimum: float | None = None, maximum: float | None = None,
                positive: bool = False) -> float:
    """Return ``value`` as float if it is a finite real within the bounds (and > 0 if ``positive``)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"parameter {name!r} must be a number; got {type(value).__name__} {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"parameter {name!r} must be finite; got {value!r}")
    if positive and value <= 0:
        raise ValueError(f"parameter {name!r} must be positive; got {value!r}")
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise ValueError(_range_message(name, value, minimum, maximum))
    return value


def check_int_list(value, name: str, *, minimum: int | None = None, maximum: int | None = None) -> list[int]:
    """Return a non-empty list of ints, each within the bounds."""
    if not isinstance(value, (list, tuple)) or len(value) == 0:
        raise TypeError(f"parameter {name!r} must be a non-empty list of ints; got {value!r}")
    return [check_int(v, f"{name}[{i}]", minimum=minimum, maximum=maximum) for i, v in enumerate(value)]


def check_float_list(value, name: str, *, minimum: float | None = None, maximum: float | None = None,
                     positive: bool = False) -> list[float]:
    """Return a non-empty list of finite floats, each within the bounds."""
    if not isinstance(value, (list, tuple)) or len(value) == 0:
        raise TypeError(f"parameter {name!r} must be a non-empty list of numbers; got {value!r}")
    return [check_float(v, f"{name}[{i}]", minimum=minimum, maximum=maximum, positive=positive)
            for i, v in enumerate(value)]


def check_seed(value, name: str = "seed") -> int:
    """A seed is a non-negative int (numpy's SeedSequence refuses negative entropy)."""
    return check_int(value, name, minimum=0)
