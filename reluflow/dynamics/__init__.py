"""The dynamics of THEORY.md §4–5: the flows solved through their truncation events.

Modelled on :mod:`scipy.integrate._ivp`: one entry point over interchangeable backends that share
a small base.

- ``solve``: validation, the backend's choice, the one loop, the Dataset    → :mod:`.solver`
- the problem, the backend base (``step``), the event log, the solution      → :mod:`.base`
- the one-layer backend: every sweep in closed form from one sort            → :mod:`.sorted`
- the affine backend: any depth, optional kernel K (the induced flow (4.5))  → :mod:`.affine`
- the general backend: :func:`scipy.integrate.solve_ivp` with restarts       → :mod:`.general`
- event functions, closed forms between events, crossings, Filippov test    → :mod:`.events`
- solution classes S1–S5: explicit one-cluster solutions, separated
  clusters, NC1, the two-cluster scenario of the general case               → :mod:`.solutions`
- discrete gradient descent of the scale-and-bias flow (4.3)                 → :mod:`.descent`
- the scenarios the notebooks 01–05 show, as tested functions               → :mod:`.scenarios`
"""
