"""Validation of notebook parameters.

Each notebook checks its parameters at the top through these functions, so that a bad value
fails at once with a message that names the parameter. The command line checks names and types
before any kernel starts (see :mod:`reluflow.pipeline.runner`); these functions check values.

A notebook validates all its parameters in one call to :func:`validate`, one short rule per
parameter::

    PARAMETERS = check.validate(globals(), seed="seed", widths="[int] >= 1", rtol="0 < float <= 1e-3",
                                scales="[float:2] > 0", span="interval")
    globals().update(PARAMETERS)

Rules (spaces are optional):

==========================  ==================================================================
``"seed"``                  an int ≥ 0 (:func:`check_seed`)
``"int"``, ``"float"``      a number (:func:`check_int`, :func:`check_float`: finite, not a bool)
``"T >= a"``                at least ``a`` (``minimum``)
``"T <= b"``                at most ``b`` (``maximum``)
``"T > 0"``                 positive (strict bounds other than ``> 0`` are refused)
``"a <= T <= b"``           both bounds; ``"0 < T <= b"`` positive and at most ``b``
``"[int]"``, ``"[float]"``  a non-empty list, each entry checked as above (``"[float] > 0"``)
``"[float:2]"``             a list of exactly 2 entries
``"interval"``              ``[low, high]``, two finite numbers with low < high
``"bool"``, ``"str"``       a bool, a str
a callable ``f``            ``f(value, name)`` returns the validated value or raises
==========================  ==================================================================

where ``T`` is one of ``int``, ``float``, ``[int]``, ``[float]``, ``[int:n]``, ``[float:n]``.
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Callable, Mapping

__all__ = ["check_int", "check_float", "check_int_list", "check_float_list", "check_seed", "check_bool",
           "check_str", "check_interval", "parse_rule", "validate"]


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


def check_bool(value, name: str) -> bool:
    """Return ``value`` if it is a bool (numpy's included); else raise naming ``name``."""
    if not isinstance(value, bool) and type(value).__name__ != "bool_":
        raise TypeError(f"parameter {name!r} must be a bool; got {type(value).__name__} {value!r}")
    return bool(value)


def check_str(value, name: str) -> str:
    """Return ``value`` if it is a str; else raise naming ``name``."""
    if not isinstance(value, str):
        raise TypeError(f"parameter {name!r} must be a str; got {type(value).__name__} {value!r}")
    return value


def check_interval(value, name: str) -> list[float]:
    """Return ``[low, high]`` as floats if ``value`` is two finite numbers with low < high."""
    values = check_float_list(value, name)
    if len(values) != 2 or values[0] >= values[1]:
        raise ValueError(f"parameter {name!r} must be [low, high] with low < high; got {value!r}")
    return values


def _check_length(check, size: int):
    def checked(value, name):
        result = check(value, name)
        if len(result) != size:
            raise ValueError(f"parameter {name!r} must have {size} entries; got {len(result)}: {value!r}")
        return result
    return checked


_TYPE = r"(?P<type>int|float|\[(?P<item>int|float)(?::(?P<size>[1-9][0-9]*))?\])"
_NUMBER = r"[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?"
_RULE = re.compile(rf"(?:(?P<lo>{_NUMBER})(?P<lo_op><=|<))?{_TYPE}(?:(?P<op>>=|>|<=)(?P<bound>{_NUMBER}))?")
_NAMED = {"seed": check_seed, "bool": check_bool, "str": check_str, "interval": check_interval}
_RULE_HELP = ('"seed", "bool", "str", "interval", "int", "float", "[int]", "[float]" or "[float:n]", optionally '
              'bounded as in "int >= 2", "float > 0", "[float] <= 1", "0 < float <= 1e-3", "-180 <= float <= 180"')


def parse_rule(rule, name: str = "?") -> Callable:
    """The checker ``f(value, name)`` for one rule of :func:`validate` (see the module docstring)."""
    if callable(rule):
        return rule
    if not isinstance(rule, str):
        raise TypeError(f"the rule for parameter {name!r} must be a str or a callable; got "
                        f"{type(rule).__name__} {rule!r}")
    spec = "".join(rule.split())
    if spec in _NAMED:
        return _NAMED[spec]
    m = _RULE.fullmatch(spec)
    if m is None:
        raise ValueError(f"unknown rule {rule!r} for parameter {name!r}; a rule is {_RULE_HELP}")
    item = m["item"] or m["type"]
    kwargs: dict = {}
    bounds = [(m["lo_op"], m["lo"], "lower")]
    if m["op"] is not None:
        bounds.append((m["op"], m["bound"], "lower" if m["op"].startswith(">") else "upper"))
    for op, text, side in bounds:
        if op is None:
            continue
        key = {"lower": "minimum", "upper": "maximum"}[side]
        if key in kwargs or (side == "lower" and "positive" in kwargs):
            raise ValueError(f"rule {rule!r} for parameter {name!r} gives two {side} bounds")
        if op in ("<", ">"):  # a strict bound: only "> 0", i.e. positive, has a message of its own
            if item != "float" or float(text) != 0.0:
                raise ValueError(f"rule {rule!r} for parameter {name!r}: the only strict bound is '> 0' on floats; "
                                 f"use >= or <= otherwise")
            kwargs["positive"] = True
            continue
        if item == "int":
            if not re.fullmatch(r"[-+]?[0-9]+", text):
                raise ValueError(f"rule {rule!r} for parameter {name!r}: an int's bound must be an int; got {text!r}")
            kwargs[key] = int(text)
        else:
            kwargs[key] = float(text)
    base = {"int": check_int, "float": check_float}[item] if m["item"] is None else \
        {"int": check_int_list, "float": check_float_list}[item]

    def checked(value, name):
        return base(value, name, **kwargs)

    return _check_length(checked, int(m["size"])) if m["size"] else checked


def validate(namespace: Mapping, **rules) -> dict:
    """Validate the parameters named in ``rules`` in ``namespace``; return ``{name: value}`` in that order.

    ``namespace`` is the notebook's ``globals()``; each keyword is a parameter name and its rule (see the
    module docstring), e.g. ``validate(globals(), seed="seed", n_points="int >= 1", rtol="0 < float <= 1e-3")``.
    A bad value raises the ValueError or TypeError of the ``check_*`` function the rule stands for, naming the
    parameter; a name missing from ``namespace`` or an unknown rule raises before any value is checked.
    """
    if not isinstance(namespace, Mapping):
        raise TypeError(f"namespace must be a mapping such as globals(); got {type(namespace).__name__}")
    if not rules:
        raise ValueError("validate needs at least one rule, e.g. validate(globals(), seed='seed')")
    missing = [name for name in rules if name not in namespace]
    if missing:
        raise ValueError(f"validate: no parameter named {', '.join(map(repr, missing))} in the namespace; "
                         "every rule must name a parameter that the notebook defines")
    checks = {name: parse_rule(rule, name) for name, rule in rules.items()}
    return {name: check(namespace[name], name) for name, check in checks.items()}
