"""How work is run: notebooks through papermill, parameter checks, sweeps, the ``reluflow`` command.

- ``reproduce``, ``run_notebook``, atomic promotion of outputs              → :mod:`.runner`
- notebook parameter checks (``check_int``, ``check_seed``, …)                → :mod:`.parameters`
- grids of runs through any ``concurrent.futures.Executor``                   → :mod:`.sweep`
- the command line                                                             → :mod:`.cli`
"""
