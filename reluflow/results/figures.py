"""Figures: the shipped style and one deterministic, atomic ``savefig``.

Figures are built on matplotlib's Agg canvas, with the style in ``reluflow.mplstyle`` (DejaVu
Sans, fixed size and dpi). :func:`savefig` removes date and software metadata and sets
``svg.hashsalt``, so a figure's bytes depend only on its content and the matplotlib version.
A file whose bytes would not change is left untouched.

Typical use in a notebook::

    fig, axes = figure(ncols=3)
    ...
    savefig(fig, "../figures/01_truncation.png")
"""

from __future__ import annotations

import io
import os
from contextlib import contextmanager
from pathlib import Path

import matplotlib

matplotlib.use("Agg", force=False)  # no-op under an interactive backend already chosen
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

__all__ = ["STYLE", "style", "figure", "savefig", "CLUSTER_COLORS"]

STYLE = Path(__file__).with_name("reluflow.mplstyle")
#: Colour-blind-safe colours (Okabe–Ito) for clusters, in order.
CLUSTER_COLORS = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000"]

_METADATA = {
    "png": {"Software": None},
    "svg": {"Date": None, "Creator": None},
    "pdf": {"CreationDate": None, "ModDate": None, "Producer": None, "Creator": None},
}


@contextmanager
def style():
    """Context in which matplotlib uses reluflow's style."""
    with plt.style.context(STYLE):
        yield


def figure(nrows: int = 1, ncols: int = 1, *, width: float | None = None, height: float | None = None, **kwargs):
    """A new (fig, axes) in reluflow's style, not registered with pyplot (nothing is auto-shown).

    ``width``/``height`` are in inches (default from the style); ``kwargs`` go to ``subplots``.
    """
    with style():
        size = list(matplotlib.rcParams["figure.figsize"])
        if width is not None:
            size[0] = width
        if height is not None:
            size[1] = height
        fig = Figure(figsize=size, layout="constrained")
        axes = fig.subplots(nrows, ncols, squeeze=True, **kwargs)
    return fig, axes


def savefig(fig: Figure, path) -> Path:
    """Write ``fig`` to ``path`` (png, svg or pdf) deterministically and atomically; return the path."""
    if not isinstance(fig, Figure):
        raise TypeError(f"fig must be a matplotlib Figure; got {type(fig).__name__}")
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower()
    if fmt not in _METADATA:
        raise ValueError(f"path must end in one of .png, .svg, .pdf; got {str(path)!r}")
    buf = io.BytesIO()
    with style():
        fig.savefig(buf, format=fmt, metadata=_METADATA[fmt])
    data = buf.getvalue()
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and path.read_bytes() == data:
        return path
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def draw_cone(ax, frame, threshold, *, lim: float, color: str = "#999999", label: str | None = None):
    """Shade the 2-D cone K = {x : R x ≥ θ} on ``ax`` within [−lim, lim]², with its edges and apex.

    ``frame`` is an orthogonal 2×2 matrix R and ``threshold`` the vector θ (THEORY.md §2).
    """
    import numpy as np

    R = np.asarray(frame, dtype=float)
    theta = np.asarray(threshold, dtype=float)
    if R.shape != (2, 2) or theta.shape != (2,):
        raise ValueError(f"draw_cone needs a 2x2 frame and a length-2 threshold; got {R.shape} and {theta.shape}")
    g = np.linspace(-lim, lim, 401)
    gx, gy = np.meshgrid(g, g)
    inside = np.all(np.stack([gx.ravel(), gy.ravel()], axis=1) @ R.T >= theta, axis=1).reshape(gx.shape)
    ax.contourf(gx, gy, inside.astype(float), levels=[0.5, 1.5], colors=[color], alpha=0.2)
    p = R.T @ theta
    for k in range(2):  # each edge runs from the apex along the other frame vector
        d = R[1 - k]
        ax.plot([p[0], p[0] + 4 * lim * d[0]], [p[1], p[1] + 4 * lim * d[1]], color="0.35", lw=1)
    if label is not None:
        from matplotlib.patches import Patch

        return Patch(color=color, alpha=0.2, label=label)
    return None
