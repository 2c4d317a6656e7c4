"""The check log of the notebooks (reluflow.results.checks): labels, verdicts, the closing table."""

import numpy as np
import pytest

from reluflow.pipeline.seeds import _CHECK
from reluflow.results.checks import INDEPENDENT, ORACLES, CheckLog


def test_check_line_is_what_the_seed_sweep_reads(capsys):
    log = CheckLog("nb")
    assert log("rate", np.float64(1e-9) <= 1e-6, "worst 1.00e-09", oracle="general ODE solver", claim="A3") is True
    assert log("cone", False, oracle="identity") is False
    out = capsys.readouterr().out.splitlines()
    assert out == ["check_rate: True   worst 1.00e-09   [general ODE solver; A3]", "check_cone: False   [identity]"]
    assert [_CHECK.match(line).groups() for line in out] == [("check_rate", "True"), ("check_cone", "False")]


def test_table_counts_independent_checks_and_supported_claims(capsys):
    log = CheckLog("nb")
    log("a", True, oracle="autodiff", claim="A1")
    log("b", True, oracle="identity", claim="A1")
    log("c", False, oracle="closed form", claim="A2")   # failed: supports nothing
    log("d", True, oracle="identity", claim="A3")        # identity only: supports nothing
    log("a", True, oracle="finite differences", claim="A1")  # a re-run cell replaces its row
    text = log.table_text()
    assert [r.name for r in log.rows] == ["a", "b", "c", "d"]
    assert log.supported_claims() == {"A1": ["finite differences"]}
    assert "4 checks, 3 hold; 2 against an independent oracle, 2 identities of the implementation" in text
    assert "claims with an independent check: A1 (finite differences)" in text
    assert not log.all_passed
    # no table line may look like a check line to the seed sweep
    assert not any(_CHECK.match(line.strip()) for line in text.splitlines())
    assert set(INDEPENDENT) == set(ORACLES) - {"identity"}


@pytest.mark.parametrize("kwargs, exc, word", [
    (dict(name="bad name", passed=True, oracle="autodiff"), ValueError, "name"),
    (dict(name="x", passed=np.array([True, False]), oracle="autodiff"), TypeError, "passed"),
    (dict(name="x", passed=1, oracle="autodiff"), TypeError, "passed"),
    (dict(name="x", passed=True, oracle="by eye"), ValueError, "oracle"),
    (dict(name="x", passed=True, oracle="autodiff", claim="A9"), ValueError, "claim"),
    (dict(name="x", passed=True, oracle="autodiff", detail=3.0), TypeError, "detail"),
])
def test_bad_checks_are_refused(kwargs, exc, word):
    with pytest.raises(exc, match=word):
        CheckLog("nb")(**kwargs)


def test_empty_table_and_bad_notebook_are_refused():
    with pytest.raises(ValueError, match="no checks"):
        CheckLog("nb").table_text()
    with pytest.raises(TypeError, match="notebook"):
        CheckLog("")
