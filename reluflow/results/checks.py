"""A notebook's checks, each labelled by its oracle and claim, and the closing check/oracle table.

A *check* guards the machinery: it compares a computation against an *oracle* and must pass for any
seed. The oracle says how much a passing check is worth. Seven kinds are recognised (``ORACLES``):

================================  ===========================================================
``forward pass``                  the network evaluated directly (ReLU layers), no flow formula
``autodiff``                      derivatives by automatic differentiation of the cost
``finite differences``            derivatives by difference quotients of the cost
``general ODE solver``            ``solve_ivp`` on the flow's right-hand side (``method="general"``)
``small-step gradient descent``   plain gradient descent with a small step, from the same start
``closed form``                   a formula derived separately from the code under test
``identity``                      an identity of the implementation (true by construction)
================================  ===========================================================

Only the first six are *independent*: a check labelled ``identity`` stays in the notebook (it
guards against regressions) but does not count as evidence for a claim.

Use in a notebook::

    checks = CheckLog("03_single_cluster")
    checks("rate_staircase", rel_err.max() <= 1e-6, f"worst relative error {rel_err.max():.2e}",
           oracle="general ODE solver", claim="A3")
    ...
    checks.table()          # the closing cell: one row per check, and the claims it supports

Each call prints ``check_<name>: True   <detail>   [oracle; claim]``; the ``check_<name>: <bool>``
prefix is what :mod:`reluflow.pipeline.seeds` and nbval read. Re-running a cell replaces its row.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

__all__ = ["ORACLES", "INDEPENDENT", "CLAIMS", "Check", "CheckLog"]

#: Oracle kinds, with the phrase the closing table prints for each.
ORACLES = {
    "forward pass": "plain forward pass of the network",
    "autodiff": "automatic differentiation",
    "finite differences": "finite differences",
    "general ODE solver": "general ODE solver (solve_ivp)",
    "small-step gradient descent": "gradient descent with small steps",
    "closed form": "a closed form derived separately",
    "identity": "an identity of the implementation",
}
#: The oracle kinds that are independent of the code under test.
INDEPENDENT = tuple(k for k in ORACLES if k != "identity")
#: The claims of the paper as the project formulates them (README, "What is claimed").
CLAIMS = ("A1", "A2", "A3", "A4", "A5", "A6")

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Check:
    """One check: its name, verdict, oracle kind, the claim it bears on (or ``""``) and its numbers."""

    name: str
    passed: bool
    oracle: str
    claim: str
    detail: str

    @property
    def independent(self) -> bool:
        return self.oracle in INDEPENDENT


class CheckLog:
    """The checks of one notebook, in the order first made.

    Parameters
    ----------
    notebook : str
        The notebook's name (printed in the table's heading).
    """

    def __init__(self, notebook: str):
        if not isinstance(notebook, str) or not notebook:
            raise TypeError(f"notebook must be a non-empty str, got {notebook!r}")
        self.notebook = notebook
        self._rows: dict[str, Check] = {}

    def __call__(self, name: str, passed, detail: str = "", *, oracle: str, claim: str = "") -> bool:
        """Record and print one check; returns its verdict as a Python bool.

        ``passed`` must be a bool or a numpy bool scalar (an array, a number or None is refused, so
        that ``np.all`` is never forgotten). ``oracle`` is a key of ``ORACLES``; ``claim`` is one of
        ``CLAIMS`` or ``""`` for a check of the machinery that bears on no claim.
        """
        if not isinstance(name, str) or not _NAME.match(name):
            raise ValueError(f"name must be an identifier like 'rate_staircase', got {name!r}")
        if not isinstance(passed, (bool, np.bool_)):
            raise TypeError(f"passed must be a bool (use bool(np.all(...))), got {type(passed).__name__} {passed!r}")
        if oracle not in ORACLES:
            raise ValueError(f"oracle must be one of {sorted(ORACLES)}, got {oracle!r}")
        if claim not in CLAIMS + ("",):
            raise ValueError(f"claim must be one of {CLAIMS} or '', got {claim!r}")
        if not isinstance(detail, str):
            raise TypeError(f"detail must be a str, got {type(detail).__name__}")
        row = Check(name, bool(passed), oracle, claim, detail)
        self._rows[name] = row
        label = oracle + (f"; {claim}" if claim else "")
        print(f"check_{name}: {row.passed}   " + (f"{detail}   " if detail else "") + f"[{label}]")
        return row.passed

    @property
    def rows(self) -> list[Check]:
        return list(self._rows.values())

    @property
    def all_passed(self) -> bool:
        return all(r.passed for r in self._rows.values())

    def supported_claims(self) -> dict[str, list[str]]:
        """``{claim: [independent oracle kinds]}`` over the checks that passed."""
        out: dict[str, list[str]] = {}
        for r in self._rows.values():
            if r.claim and r.independent and r.passed and r.oracle not in out.setdefault(r.claim, []):
                out[r.claim].append(r.oracle)
        return {c: out[c] for c in CLAIMS if c in out}

    def table(self) -> None:
        """Print the closing table (:meth:`table_text`)."""
        print(self.table_text())

    def table_text(self) -> str:
        """The closing table: one row per check with its verdict, claim and oracle, then the totals."""
        if not self._rows:
            raise ValueError(f"{self.notebook}: no checks were recorded, so there is no table to print")
        w = max(len(r.name) for r in self._rows.values())
        lines = [f"Checks of {self.notebook} and their oracles", "",
                 f"{'check':<{w}}  {'holds':<5}  {'claim':<5}  oracle", f"{'-' * w}  -----  -----  {'-' * 30}"]
        for r in self._rows.values():
            lines.append(f"{r.name:<{w}}  {'yes' if r.passed else 'NO':<5}  {r.claim or '-':<5}  {ORACLES[r.oracle]}")
        n_id = sum(not r.independent for r in self._rows.values())
        n, n_ok = len(self._rows), sum(r.passed for r in self._rows.values())
        lines += ["", f"{n} checks, {n_ok} hold; {n - n_id} against an independent oracle, "
                      f"{n_id} {'identity' if n_id == 1 else 'identities'} of the implementation"]
        sup = self.supported_claims()
        if sup:
            lines.append("claims with an independent check: "
                         + "; ".join(f"{c} ({', '.join(k)})" for c, k in sup.items()))
        return "\n".join(lines)
