"""Testing aids: independent oracles and verification batteries (THEORY.md §6).

Nothing here is imported by ``import reluflow``; the tests and notebooks import these modules
explicitly, so that the oracles stay visibly separate from the code they check.

- automatic differentiation (autograd), central differences, sympy        → :mod:`.oracles`
- batteries of identities and projections over random networks             → :mod:`.verification`
- hypothesis strategies shared by the tests                                → :mod:`.strategies`
- random deep solver problems, and the fuzz run over them                  → :mod:`.fuzz`
- small fixed problems several test modules share                         → :mod:`.problems`
- the PyTorch peer of gradient descent (needs the ``bench`` extra)         → :mod:`.torch_peer`
"""
