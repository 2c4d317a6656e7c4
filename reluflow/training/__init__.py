"""Gradient descent on the plain network, compared with the effective flows (THEORY.md §4.5, §5 S6, §6).

- gradient descent with hand-written backpropagation, trajectories as Datasets → :mod:`.gd`
- He initialisation of generic (rectangular) networks                         → :mod:`.init`
- B networks of one shape trained in one call (full batch, stacked arrays)     → :mod:`.batched`
- effective flows against gradient descent at matched times t = kη             → :mod:`.comparison`
- Jacobians D, Gram spectra, spectral gaps, one spectrum along any trajectory   → :mod:`.spectral`
- the experiments the notebooks 06–07 show, as tested functions               → :mod:`.experiments`
- the diagnosis of a stuck run from the monitor's record (monitor.diagnose)    → :mod:`.diagnosis`
- step sizes from the flow's rates, schedules and the rules they are compared with → :mod:`.schedules`
"""
