"""The dynamics of THEORY.md §4–5: the flows solved through their truncation events.

- one entry point ``solve`` over the exact and general backends        → :mod:`.solver`
- event functions, closed forms between events, crossings, sliding     → :mod:`.events`
- solution classes S1–S5: explicit one-cluster solutions, separated
  clusters, NC1, the two-cluster scenario of the general case          → :mod:`.solutions`
"""
