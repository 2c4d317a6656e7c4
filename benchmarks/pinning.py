"""The command-line option every benchmark shares: ``--threads`` pins BLAS, OpenMP and XLA before numpy loads.

A benchmark builds its own :class:`argparse.ArgumentParser`, then calls :func:`pin_threads`, which adds
``--threads``, parses, and sets the thread variables. Call it before the first ``import numpy``: OpenBLAS reads them
when it loads. This module imports nothing heavy, so importing it first is safe.
"""

from __future__ import annotations

import os

THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def pin_threads(parser, argv=None):
    """Add ``--threads`` (default 1) to ``parser``, parse ``argv`` and set :data:`THREAD_VARIABLES` to it (0: leave
    them as they are); returns the parsed arguments."""
    parser.add_argument("--threads", type=int, default=1, help="BLAS, OpenMP and torch threads (default 1)")
    args = parser.parse_args(argv)
    if args.threads:
        for var in THREAD_VARIABLES:
            os.environ[var] = str(args.threads)
        # JAX's CPU backend (XLA) reads its flags when it loads: with one thread, Eigen's multithreading and the
        # intra-op pool are turned off, so a process-time comparison with a 1-thread numpy is like for like
        if args.threads == 1:
            flags = [f for f in os.environ.get("XLA_FLAGS", "").split() if "intra_op_parallelism_threads" not in f
                     and "xla_cpu_multi_thread_eigen" not in f]
            os.environ["XLA_FLAGS"] = " ".join(["--xla_cpu_multi_thread_eigen=false", *flags,
                                                "intra_op_parallelism_threads=1"])
    return args
