"""reluflow's neural-collapse measures against an independent implementation: rhubarbwu/neural-collapse.

Oracle: a third-party implementation (tests/third_party/neural_collapse, unchanged from commit c05a0b8; torch,
float64). Each definition is mapped explicitly:

================================  =======================================================================
reluflow.theory.collapse          neural_collapse (their names; M the class means, m_G the centre)
================================  =======================================================================
class means μ_j, centre μ_G       ``MeanAccumulator.compute(weighted=False)``: (M, m_G = mean of the rows of M)
Σ_W                               ``CovarAccumulator(M=M).compute()``: Σ_i (h_i − μ_{y_i})(h_i − μ_{y_i})ᵀ / N
NC1 ``nc1_variability``           ``covariance_ratio(Σ_W, M, m_G, metric="pinv")`` = tr(Σ_B⁺ Σ_W)/K
NC2 ``nc2_etf_error``             ``simplex_etf_error(M, m_G)``
NC2 ``nc2_equinorm``              std/mean (population) of ``mean_norms(M, m_G)``
NC2 ``nc2_equiangularity``        mean over j ≠ k of |cos + 1/(K−1)|, cos from ``interference_grid(M, m_G)``
NC3 ``nc3_self_duality``          theirs normalises each row (``distance_norms(W, M, m_G)``), ours the whole
                                  matrix: equal when the rows of W and of M̃ each have one norm, then
                                  NC3 = mean_j distance_norms_j²; ``self_duality_error`` is another measure
                                  (the ETF structure of W M̃ᵀ) that shares only its zero at W ∝ M̃ (an ETF)
NC4 ``nc4_ncc_mismatch``          1 − ``DecAccumulator.compute(weighted=True)`` agreement, with b = 0 (their
                                  linear classifier has no bias)
================================  =======================================================================
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from reluflow.theory import collapse as NC

pt = pytest.importorskip("torch")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "third_party"))
from neural_collapse.accumulate import CovarAccumulator, DecAccumulator, MeanAccumulator  # noqa: E402
from neural_collapse.measure import (  # noqa: E402
    covariance_ratio,
    distance_norms,
    interference_grid,
    mean_norms,
    self_duality_error,
    simplex_etf_error,
)

F64 = pt.float64


def _theirs(H, labels, Q):
    X, Y = pt.as_tensor(H, dtype=F64), pt.as_tensor(labels, dtype=pt.int64)
    means = MeanAccumulator(Q, H.shape[1], dtype=F64)
    means.accumulate(X, Y)
    M, m_G = means.compute(weighted=False)
    covar = CovarAccumulator(Q, H.shape[1], dtype=F64, M=M)
    covar.accumulate(X, Y, M)
    return X, Y, M, m_G, covar.compute()


def _features(seed, Q, p, unbalanced):
    rng = np.random.default_rng(seed)
    sizes = rng.integers(3, 12, Q) if unbalanced else np.full(Q, 6)
    labels = np.repeat(np.arange(Q), sizes)
    H = rng.standard_normal((labels.size, p)) + 2.0 * rng.standard_normal((Q, p))[labels]
    return H, labels


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("Q, p", [(2, 3), (3, 5), (5, 4), (4, 9)])
def test_nc1_nc2_and_nc4_agree_with_neural_collapse(seed, Q, p):
    H, labels = _features(seed, Q, p, unbalanced=seed % 2 == 1)
    X, Y, M, m_G, Sw = _theirs(H, labels, Q)
    np.testing.assert_allclose(NC.class_means(H, labels), M.numpy(), rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(NC.class_covariances(H, labels)[0], Sw.numpy(), rtol=1e-12, atol=1e-13)
    nc1 = covariance_ratio(Sw, M, m_G, metric="pinv")
    assert NC.nc1_variability(H, labels) == pytest.approx(nc1, rel=1e-9)
    assert NC.nc2_etf_error(H, labels) == pytest.approx(simplex_etf_error(M, m_G), rel=1e-10, abs=1e-12)
    norms = mean_norms(M, m_G).numpy()
    assert NC.nc2_equinorm(H, labels) == pytest.approx(norms.std() / norms.mean(), rel=1e-10, abs=1e-13)
    G = interference_grid(M, m_G).numpy()
    cos = G / np.sqrt(np.outer(np.diag(G), np.diag(G)))
    off = ~np.eye(Q, dtype=bool)
    assert NC.nc2_equiangularity(H, labels) == pytest.approx(np.abs(cos[off] + 1 / (Q - 1)).mean(), rel=1e-10,
                                                             abs=1e-13)
    W = np.random.default_rng(seed + 100).standard_normal((Q, p))
    dec = DecAccumulator(Q, p, dtype=F64)
    dec.accumulate(X, Y, pt.as_tensor(W, dtype=F64), M)
    _, agree = dec.compute(weighted=True)
    assert NC.nc4_ncc_mismatch(W, np.zeros(Q), H, labels) == pytest.approx(1.0 - agree.item(), abs=1e-12)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("Q, p", [(2, 3), (3, 5), (4, 4), (5, 8)])
def test_nc3_matches_the_per_row_distance_when_the_rows_have_one_norm(seed, Q, p):
    """Class means that form a scaled, rotated simplex ETF (one norm) and classifier rows of one norm."""
    rng = np.random.default_rng(seed)
    R = np.linalg.qr(rng.standard_normal((p, p)))[0][:Q]  # Q orthonormal rows in R^p
    etf = 3.0 * (np.eye(Q) - 1.0 / Q) @ R + rng.standard_normal(p)  # class means, any centre
    labels = np.repeat(np.arange(Q), 5)
    noise = rng.standard_normal((labels.size, p))
    noise -= NC.class_means(noise, labels)[labels]  # within-class spread with zero class means
    H = etf[labels] + noise
    W = rng.standard_normal((Q, p))
    W *= 1.7 / np.linalg.norm(W, axis=1, keepdims=True)
    _, _, M, m_G, _ = _theirs(H, labels, Q)
    d = distance_norms(pt.as_tensor(W, dtype=F64), M, m_G).numpy()
    assert NC.nc3_self_duality(W, H, labels) == pytest.approx(np.mean(d**2), rel=1e-9)
    dual = 0.4 * NC.centred_class_means(H, labels)  # W ∝ M̃: both measures vanish
    assert NC.nc3_self_duality(dual, H, labels) == pytest.approx(0.0, abs=1e-24)
    assert self_duality_error(pt.as_tensor(dual, dtype=F64), M, m_G) == pytest.approx(0.0, abs=1e-12)
    assert NC.nc2_etf_error(H, labels) == pytest.approx(0.0, abs=1e-12)
    assert simplex_etf_error(M, m_G) == pytest.approx(0.0, abs=1e-12)
