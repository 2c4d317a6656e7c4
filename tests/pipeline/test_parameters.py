"""reluflow.pipeline.parameters.validate: one rule per notebook parameter."""

import pytest

from reluflow.pipeline import parameters as check

# rule, good values, (bad value, exception, message fragment) pairs
CASES = [
    ("seed", [0, 7], [(-1, ValueError, "must lie in [0, inf]; got -1"), (1.5, TypeError, "must be an int")]),
    ("int", [-3, 0, 4], [(True, TypeError, "must be an int; got bool"), ("2", TypeError, "must be an int")]),
    ("int >= 2", [2, 9], [(1, ValueError, "must lie in [2, inf]; got 1")]),
    ("1 <= int <= 10", [1, 10], [(11, ValueError, "must lie in [1, 10]; got 11"), (0, ValueError, "[1, 10]")]),
    ("float", [-1.5, 0, 2.0], [(float("nan"), ValueError, "must be finite"), (None, TypeError, "must be a number")]),
    ("float > 0", [1e-9, 3], [(0.0, ValueError, "must be positive; got 0.0"), (-1.0, ValueError, "positive")]),
    ("float >= 0", [0.0, 2.5], [(-0.1, ValueError, "must lie in [0.0, inf]; got -0.1")]),
    ("0 < float <= 1e-3", [1e-10, 1e-3], [(0.0, ValueError, "positive"), (0.01, ValueError, "[-inf, 0.001]")]),
    ("-180 <= float <= 180", [-180, 30.0], [(181.0, ValueError, "must lie in [-180.0, 180.0]; got 181.0")]),
    ("float <= 1", [-5.0, 1.0], [(1.5, ValueError, "must lie in [-inf, 1.0]")]),
    ("[int] >= 1", [[1], [2, 3]], [([], TypeError, "non-empty list of ints"), ([1, 0], ValueError, "[1]' must lie")]),
    ("[float] > 0", [[0.5, 2.0]], [([1.0, -1.0], ValueError, "[1]' must be positive"),
                                   (1.0, TypeError, "non-empty list of numbers")]),
    ("[float:2]", [[1.0, -2.0]], [([1.0], ValueError, "must have 2 entries; got 1"),
                                  ([1.0, 2.0, 3.0], ValueError, "must have 2 entries")]),
    ("[float:2] > 0", [[1.0, 1.4]], [([1.0, 0.0], ValueError, "[1]' must be positive")]),
    ("interval", [[0.0, 7.0], [-1, 1]], [([2.0, 2.0], ValueError, "must be [low, high] with low < high"),
                                        ([1.0], ValueError, "low < high")]),
    ("bool", [True, False], [(1, TypeError, "must be a bool; got int 1")]),
    ("str", ["paper"], [(3, TypeError, "must be a str; got int 3")]),
]


@pytest.mark.parametrize(("rule", "good", "bad"), CASES, ids=[c[0] for c in CASES])
def test_rule_accepts_good_and_refuses_bad_values_naming_the_parameter(rule, good, bad):
    for value in good:
        assert check.validate({"p": value}, p=rule) == {"p": value}
    for value, error, fragment in bad:
        with pytest.raises(error) as info:
            check.validate({"p": value, "other": 1}, other="int", p=rule)
        assert "parameter 'p" in str(info.value)  # 'p' or an entry such as 'p[1]'
        assert fragment in str(info.value)


def test_messages_are_those_of_the_check_functions():
    for rule, call in [("seed", lambda v: check.check_seed(v)),
                       ("[int] >= 1", lambda v: check.check_int_list(v, "p", minimum=1)),
                       ("0 < float <= 1e-3", lambda v: check.check_float(v, "p", positive=True, maximum=1e-3))]:
        for value in (-1, [0], 1.0):
            try:
                call(value)
                expected = None
            except (TypeError, ValueError) as err:
                expected = (type(err), str(err).replace("'seed'", "'p'"))
            try:
                check.validate({"p": value}, p="seed" if rule == "seed" else rule)
                got = None
            except (TypeError, ValueError) as err:
                got = (type(err), str(err).replace("'seed'", "'p'"))
            assert got == expected, (rule, value)


def test_returns_validated_values_in_rule_order_and_converts():
    ns = {"b": 3, "a": [1, 2.5], "seed": 0, "unrelated": object()}
    out = check.validate(ns, seed="seed", b="float > 0", a="[float]")
    assert list(out) == ["seed", "b", "a"]
    assert out == {"seed": 0, "b": 3.0, "a": [1.0, 2.5]} and isinstance(out["b"], float)


def test_callable_rule():
    def even(value, name):
        if value % 2:
            raise ValueError(f"parameter {name!r} must be even; got {value!r}")
        return value

    assert check.validate({"n": 4}, n=even) == {"n": 4}
    with pytest.raises(ValueError, match="parameter 'n' must be even; got 3"):
        check.validate({"n": 3}, n=even)


def test_refuses_a_rule_for_a_missing_name():
    with pytest.raises(ValueError, match="no parameter named 'sed'"):
        check.validate({"seed": 0}, sed="seed")


@pytest.mark.parametrize("rule", ["flot > 0", "int > 0", "float > 1", "[float:0]", "int >= 1.5", "float >= 0 >= 1",
                                  "1 <= float >= 0", "", "list", "float < 1"])
def test_refuses_an_unknown_or_malformed_rule(rule):
    with pytest.raises(ValueError, match="rule"):
        check.validate({"p": 1.0}, p=rule)


def test_rule_errors_come_before_value_errors():
    # a bad value of an earlier parameter does not hide a broken rule of a later one
    with pytest.raises(ValueError, match="unknown rule"):
        check.validate({"a": -1, "b": 1}, a="seed", b="integer")
    with pytest.raises(TypeError, match="must be a str or a callable"):
        check.validate({"a": 1}, a=3)


def test_negative_control_every_good_default_passes():
    # the parameters of notebook 02 as shipped, under the rules it uses
    ns = dict(seed=0, n_instances=200, frame_degrees=30.0, scales=[1.0, 1.4], start=[-1.5, -1.0], rtol=1e-10)
    out = check.validate(ns, seed="seed", n_instances="int >= 1", frame_degrees="-180 <= float <= 180",
                         scales="[float:2] > 0", start="[float:2]", rtol="0 < float <= 1e-3")
    assert out == ns
